"""Tune's experiment-state sync made atomic: a copy killed half-way never leaves a truncated file."""
import pyarrow.fs
import pytest

from autounfold.search import atomic_sync


def _tree(root):
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _src(tmp_path, state):
    src = tmp_path / "staging"
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "experiment_state-s.json").write_text(state)
    (src / "sub" / "searcher.pkl").write_text(state * 2)
    return src


def test_upload_replaces_files_and_leaves_no_staging(tmp_path):
    from ray.train._internal import storage
    dest = tmp_path / "out" / "tune"
    upload = atomic_sync.atomic_upload(storage._upload_to_fs_path)
    upload(str(_src(tmp_path, "old")), pyarrow.fs.LocalFileSystem(), str(dest))
    upload(str(_src(tmp_path, "new-and-longer")), pyarrow.fs.LocalFileSystem(), str(dest))
    assert _tree(dest) == {"experiment_state-s.json": "new-and-longer", "sub/searcher.pkl": "new-and-longer" * 2}
    assert [p.name for p in dest.parent.iterdir()] == ["tune"]          # the staging directory is gone


def test_upload_killed_half_way_keeps_the_complete_old_state(tmp_path):
    from ray.train._internal import storage
    dest = tmp_path / "out" / "tune"
    real = storage._upload_to_fs_path
    atomic_sync.atomic_upload(real)(str(_src(tmp_path, "complete")), pyarrow.fs.LocalFileSystem(), str(dest))

    def dies_half_way(local_path, fs, fs_path, exclude=None):     # what the plain copy leaves: truncated files
        real(local_path, fs, fs_path, exclude=exclude)
        for p in __import__("pathlib").Path(fs_path).rglob("*.json"):
            p.write_text("")
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        atomic_sync.atomic_upload(dies_half_way)(str(_src(tmp_path, "partial")), pyarrow.fs.LocalFileSystem(), str(dest))
    assert _tree(dest) == {"experiment_state-s.json": "complete", "sub/searcher.pkl": "completecomplete"}


def test_install_wraps_once():
    from ray.train._internal import storage
    before = storage._upload_to_fs_path
    try:
        assert atomic_sync.install() and atomic_sync.install()
        wrapped = storage._upload_to_fs_path
        assert getattr(wrapped, "_autounfold_atomic", False)
        atomic_sync.install()
        assert storage._upload_to_fs_path is wrapped
    finally:
        storage._upload_to_fs_path = before

"""Atomic experiment-state syncs for Ray Tune on a local storage path.

Tune writes its experiment state (``experiment_state-<session>.json``, the searcher's state) in a
staging directory under /tmp/ray and a background thread copies it into ``<out>/tune`` with
pyarrow's ``copy_files``, which truncates each destination file and rewrites it in place. A driver
killed (SIGKILL, OOM killer, power loss) during one of those copies left a 0-byte state file, and
``--resume`` then restored too few trials or none. ``install()`` wraps Ray's upload so that, when
the destination is the local filesystem, every file is copied beside its target and renamed over it
(``os.replace``, atomic on POSIX): a state file is always a complete old one or a complete new one.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

_MARK = "_autounfold_atomic"


def _move_tree(src: Path, dest: Path) -> None:
    """Rename every file under ``src`` to the same relative path under ``dest`` (same filesystem)."""
    if src.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        return
    for root, _, files in os.walk(src):
        target = dest / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(root, name), target / name)


def atomic_upload(upload):
    """``upload(local_path, fs, fs_path, exclude=None)`` made atomic per file on a LocalFileSystem."""
    import pyarrow.fs

    def wrapped(local_path, fs, fs_path, exclude=None):
        if not isinstance(fs, pyarrow.fs.LocalFileSystem):
            return upload(local_path, fs, fs_path, exclude=exclude)
        dest = Path(fs_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = dest.parent / f".sync-{uuid.uuid4().hex[:12]}"
        try:
            upload(local_path, fs, str(stage / dest.name), exclude=exclude)
            _move_tree(stage / dest.name, dest)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    setattr(wrapped, _MARK, True)
    return wrapped


def install() -> bool:
    """Wrap Ray's upload in this process (idempotent). False where this Ray has no such function."""
    try:
        from ray.train._internal import storage
    except ImportError:                                   # pragma: no cover - Ray is a dependency
        return False
    current = getattr(storage, "_upload_to_fs_path", None)
    if current is None:
        return False
    if not getattr(current, _MARK, False):
        storage._upload_to_fs_path = atomic_upload(current)
    return True

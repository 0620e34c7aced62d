"""Bad input, as a careless or hostile user gives it: every case exits 2 with one line on stderr that
names what was wrong, and writes nothing (the directory listing is unchanged). Each case was a
traceback, a hang, a silent acceptance or a poor message before (the reliability issue)."""
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import autounfold
from autounfold.build import build_model
from autounfold.channels import CorrelatedRayleigh
from autounfold.channels.parquet import csi_schema, write_csi
from autounfold.cli import app
from autounfold.config import load_config

runner = CliRunner()
SMALL = ["--set", "problem.channel.n_tx=8", "--set", "problem.channel.n_rx=4", "--set", "training.steps=2",
         "--set", "training.batch_size=8", "--set", "training.validation_batch=16", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    cfg = load_config("preset:auto_pgd", ["problem.channel.n_tx=8", "problem.channel.n_rx=4"])
    autounfold.save(build_model(cfg), d / "model", cfg)
    write_csi(d / "ok.parquet", CorrelatedRayleigh(n_tx=8, n_rx=4).sample(8, 0))
    empty = pa.Table.from_pylist([], schema=csi_schema(4, 8))
    pq.write_table(empty, d / "empty.parquet")
    t = pq.read_table(d / "ok.parquet")
    pq.write_table(t.replace_schema_metadata({b"autounfold.csi_version": b"1", b"autounfold.power": b"{not json"}),
                   d / "badmeta.parquet")
    pq.write_table(t.replace_schema_metadata({b"autounfold.csi_version": b"1", b"autounfold.power": b"-2.0"}),
                   d / "negpower.parquet")
    (d / "latin1.yaml").write_bytes("model:\n  layer: signed  # caf\xe9\n".encode("latin-1"))
    (d / "empty.yaml").write_text("")
    (d / "dupkey.yaml").write_text("model:\n  num_layers: 3\n  num_layers: 7\n")
    (d / "numtrue.yaml").write_text("model:\n  num_layers: true\n")
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
                                                     for p, c in zip("abcdefgh", "bcdefghi")]
    (d / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    (d / "infpower.yaml").write_text("problem:\n  channel:\n    power: .inf\n")
    (d / "huge.yaml").write_text("problem:\n  channel:\n    n_tx: 1000000\n")
    (d / "bigseed.yaml").write_text(f"seed: {2**70}\n")
    (d / "userdir").mkdir()
    (d / "userdir" / "thesis.tex").write_text("my own work")
    (d / "userfile.txt").write_text("my own file")
    bad_model = d / "badmodel"
    autounfold.save(build_model(cfg), bad_model, cfg)
    meta = json.loads((bad_model / "meta.json").read_text())
    meta.pop("sha256")                                  # as saved before digests were recorded
    (bad_model / "meta.json").write_text(json.dumps(meta))
    (bad_model / "config.yaml").write_text("model: [unclosed\n")
    return d


CASES = [
    # tracebacks before
    ("set_not_yaml", ["train", "preset:auto_pgd", "--out", "{d}/new", "--set", "model.num_layers=[1,"], "not valid YAML"),
    ("empty_parquet_inspect", ["csi", "inspect", "{d}/empty.parquet"], "empty.parquet: holds no rows"),
    ("empty_parquet_promote", ["promote", "m", "--source", "{d}/empty.parquet", "--tracking-uri", "sqlite:///{d}/t.db"],
     "holds no rows"),
    ("bad_uri_scheme", ["promote", "m", "--tracking-uri", "foo://nowhere"], "unsupported scheme 'foo'"),
    ("device_cuda", ["train", "preset:auto_pgd", "--out", "{d}/new", "--device", "cuda", *SMALL], "--device cuda"),
    ("device_unknown", ["train", "preset:auto_pgd", "--out", "{d}/new", "--device", "tpu9", *SMALL], "unknown torch device"),
    ("not_utf8", ["train", "{d}/latin1.yaml", "--out", "{d}/new"], "latin1.yaml: not UTF-8"),
    ("seed_too_large", ["train", "{d}/bigseed.yaml", "--out", "{d}/new"], "seed: Input should be less than or equal to"),
    ("alias_bomb", ["train", "{d}/bomb.yaml", "--out", "{d}/new"], "YAML nodes through aliases; refused"),
    ("too_big", ["train", "{d}/huge.yaml", "--out", "{d}/new"], "mostly for problem.channel.n_tx"),
    ("json_missing_dir", ["evaluate", "{d}/model", "--json", "{d}/nodir/out.json", "--batch", "8"], "does not exist"),
    ("export_to_dir", ["export", "{d}/model", "--out", "{d}/userdir"], "userdir: is a directory"),
    ("csi_write_to_dir", ["csi", "write", "--out", "{d}/userdir", "--rows", "4"], "userdir: is a directory"),
    ("out_dot", ["train", "preset:auto_pgd", "--out", "{d}", *SMALL], "refusing to replace"),
    ("model_config_malformed", ["evaluate", "{d}/badmodel", "--batch", "8"], "config.yaml: not valid YAML"),
    ("parquet_meta_not_json", ["csi", "inspect", "{d}/badmeta.parquet"], "'autounfold.power' is not valid JSON"),
    # silently accepted before
    ("empty_experiment", ["train", "{d}/empty.yaml", "--out", "{d}/new"], "empty.yaml: the file is empty"),
    ("num_layers_true", ["train", "{d}/numtrue.yaml", "--out", "{d}/new"], "model.num_layers: expected numbers, got a boolean"),
    ("duplicate_key", ["train", "{d}/dupkey.yaml", "--out", "{d}/new"], "duplicated key 'num_layers'"),
    ("negative_power_meta", ["csi", "inspect", "{d}/negpower.parquet"], "must be a finite number > 0 (got -2.0)"),
    # poor messages before
    ("monitor_window_0", ["monitor", "--model", "m@champion", "--source", "synthetic:angular_spread=1->2",
                          "--window", "0", "--tracking-uri", "sqlite:///{d}/t.db"], "window: Input should be greater"),
    ("dir_for_file", ["train", "{d}/userdir", "--out", "{d}/new"], "userdir: is a directory; expected a YAML file"),
    ("inf_power", ["train", "{d}/infpower.yaml", "--out", "{d}/new"], "problem.channel.power: Input should be a finite"),
    ("user_dir_out", ["train", "preset:auto_pgd", "--out", "{d}/userdir", *SMALL], "userdir: an existing directory"),
    ("user_file_out", ["train", "preset:auto_pgd", "--out", "{d}/userfile.txt", *SMALL], "exists and is not a directory"),
    ("out_under_a_file", ["train", "preset:auto_pgd", "--out", "{d}/userfile.txt/m", *SMALL], "is not a directory"),
    ("bool_in_list", ["train", "preset:auto_pgd", "--out", "{d}/new", "--set", "problem.channel.snr_db=[0, true]"],
     "problem.channel.snr_db: expected numbers, got a boolean"),
]


def _listing(d):
    return sorted((str(p.relative_to(d)), p.stat().st_size if p.is_file() else -1) for p in d.rglob("*")
                  if not p.name.endswith(".db"))


@pytest.mark.parametrize("name, args, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, name, args, needle):
    before = _listing(files)
    r = runner.invoke(app, [a.format(d=files) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output, repr(r.exception))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert _listing(files) == before                    # nothing written half-way, nothing replaced
    assert (files / "userdir" / "thesis.tex").read_text() == "my own work"


def test_cpus_below_one_is_rejected_by_the_cli(files):
    r = runner.invoke(app, ["search", "search_spaces/auto_pgd.yaml", "--cpus", "-1", "--dry-run"])
    assert r.exit_code == 2 and "--cpus" in r.output


def test_unreachable_addresses_fail_within_seconds(files):
    for args in (["search", "search_spaces/auto_pgd.yaml", "--address", "127.0.0.1:1", "--no-track",
                  "--out", str(files / "new_search")],
                 ["jobs", "list", "--address", "http://127.0.0.1:1"],
                 ["submit", "jobs/search.yaml", "--address", "http://127.0.0.1:1"],
                 ["evaluate", "models:/m@champion", "--tracking-uri", "http://127.0.0.1:1"]):
        t0 = time.monotonic()
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "cannot reach" in r.stderr and "127.0.0.1:1" in r.stderr, (args, r.output)
        assert time.monotonic() - t0 < 60, args          # was about two minutes (a hang, not a timing claim)
    assert not (files / "new_search").exists()


def test_train_output_rules_protect_user_files_and_replace_models(files, tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(out), *SMALL])
    assert r.exit_code == 0, r.output
    first = (out / "weights.pt").read_bytes()
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(out), *SMALL, "--set", "model.num_layers=3"])
    assert r.exit_code == 0, r.output                     # an autounfold model is replaced ...
    assert (out / "weights.pt").read_bytes() != first and autounfold.load(out).num_layers == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]          # ... leaving no temporary directory
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(user), *SMALL])
    assert r.exit_code == 2 and (user / "notes.txt").read_text() == "keep"
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(user), "--overwrite", *SMALL])
    assert r.exit_code == 0 and autounfold.load(user).num_layers == 5   # replaced because it was asked
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(empty), *SMALL]).exit_code == 0


def test_ctrl_c_during_train_says_nothing_was_written(tmp_path, monkeypatch):
    import autounfold.ops.experiments as ex

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "train", interrupted)
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(tmp_path / "m"), *SMALL])
    assert r.exit_code == 130 and f"nothing was written to {tmp_path / 'm'}" in r.stderr
    assert not (tmp_path / "m").exists()


def test_yaml_merge_keys_and_anchors_still_work(tmp_path):
    from autounfold.config import load_config, read_yaml_mapping
    path = tmp_path / "merge.yaml"
    path.write_text("problem: {channel: {n_tx: 8, n_rx: 4}}\nx_common: &c {batch_size: 32, steps: 3}\n"
                    "training:\n  <<: *c\n  lr: 0.01\n")
    data = read_yaml_mapping(path)
    assert data["training"] == {"batch_size": 32, "steps": 3, "lr": 0.01}
    path.write_text("problem: {channel: {n_tx: 8, n_rx: 4}}\ntraining: &t {batch_size: 32, steps: 3}\n")
    assert load_config(path).training.batch_size == 32
    from autounfold.schema import load_yaml
    assert load_yaml("b: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n", "t") == {"b": {"x": 1}, "m": {"x": 1, "y": 2}}


def test_loading_a_model_does_not_need_its_training_memory(tmp_path, monkeypatch):
    """The memory check guards training; a model trained with a large validation batch loads anywhere."""
    import autounfold.build as B
    cfg = load_config("preset:auto_pgd", ["problem.channel.n_tx=8", "problem.channel.n_rx=4"])
    autounfold.save(build_model(cfg), tmp_path / "m", cfg)
    monkeypatch.setattr(B, "available_memory", lambda: 1)
    assert autounfold.load(tmp_path / "m").num_layers == cfg.model.num_layers
    import autounfold.ops.experiments as ex
    monkeypatch.setattr(ex, "check_memory", lambda c: B.check_memory(c, available=1))
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(tmp_path / "n"), *SMALL])
    assert r.exit_code == 2 and "GiB of memory" in r.stderr and not (tmp_path / "n").exists()

import json

from typer.testing import CliRunner

from autounfold.cli import app

runner = CliRunner()
SMALL = ["--set", "problem.channel.n_tx=16", "--set", "problem.channel.n_rx=4", "--set", "training.steps=10",
         "--set", "training.batch_size=32", "--set", "training.validation_batch=64"]


def test_train_then_evaluate(tmp_path):
    out = tmp_path / "model"
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(out), "--quiet", *SMALL])
    assert r.exit_code == 0, r.output
    assert {"config.yaml", "weights.pt", "meta.json", "history.json"} <= {p.name for p in out.iterdir()}
    r = runner.invoke(app, ["evaluate", str(out), "--scenario", "nominal", "--scenario", "iid", "--batch", "64",
                            "--json", str(tmp_path / "eval.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "eval.json").read_text())
    assert {r["scenario"] for r in rows} == {"nominal", "iid"} and all(r["feasible"] for r in rows)


def test_bad_config_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "model"
    r = runner.invoke(app, ["train", "preset:auto_pgd", "--out", str(out), "--set", "model.layer=dense"])
    assert r.exit_code == 2 and "model.layer" in r.output
    assert not out.exists()


def test_evaluate_errors(tmp_path):
    r = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert r.exit_code == 2 and "not an autounfold model directory" in r.output


def test_help_texts():
    for cmd in ("train", "evaluate", "benchmark", "demo"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output


def test_search_validates_before_starting_anything(tmp_path):
    out = tmp_path / "search"
    r = runner.invoke(app, ["search", "search_spaces/auto_pgd.yaml", "--out", str(out), "--set", "budget.num_samples=5"])
    assert r.exit_code == 2
    assert "search_spaces/auto_pgd.yaml (with --set overrides): budget: num_samples (5) must exceed n_initial_points (10)" in r.output
    assert not out.exists()
    r = runner.invoke(app, ["search", "search_spaces/auto_pgd.yaml", "--dry-run"])
    assert r.exit_code == 0 and "valid; sha256" in r.output and "model.layer/signed/step_init" in r.output
    r = runner.invoke(app, ["search", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2 and "none.yaml: no such file" in r.output
    r = runner.invoke(app, ["search", "search_spaces/auto_pgd.yaml", "--out", str(out), "--resume"])
    assert r.exit_code == 2 and "holds no interrupted search" in r.output and not out.exists()
    r = runner.invoke(app, ["search", "search_spaces/auto_pgd.yaml", "--out", str(out), "--warm-start", str(tmp_path / "gone")])
    assert r.exit_code == 2 and "gone': no such result directory" in r.output and not out.exists()

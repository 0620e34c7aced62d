"""The whole loop on real processes (local Ray, sqlite MLflow): a model trained at 15 deg angular
spread becomes champion; the channel moves to 40 deg; the monitor detects it and triggers one
warm-started re-search whose best model becomes challenger; the canary decides; the monitor,
restarted on the new champion, sees no drift."""
import json

import pytest
from typer.testing import CliRunner

from autounfold.cli import app

pytestmark = pytest.mark.integration

SPEC = {
    "name": "loop",
    "base": {"problem": {"channel": {"n_tx": 16, "n_rx": 4, "angular_spread_deg": 15.0}},
             "training": {"steps": 40, "batch_size": 64, "validate_every": 20, "validation_batch": 128}},
    "objective": {"latency_batch": 32},
    "budget": {"num_samples": 3, "algorithm": "random", "max_concurrent": 2},
    "seed": 2,
    "space": {"model.num_layers": {"type": "int", "low": 3, "high": 6},
              "training.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}},
}


def test_drift_detected_researched_canaried(tmp_path, monkeypatch):
    import yaml
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner = CliRunner()
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(SPEC))
    r = runner.invoke(app, ["search", "loop.yaml", "--out", "s15", "--tracking-uri", uri, "--cpus", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["promote", "loop", "--tracking-uri", uri])
    assert r.exit_code == 0 and '"decision": "promote"' in r.output, r.output
    client = MlflowClient(uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("loop", "champion").version) == "1"

    events = tmp_path / "events.jsonl"
    monitor = ["monitor", "--model", "loop@champion", "--source", "synthetic:angular_spread=15->40,windows=5,at=1",
               "--window", "256", "--events", str(events), "--research-trials", "3", "--tracking-uri", uri,
               "--research-set", "base.training.steps=40", "--research-set", "budget.max_concurrent=2"]
    r = runner.invoke(app, monitor)
    assert r.exit_code == 0, r.output
    log = [json.loads(line) for line in events.read_text().splitlines()]
    triggers = [e for e in log if e["kind"] == "trigger"]
    assert len(triggers) == 1 and triggers[0]["model"] == "loop:v1"
    assert triggers[0]["angular_spread_estimate"] == pytest.approx(40, abs=3)
    done = [e for e in log if e["kind"] == "trigger_done"][0]["outcome"]
    assert done["registered"]["alias"] == "challenger" and done["registered"]["version"] == "2"
    challenger = client.get_model_version_by_alias("loop", "challenger")
    assert challenger.tags["autounfold.search_run_id"] == done["search_run_id"]
    research = client.get_run(done["search_run_id"])
    assert research.data.tags["autounfold.warm_start"] == client.get_model_version("loop", "1").tags["autounfold.search_run_id"]

    # restarting the monitor on the same champion does not trigger a second re-search
    r = runner.invoke(app, monitor)
    assert r.exit_code == 0 and "0 trigger(s)" in r.output, r.output

    # canary on 40 deg traffic: the decision is recorded and the aliases follow it
    r = runner.invoke(app, ["promote", "loop", "--canary", "0.25", "--batches", "40", "--batch-size", "32",
                            "--set", "problem.channel.angular_spread_deg=40", "--tracking-uri", uri])
    assert r.exit_code == 0, r.output
    decision = json.loads(r.output[r.output.index("{"):])
    assert decision["decision"] in ("promote", "rollback") and decision["challenger_batches"] >= 5
    champion = str(client.get_model_version_by_alias("loop", "champion").version)
    assert champion == ("2" if decision["decision"] == "promote" else "1")
    if decision["decision"] == "promote":
        # the new champion's baseline is the 40 deg channel: no drift, shadow metric as good as before
        r = runner.invoke(app, ["monitor", "--model", "loop@champion", "--window", "256", "--events", str(events),
                                "--source", "synthetic:angular_spread=40->40,windows=2", "--no-research",
                                "--tracking-uri", uri])
        assert r.exit_code == 0 and "0 trigger(s)" in r.output and "ALERT covariance" not in r.output, r.output

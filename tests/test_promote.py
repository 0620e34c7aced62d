"""Registry lifecycle: the first model becomes champion; a canary promotes a better challenger and
rolls back a worse one; every decision is recorded (sqlite store, no server needed)."""
import json

import pytest
from typer.testing import CliRunner

import autounfold
from autounfold.build import build_model
from autounfold.channels.parquet import write_csi
from autounfold.cli import app
from autounfold.config import parse_config
from autounfold.errors import ConfigError, RegistryError
from autounfold.evaluation.canary import decide, run_canary
from autounfold.registry import SearchTracker, register_model
from autounfold.ops.promote import promote
from autounfold.spaces import parse_spec

PROBLEM = {"channel": {"n_tx": 16, "n_rx": 4}}


def _model(layers, step_init):
    cfg = parse_config({"problem": PROBLEM, "model": {"num_layers": layers, "layer": "step", "step_init": step_init}})
    return build_model(cfg), cfg


@pytest.fixture
def registry(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec({"name": "p", "base": {"problem": PROBLEM}, "budget": {"num_samples": 2, "algorithm": "random"},
                       "space": {"model.num_layers": {"type": "int", "low": 1, "high": 4}}}, "p.yaml")
    tracker = SearchTracker.start(spec, uri)

    def register(model, cfg, tag):
        d = autounfold.save(model, tmp_path / tag, cfg)
        tracker.trial_result(tag, {}, {"step": 0})
        return register_model("bf", d, tracker.child_run(tag), {"autounfold.spec_sha256": spec.sha256}, tracking_uri=uri)
    from mlflow import MlflowClient
    return register, uri, MlflowClient(uri, registry_uri=uri), tmp_path


def test_canary_scores_and_rules():
    good, _ = _model(6, 50.0)       # a large positive step: close to power iteration, ~99.9%
    bad, _ = _model(1, 0.01)        # one tiny step from the matched filter
    rep = run_canary(good, bad, good.problem.source, batches=40, batch_size=16, fraction=0.3, seed=1)
    s = rep.summary()
    assert s["champion_batches"] + s["challenger_batches"] == 40 and s["challenger_batches"] >= 5
    assert s["champion_score"] > s["challenger_score"] and decide(s, 0.05) == "rollback"
    assert decide({"champion_score": 99.9, "challenger_score": 99.87}, 0.05) == "promote"
    assert decide({"champion_score": 99.9, "challenger_score": 99.80}, 0.05) == "rollback"
    with pytest.raises(ConfigError, match="would serve only"):
        run_canary(good, bad, good.problem.source, batches=10, batch_size=4, fraction=0.05)


def test_first_champion_then_promote_then_rollback(registry):
    register, uri, client, tmp = registry
    with pytest.raises(RegistryError, match="no registered model"):
        promote("bf", tracking_uri=uri)
    mid, cfg = _model(2, 50.0)
    register(mid, cfg, "v1")
    first = promote("bf", tracking_uri=uri)
    assert first["decision"] == "promote" and "first model" in first["reason"]
    assert client.get_model_version_by_alias("bf", "champion").version in (1, "1")

    better, cfg = _model(8, 50.0)
    register(better, cfg, "v2")
    rec = promote("bf", canary=0.25, batches=40, batch_size=16, tracking_uri=uri)
    assert rec["decision"] == "promote" and rec["challenger_score"] > rec["champion_score"]
    assert str(client.get_model_version_by_alias("bf", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("bf", "previous_champion").version) == "1"
    run = client.get_run(rec["run_id"])
    assert run.data.tags["autounfold.decision"] == "promote" and "challenger_score" in run.data.metrics
    assert client.get_model_version("bf", "2").tags["autounfold.canary_decision"] == "promote"

    worse, cfg = _model(1, 0.01)
    register(worse, cfg, "v3")
    # traffic from recorded CSI this time
    src = autounfold.load("models:/bf@champion", tracking_uri=uri).problem.source
    csi = write_csi(tmp / "traffic.parquet", src.sample(400, 5))
    r = CliRunner().invoke(app, ["promote", "bf", "--canary", "0.25", "--batches", "40", "--batch-size", "16",
                                 "--source", str(csi), "--tracking-uri", uri])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output[r.output.index("{"):])
    assert rec["decision"] == "rollback"
    assert str(client.get_model_version_by_alias("bf", "champion").version) == "2"      # unchanged
    with pytest.raises(Exception):
        client.get_model_version_by_alias("bf", "challenger")                            # alias removed
    assert client.get_model_version("bf", "3").tags["autounfold.canary_decision"] == "rollback"
    with pytest.raises(RegistryError, match="no version has the alias 'challenger'"):
        promote("bf", tracking_uri=uri)


class _FlakyRegistry:
    """An MLflow client whose alias lookups fail with a transient server error (not "not found")."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_model_version_by_alias(self, name, alias):
        if alias == "champion":
            from mlflow.exceptions import MlflowException
            raise MlflowException("API request failed: 503 Service Unavailable", error_code="TEMPORARILY_UNAVAILABLE")
        return self.real.get_model_version_by_alias(name, alias)


def test_a_transient_registry_error_never_promotes_without_a_canary(registry, monkeypatch):
    register, uri, client, tmp = registry
    first, cfg = _model(2, 50.0)
    register(first, cfg, "v1")
    promote("bf", tracking_uri=uri)                                     # v1 is champion
    challenger, cfg = _model(1, 0.01)
    register(challenger, cfg, "v2")
    import autounfold.ops.promote as ops_promote
    real = ops_promote.mlflow_client
    monkeypatch.setattr(ops_promote, "mlflow_client", lambda u=None: (_FlakyRegistry(real(u)[0]), real(u)[1]))
    with pytest.raises(RegistryError, match="cannot read alias bf@champion"):
        promote("bf", tracking_uri=uri)
    assert str(client.get_model_version_by_alias("bf", "champion").version) == "1"     # nothing moved
    assert str(client.get_model_version_by_alias("bf", "challenger").version) == "2"

"""Model registry round trip on the embedded sqlite store: register -> alias -> load -> same outputs."""
import pytest
import torch

import autounfold
from autounfold.build import build_model
from autounfold.config import parse_config
from autounfold.errors import RegistryError
from autounfold.registry import SearchTracker, register_model
from autounfold.seeding import generator
from autounfold.spaces import parse_spec


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_register_alias_load_gives_the_same_outputs(tmp_path, tracking_uri):
    spec = parse_spec({"name": "reg", "base": {"problem": {"channel": {"n_tx": 8, "n_rx": 4}}},
                       "budget": {"num_samples": 3, "algorithm": "random"},
                       "space": {"model.num_layers": {"type": "int", "low": 2, "high": 4}}}, "reg.yaml")
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 3}})
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))             # not the initial weights
    model_dir = autounfold.save(model, tmp_path / "m", cfg)

    tracker = SearchTracker.start(spec, tracking_uri)
    tracker.trial_result("t1", {"model.num_layers": 3}, {"step": 0, "val_score": 99.0, "objective": 99.0})
    tracker.trial_complete("t1", {"model.num_layers": 3}, {"status": "ok", "layer": "signed"})
    tags = {"autounfold.spec_sha256": spec.sha256, "autounfold.search_run_id": tracker.run_id}
    info = register_model("reg_model", model_dir, tracker.child_run("t1"), tags, tracking_uri=tracking_uri,
                          extra_files={"search_space.yaml": spec.canonical_yaml(), "baseline.pt": b"\x00\x01"})
    assert info == {"name": "reg_model", "version": "1", "uri": "models:/reg_model@challenger", "alias": "challenger"}

    loaded = autounfold.load("models:/reg_model@challenger", tracking_uri=tracking_uri)
    inst = model.problem.sample(32, generator(0, "test"))
    with torch.no_grad():
        assert torch.equal(loaded.run(inst), model.run(inst))
    assert loaded.config == cfg

    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version_by_alias("reg_model", "challenger")
    assert mv.tags["autounfold.spec_sha256"] == spec.sha256 and mv.tags["autounfold.search_run_id"] == tracker.run_id
    files = {f.path for f in client.list_artifacts(tracker.child_run("t1"), "model")}
    assert files == {"model/config.yaml", "model/weights.pt", "model/meta.json", "model/search_space.yaml", "model/baseline.pt"}
    child = client.get_run(tracker.child_run("t1"))
    assert child.data.tags["mlflow.parentRunId"] == tracker.run_id and child.info.status == "FINISHED"
    assert child.data.metrics["val_score"] == 99.0

    # a second registration becomes version 2 and takes the alias
    info2 = register_model("reg_model", model_dir, tracker.child_run("t1"), {}, tracking_uri=tracking_uri)
    assert info2["version"] == "2"
    assert str(client.get_model_version_by_alias("reg_model", "challenger").version) == "2"


def test_unknown_model_uri_is_a_clear_error(tracking_uri):
    with pytest.raises(RegistryError, match="models:/nope@challenger: no such registered model version"):
        autounfold.load("models:/nope@challenger", tracking_uri=tracking_uri)

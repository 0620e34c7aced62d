"""Model registry round trip on the embedded sqlite store: register -> alias -> load -> same outputs."""
import pytest
import torch

import autounfold
from autounfold.build import build_model
from autounfold.config import parse_config
from autounfold.deploy import real_interface
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


def _tensor_specs(schema):
    return {spec.name: (spec.type, spec.shape) for spec in schema.inputs}


@pytest.mark.parametrize("streams", [1, 2])
def test_registered_version_carries_the_real_valued_signature(tmp_path, tracking_uri, monkeypatch, streams):
    """Registered with its interface, a version's signature as MLflow's own reader (get_model_info on
    models:/NAME@ALIAS) sees it is the export's: float32 H_real (-1, n_rx, n_tx, 2), noise_var (-1,)
    -> W_real (-1, n_tx, S, 2); the MLmodel file has no flavor (nothing for MLflow to unpickle).
    A lasso model has no such interface (real_interface is None): plain files only."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)          # get_model_info reads the process-wide URI
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    run_id = client.create_run(client.create_experiment("sig")).info.run_id
    cfg = parse_config({"problem": {"n_streams": streams, "channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 2}})
    model = build_model(cfg)
    register_model("bf", autounfold.save(model, tmp_path / "bf", cfg), run_id, {}, tracking_uri=tracking_uri,
                   interface=real_interface(model.problem))

    info = mlflow.models.get_model_info("models:/bf@challenger")
    assert info.flavors == {}
    sig = info.signature
    f32 = np.dtype("float32")
    assert _tensor_specs(sig.inputs) == {"H_real": (f32, (-1, 4, 8, 2)), "noise_var": (f32, (-1,))}
    assert _tensor_specs(sig.outputs) == {"W_real": (f32, (-1, 8, streams, 2))}
    assert autounfold.load("models:/bf@challenger", tracking_uri=tracking_uri).num_layers == 2

    lasso_cfg = parse_config({"problem": {"name": "lasso"}, "model": {"layer": "ista", "step_init": 1.0,
                                                                      "gradient_scaling": "lipschitz"}})
    lasso = build_model(lasso_cfg)
    assert real_interface(lasso.problem) is None
    lasso_run = client.create_run(client.get_experiment_by_name("sig").experiment_id).info.run_id
    register_model("lasso", autounfold.save(lasso, tmp_path / "lasso", lasso_cfg), lasso_run, {},
                   tracking_uri=tracking_uri, interface=real_interface(lasso.problem))
    assert {f.path for f in client.list_artifacts(lasso_run, "model")} == {"model/config.yaml", "model/weights.pt",
                                                                          "model/meta.json"}


def test_unknown_model_uri_is_a_clear_error(tracking_uri):
    with pytest.raises(RegistryError, match="models:/nope@challenger: no such registered model version"):
        autounfold.load("models:/nope@challenger", tracking_uri=tracking_uri)

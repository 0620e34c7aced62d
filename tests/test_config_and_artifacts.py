import json

import pytest
import torch

import autounfold
from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.errors import ArtifactError, ConfigError


def test_defaults_are_the_nominal_scenario():
    cfg = load_config("preset:auto_pgd")
    assert cfg.problem.channel.n_tx == 64 and cfg.problem.channel.n_rx == 16 and cfg.model.num_layers == 5


@pytest.mark.parametrize("text, needle", [
    ("model:\n  num_layer: 5\n", "model.num_layer: Extra inputs are not permitted"),
    ("model:\n  num_layers: 0\n", "model.num_layers"),
    ("problem:\n  channel:\n    snr_db: [30, 0]\n", "snr_db"),
    ("model:\n  layer: step\n", "chebyshev"),
    ("problem:\n  name: lasso\nmodel:\n  layer: signed\n  step_init: 1.0\n", "does not apply to lasso"),
    ("model: [1, 2\n", "not valid YAML"),
    ("- 1\n", "mapping"),
])
def test_config_errors_name_file_and_key(tmp_path, text, needle):
    f = tmp_path / "exp.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert needle in str(err.value) and (str(f) in str(err.value) or "mapping" in needle or "YAML" in needle)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'nope'; available: ") as err:
        load_config("preset:nope")
    listed = str(err.value).split("available: ")[1].split(", ")          # every shipped preset, sorted
    assert {"auto_pgd", "hybrid", "lista", "deepsic"} <= set(listed) and listed == sorted(listed)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["model.num_layers"])


def test_overrides_apply():
    cfg = load_config("preset:auto_pgd", ["model.num_layers=8", "problem.channel.snr_db=[-10, 10]"])
    assert cfg.model.num_layers == 8 and cfg.problem.channel.snr_db == (-10.0, 10.0)


def test_save_load_round_trip_gives_same_outputs(tmp_path, small_problem):
    cfg = load_config("preset:auto_pgd", ["problem.channel.n_tx=8", "problem.channel.n_rx=4", "model.layer=momentum",
                                          "model.step_init=3.0", "model.momentum_init=0.2"])
    model = build_model(cfg)
    with torch.no_grad():
        model.params["step"].add_(0.1)
    autounfold.save(model, tmp_path / "m", metrics={"x": 1})
    loaded = autounfold.load(tmp_path / "m")
    inst = small_problem.sample(8, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inst.H, inst.noise_var), model(inst.H, inst.noise_var))
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["metrics"] == {"x": 1} and len(meta["layer_parameters"]["step"]) == 5
    autounfold.save(model, tmp_path / "m")                              # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]          # no temporary directories left


def test_load_refuses_broken_directories(tmp_path):
    with pytest.raises(ArtifactError, match="missing config.yaml"):
        autounfold.load(tmp_path)
    cfg = load_config("preset:auto_pgd")
    autounfold.save(build_model(cfg), tmp_path / "m")
    _forget_digests(tmp_path / "m")                 # as written by a version that recorded none
    (tmp_path / "m" / "weights.pt").write_bytes(b"not a tensor file")
    with pytest.raises(ArtifactError, match="plain tensors"):
        autounfold.load(tmp_path / "m")
    other = load_config("preset:auto_pgd", ["model.num_layers=3"])
    torch.save(build_model(other).state_dict(), tmp_path / "m" / "weights.pt")
    with pytest.raises(ArtifactError, match="do not match"):
        autounfold.load(tmp_path / "m")


def _forget_digests(model_dir):
    meta = json.loads((model_dir / "meta.json").read_text())
    meta.pop("sha256")
    (model_dir / "meta.json").write_text(json.dumps(meta))


def test_load_refuses_edited_configs_swapped_and_non_finite_weights(tmp_path):
    cfg = load_config("preset:auto_pgd", ["model.layer=step", "model.step_init=1.0"])
    autounfold.save(build_model(cfg), tmp_path / "m")
    text = (tmp_path / "m" / "config.yaml").read_text()
    # same weight shapes, another layer type: it would load and run a different network
    (tmp_path / "m" / "config.yaml").write_text(text.replace("layer: step", "layer: signed"))
    with pytest.raises(ArtifactError, match="config.yaml: does not match the sha256 recorded in meta.json"):
        autounfold.load(tmp_path / "m")
    (tmp_path / "m" / "config.yaml").write_text(text)
    assert autounfold.load(tmp_path / "m").layer == "step"
    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    state["params.step"][0] = float("nan")
    torch.save(state, tmp_path / "m" / "weights.pt")
    with pytest.raises(ArtifactError, match="weights.pt: does not match the sha256"):
        autounfold.load(tmp_path / "m")
    _forget_digests(tmp_path / "m")
    with pytest.raises(ArtifactError, match="non-finite values in params.step"):
        autounfold.load(tmp_path / "m")


def test_load_never_unpickles_code(tmp_path):
    cfg = load_config("preset:auto_pgd")
    autounfold.save(build_model(cfg), tmp_path / "m")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _forget_digests(tmp_path / "m")
    torch.save({"params.step": Evil()}, tmp_path / "m" / "weights.pt")
    with pytest.raises(ArtifactError, match="plain tensors"):
        autounfold.load(tmp_path / "m")


def test_yaml_files_that_are_not_mappings_are_clear_errors(tmp_path):
    from autounfold.config import load_config
    from autounfold.errors import ConfigError
    from autounfold.jobs import load_job_spec
    from autounfold.spaces import load_spec
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    for load in (load_config, load_spec, load_job_spec):        # one reader behind all three
        with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping, got list"):
            load(f, ["a.b=1"])


def test_a_crash_between_the_two_renames_of_a_replacement_is_recovered(tmp_path, monkeypatch):
    """Where the atomic exchange is unavailable, a kill after the old model was moved aside and before
    the new one is in place must not leave the path empty: load restores the old model."""
    import os

    import autounfold.artifacts as A
    cfg = load_config("preset:auto_pgd", ["model.num_layers=2"])
    autounfold.save(build_model(cfg), tmp_path / "m")
    monkeypatch.setattr(A, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def killed_after_first_rename(src, dst):
        calls.append((src, dst))
        real_replace(src, dst)
        if len(calls) == 1:
            raise KeyboardInterrupt                     # the process dies here (SIGKILL runs no clean-up)
    monkeypatch.setattr(A.os, "replace", killed_after_first_rename)
    monkeypatch.setattr(A.shutil, "rmtree", lambda *a, **k: None)    # a dead process removes nothing
    new = load_config("preset:auto_pgd", ["model.num_layers=3"])
    with pytest.raises(KeyboardInterrupt):
        autounfold.save(build_model(new), tmp_path / "m", new)
    monkeypatch.undo()
    assert not (tmp_path / "m").exists()                # the moment of the crash: the path is empty ...
    assert autounfold.load(tmp_path / "m").num_layers == 2          # ... and load restores the old model
    autounfold.save(build_model(new), tmp_path / "m", new)
    assert autounfold.load(tmp_path / "m").num_layers == 3

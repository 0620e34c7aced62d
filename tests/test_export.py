"""TorchScript export: the scripted module gives the eager model's outputs, with real tensors."""
import json

import pytest
import torch
from typer.testing import CliRunner

import autounfold
from autounfold.build import build_model
from autounfold.cli import app
from autounfold.config import parse_config
from autounfold.deploy import export_torchscript, load_torchscript
from autounfold.errors import ArtifactError
from autounfold.seeding import generator


@pytest.mark.parametrize("model_cfg", [
    {"num_layers": 4, "layer": "signed"},
    {"num_layers": 3, "layer": "momentum", "step_init": 1.0, "momentum_init": 0.3, "extrapolation": "nesterov"},
    {"num_layers": 2, "layer": "hybrid", "step_init": 0.5},
])
@pytest.mark.parametrize("streams", [1, 2])
def test_torchscript_matches_eager(tmp_path, model_cfg, streams):
    cfg = parse_config({"problem": {"n_streams": streams, "channel": {"n_tx": 16, "n_rx": 4}}, "model": model_cfg})
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = export_torchscript(model, tmp_path / "m.pt")
    scripted = load_torchscript(path)
    assert isinstance(scripted, torch.jit.ScriptModule)
    for batch in (1, 37):                                  # batch sizes the trace never saw
        inst = model.problem.sample(batch, generator(3, "export-test", batch))
        out = scripted(torch.view_as_real(inst.H).contiguous(), inst.noise_var)
        assert out.dtype == torch.float32 and out.shape == (batch, 16, streams, 2)
        with torch.no_grad():
            torch.testing.assert_close(torch.view_as_complex(out), model.run(inst), atol=1e-6, rtol=1e-5)
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    assert meta["inputs"]["H_real"] == ["B", 4, 16, 2] and meta["output"]["W_real"] == ["B", 16, streams, 2]


def test_export_cli_and_errors(tmp_path):
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 3}})
    model_dir = autounfold.save(build_model(cfg), tmp_path / "m", cfg)
    r = CliRunner().invoke(app, ["export", str(model_dir), "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 0, r.output
    assert load_torchscript(tmp_path / "x.pt") is not None
    r = CliRunner().invoke(app, ["export", str(model_dir), "--out", str(tmp_path / "y.onnx"), "--format", "onnx"])
    assert r.exit_code == 2 and "only 'torchscript'" in r.output and not (tmp_path / "y.onnx").exists()
    lasso = build_model(parse_config({"problem": {"name": "lasso"}, "model": {"layer": "ista", "step_init": 1.0,
                                                                               "gradient_scaling": "lipschitz"}}))
    with pytest.raises(ArtifactError, match="a lasso model is not one"):
        export_torchscript(lasso, tmp_path / "l.pt")
    with pytest.raises(ArtifactError, match="no such TorchScript file"):
        load_torchscript(tmp_path / "missing.pt")

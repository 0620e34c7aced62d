"""Export (TorchScript and torch.export): the exported module gives the eager model's outputs, with
real tensors, at batch sizes it was never built with."""
import json

import pytest
import torch
from typer.testing import CliRunner

import autounfold
from autounfold.build import build_model
from autounfold.cli import app
from autounfold.config import parse_config
from autounfold.deploy import export_torch_export, export_torchscript, load_torch_export, load_torchscript
from autounfold.errors import ArtifactError
from autounfold.seeding import generator

FORMATS = {"torchscript": (export_torchscript, load_torchscript, "m.pt"),
           "torch.export": (export_torch_export, load_torch_export, "m.pt2")}


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("model_cfg", [
    {"num_layers": 4, "layer": "signed"},
    {"num_layers": 3, "layer": "subspace", "step_init": [-1.0, -1.5, -0.7]},
    {"num_layers": 3, "layer": "momentum", "step_init": 1.0, "momentum_init": 0.3, "extrapolation": "nesterov"},
    {"num_layers": 2, "layer": "hybrid", "step_init": 0.5},
])
@pytest.mark.parametrize("streams", [1, 2])
def test_export_matches_eager(tmp_path, fmt, model_cfg, streams):
    exporter, loader, name = FORMATS[fmt]
    cfg = parse_config({"problem": {"n_streams": streams, "channel": {"n_tx": 16, "n_rx": 4}}, "model": model_cfg})
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = exporter(model, tmp_path / name)
    module = loader(path)
    if fmt == "torchscript":
        assert isinstance(module, torch.jit.ScriptModule)
    for batch in (1, 37):                                  # batch sizes the export never saw
        inst = model.problem.sample(batch, generator(3, "export-test", batch))
        with torch.no_grad():
            out = module(torch.view_as_real(inst.H).contiguous(), inst.noise_var)
            assert out.dtype == torch.float32 and out.shape == (batch, 16, streams, 2)
            torch.testing.assert_close(torch.view_as_complex(out.contiguous()), model.run(inst), atol=1e-6, rtol=1e-5)
    meta = json.loads((tmp_path / f"{name}.json").read_text())
    assert meta["format"] == fmt
    assert meta["inputs"] == {"H_real": ["B", 4, 16, 2], "noise_var": ["B"]}
    assert meta["output"]["W_real"] == ["B", 16, streams, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, f"{name}.json"]     # no temporary left behind


def test_export_cli_and_errors(tmp_path):
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 3}})
    model_dir = autounfold.save(build_model(cfg), tmp_path / "m", cfg)
    r = CliRunner().invoke(app, ["export", str(model_dir), "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 0, r.output
    assert load_torchscript(tmp_path / "x.pt") is not None
    r = CliRunner().invoke(app, ["export", str(model_dir), "--out", str(tmp_path / "y.onnx"), "--format", "onnx"])
    assert r.exit_code == 2 and "allowed: 'torchscript', 'torch.export'" in r.output and "'onnx'" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "y.onnx").exists()
    lasso = build_model(parse_config({"problem": {"name": "lasso"}, "model": {"layer": "ista", "step_init": 1.0,
                                                                               "gradient_scaling": "lipschitz"}}))
    with pytest.raises(ArtifactError, match="a lasso model is not one"):
        export_torchscript(lasso, tmp_path / "l.pt")
    with pytest.raises(ArtifactError, match="a lasso model is not one"):
        export_torch_export(lasso, tmp_path / "l.pt2")
    with pytest.raises(ArtifactError, match="no such TorchScript file"):
        load_torchscript(tmp_path / "missing.pt")


def test_torch_export_cli_writes_a_loadable_program(tmp_path):
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 3}})
    model = build_model(cfg)
    model_dir = autounfold.save(model, tmp_path / "m", cfg)
    out = tmp_path / "deploy" / "x.pt2"
    r = CliRunner().invoke(app, ["export", str(model_dir), "--out", str(out), "--format", "torch.export"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "deploy" / "x.pt2.json").read_text())["format"] == "torch.export"
    module = load_torch_export(out)
    inst = model.problem.sample(3, generator(4, "export-cli"))
    with torch.no_grad():
        got = torch.view_as_complex(module(torch.view_as_real(inst.H).contiguous(), inst.noise_var).contiguous())
        torch.testing.assert_close(got, autounfold.load(model_dir).run(inst), atol=1e-6, rtol=1e-5)


def test_torch_export_load_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(ArtifactError, match="missing.pt2: no such torch.export file"):
        load_torch_export(tmp_path / "missing.pt2")
    (tmp_path / "text.pt2").write_text("not a program")
    torch.save({"w": torch.ones(2)}, tmp_path / "weights.pt")                  # a zip, but no pt2 archive
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 2}})
    export_torchscript(build_model(cfg), tmp_path / "ts.pt")                   # the other format
    for name in ("text.pt2", "weights.pt", "ts.pt"):
        with pytest.raises(ArtifactError, match=f"{name}: not a torch.export program"):
            load_torch_export(tmp_path / name)


def test_torch_export_check_failure_writes_nothing(tmp_path):
    """An exported program that disagrees with the eager model is refused, naming the difference."""
    from autounfold.deploy import export as ex
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 2}})

    def skewed(wrapper, inputs):                           # the real torch.export, its module off by 0.5
        program, module = ex._torch_export(wrapper, inputs)
        return program, lambda H_real, nv: module(H_real, nv) + 0.5
    with pytest.raises(ArtifactError, match=r"torch.export module differs from the eager model at batch 5 "
                                            r"\(max \|diff\| 0.5\); not written"):
        ex._export(build_model(cfg), tmp_path / "m.pt2", ex.TORCH_EXPORT, skewed, ex._save_program, 8, 5, 1e-5)
    assert list(tmp_path.iterdir()) == []

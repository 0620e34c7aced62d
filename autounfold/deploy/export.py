"""TorchScript export with real-valued inputs and outputs, for runtimes without complex tensors.

The exported module takes ``H_real: (B, n_rx, n_tx, 2) float32`` (``torch.view_as_real`` of the
complex64 channel) and ``noise_var: (B,) float32`` and returns ``W_real: (B, n_tx, n_streams, 2)
float32`` (``torch.view_as_complex`` gives the precoder). It is traced, not scripted: the unrolled
loop has a fixed depth, so tracing records exactly the K layers; the trace is checked against the
eager model on a second batch size before it is written, so a shape baked into the graph is caught.
Input validation (shapes, finiteness) is the caller's job at this boundary; the eager model keeps it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..channels.base import ChannelBatch
from ..errors import ArtifactError



class RealInterface(nn.Module):
    """Wraps a beamforming ``Unfolded`` model: real tensors in, real tensors out."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.power = float(model.problem.power)

    def forward(self, H_real: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        H = torch.view_as_complex(H_real.contiguous())
        snr_db = 10.0 * torch.log10(self.power / noise_var)
        inst = ChannelBatch(H, noise_var, snr_db)
        return torch.view_as_real(self.model.run(inst).contiguous())


def export_torchscript(model, path: "str | Path", example_batch: int = 8, check_batch: int = 5,
                       atol: float = 1e-5) -> Path:
    """Trace ``model`` (an ``Unfolded`` for beamforming) into ``path`` (a ``.pt`` TorchScript file)
    and write ``<path>.json`` describing the interface. Raises ArtifactError when the model is not a
    beamforming model or the trace does not reproduce the eager model on another batch size."""
    from ..seeding import generator

    problem = model.problem
    if not problem.draws_channels:
        raise ArtifactError(f"TorchScript export takes models called as model(H, noise_var) (problems that draw "
                            f"channels); a {problem.name} model is not one")
    if Path(path).is_dir():
        raise ArtifactError(f"{path}: is a directory; give the file to write, e.g. {Path(path) / 'model.pt'}")
    model = model.cpu().eval()
    wrapper = RealInterface(model).eval()

    def example(batch, purpose):
        inst = problem.sample(batch, generator(0, "export", purpose))
        return torch.view_as_real(inst.H).contiguous(), inst.noise_var

    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        # shape-dependent Python branches (one stream or several) are fixed for a given model:
        # the tracer's warnings about them are expected; the check below is what guards the trace
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, example(example_batch, "trace"), check_trace=False)
        for b in (check_batch, example_batch + 3):
            H_real, nv = example(b, f"check{b}")
            want, got = wrapper(H_real, nv), traced(H_real, nv)
            if got.shape != want.shape or not torch.allclose(got, want, atol=atol, rtol=1e-4):
                raise ArtifactError(f"the traced model differs from the eager model at batch {b} "
                                    f"(max |diff| {float((got - want).abs().max()) if got.shape == want.shape else 'shape'}); "
                                    "not written")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.jit.save(traced, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    cfg = getattr(model, "config", None)
    meta = {"format": "torchscript", "inputs": {"H_real": ["B", problem.n_rx, problem.n_tx, 2], "noise_var": ["B"]},
            "output": {"W_real": ["B", problem.n_tx, problem.n_streams, 2]}, "dtype": "float32",
            "power": problem.power, "constraint": problem.constraint, "torch_version": torch.__version__,
            "config": cfg.model_dump(mode="json") if cfg is not None else None}
    Path(str(path) + ".json").write_text(json.dumps(meta, indent=2))
    return path


def load_torchscript(path: "str | Path"):
    """Load an exported module (``torch.jit.load``), on CPU."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such TorchScript file")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as err:    # torch.jit.load's failures on a foreign file
        raise ArtifactError(f"{path}: not a TorchScript module ({type(err).__name__}: {str(err)[:200]})") from None

"""Export with real-valued inputs and outputs, for runtimes without complex tensors.

Two formats, one interface. The exported module takes ``H_real: (B, n_rx, n_tx, 2) float32``
(``torch.view_as_real`` of the complex64 channel) and ``noise_var: (B,) float32`` and returns
``W_real: (B, n_tx, n_streams, 2) float32`` (``torch.view_as_complex`` gives the precoder).

* ``torch.export`` (``export_torch_export``, a ``.pt2`` archive): ``torch.export.export`` with a
  dynamic batch dimension; load with ``load_torch_export`` (``torch.export.load(path).module()``).
  The complex arithmetic stays inside the graph (complex aten ops: ``view_as_complex``, complex
  ``matmul``, ``linalg_solve``, ``linalg_eigvalsh``); only the boundary is real.
* TorchScript (``export_torchscript``, a ``.pt`` file; deprecated in recent PyTorch, what older
  runtimes load): traced, not scripted: the unrolled loop has a fixed depth, so tracing records
  exactly the K layers.

Both go through ``_export``: the same example inputs, the exported module compared with the eager
model at two batch sizes it was not built with before anything is written, the file written
atomically (temporary file + ``os.replace``) and ``<path>.json`` describing the interface
(``real_interface``). Input validation (shapes, finiteness) is the caller's job at this boundary;
the eager model keeps it.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ..channels.base import ChannelBatch
from ..errors import ArtifactError

TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch.export"


class RealInterface(nn.Module):
    """Wraps an ``Unfolded`` model: real tensors in, real tensors out. Beamforming-style problems take
    (H_real, noise_var); a problem with other inputs declares ``from_real(*tensors) -> instance`` and
    ``to_real(instance) -> tensors`` (detection: y_real, H_real, noise_var)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.power = float(getattr(model.problem, "power", 1.0))

    def forward(self, *inputs: torch.Tensor):
        problem = self.model.problem
        if hasattr(problem, "from_real"):
            inst = problem.from_real(*inputs)
        else:
            H_real, noise_var = inputs
            H = torch.view_as_complex(H_real.contiguous())
            snr_db = 10.0 * torch.log10(self.power / noise_var)
            inst = ChannelBatch(H, noise_var, snr_db)
        out = problem.output(self.model.run(inst), inst)
        if isinstance(out, (tuple, list)):                      # several outputs (hybrid: W_a, W_d)
            return tuple(_real(o) for o in out)
        return _real(out)


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t.contiguous()) if t.is_complex() else t


def real_example(problem, inst) -> tuple:
    """The real-valued inputs of ``inst`` in the order of ``real_interface(problem)["inputs"]``."""
    to_real = getattr(problem, "to_real", None)
    if callable(to_real):
        return tuple(to_real(inst))
    return torch.view_as_real(inst.H).contiguous(), inst.noise_var


def real_interface(problem) -> Optional[dict]:
    """The real-valued interface of a model called as ``model(H, noise_var)``: ``{"inputs": {name:
    shape}, "output": {name: shape}, "dtype": "float32"}`` with "B" for the batch dimension. A
    problem that declares its own (``problem.real_interface()``, e.g. hybrid precoding's two outputs)
    gives that; a problem that draws channels the precoder's; None for any other problem. The exported
    modules, their ``.json`` and the MLflow signature of a registered version all describe this."""
    own = getattr(problem, "real_interface", None)
    if callable(own):
        return own()
    if not problem.draws_channels:
        return None
    return {"inputs": {"H_real": ["B", problem.n_rx, problem.n_tx, 2], "noise_var": ["B"]},
            "output": {"W_real": ["B", problem.n_tx, problem.n_streams, 2]}, "dtype": "float32"}


def _outputs(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` into a temporary sibling of ``path``, then rename it over ``path``: the path
    holds the old file or the complete new one, never a half-written one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _export(model, path, fmt: str, build: Callable, save: Callable, example_batch: int, check_batch: int,
            atol: float) -> Path:
    """Shared by both formats: ``build(wrapper, example_inputs) -> (artifact, callable)``, checked
    against the eager wrapper at two other batch sizes, then ``save(artifact, tmp_path)`` and the
    interface ``.json``, both atomically."""
    from ..seeding import generator

    problem = model.problem
    interface = real_interface(problem)
    if interface is None:
        raise ArtifactError(f"{fmt} export takes models called as model(H, noise_var) (problems that draw "
                            f"channels, or declare a real interface); a {problem.name} model is not one")
    if Path(path).is_dir():
        raise ArtifactError(f"{path}: is a directory; give the file to write, e.g. "
                            f"{Path(path) / ('model.pt2' if fmt == TORCH_EXPORT else 'model.pt')}")
    model = model.cpu().eval()
    wrapper = RealInterface(model).eval()

    def example(batch, purpose):
        return real_example(problem, problem.sample(batch, generator(0, "export", purpose)))

    with torch.no_grad():
        artifact, exported = build(wrapper, example(example_batch, "trace"))
        for b in (check_batch, example_batch + 3):
            inputs = example(b, f"check{b}")
            wants, gots = _outputs(wrapper(*inputs)), _outputs(exported(*inputs))
            if [g.shape for g in gots] != [w.shape for w in wants]:
                raise ArtifactError(f"the {fmt} module gives shapes {[tuple(g.shape) for g in gots]} at batch {b}, the "
                                    f"eager model {[tuple(w.shape) for w in wants]}; not written")
            for got, want in zip(gots, wants):
                if not torch.allclose(got, want, atol=atol, rtol=1e-4):
                    raise ArtifactError(f"the {fmt} module differs from the eager model at batch {b} "
                                        f"(max |diff| {float((got - want).abs().max()):.3g}); not written")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, lambda tmp: save(artifact, tmp))
    cfg = getattr(model, "config", None)
    meta = {"format": fmt, **interface, "power": getattr(problem, "power", None), "constraint": getattr(problem, "constraint", None),
            "torch_version": torch.__version__, "config": cfg.model_dump(mode="json") if cfg is not None else None}
    meta_path = Path(str(path) + ".json")
    _write_atomic(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
    return path


def _trace(wrapper, inputs) -> Tuple[object, object]:
    import warnings
    with warnings.catch_warnings():
        # shape-dependent Python branches (one stream or several) are fixed for a given model:
        # the tracer's warnings about them are expected; the check in _export guards the trace
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, inputs, check_trace=False)
    return traced, traced


def export_torchscript(model, path: "str | Path", example_batch: int = 8, check_batch: int = 5,
                       atol: float = 1e-5) -> Path:
    """Trace ``model`` (an ``Unfolded`` for beamforming) into ``path`` (a ``.pt`` TorchScript file)
    and write ``<path>.json`` describing the interface. Raises ArtifactError when the model is not a
    beamforming model or the trace does not reproduce the eager model on other batch sizes."""
    return _export(model, path, TORCHSCRIPT, _trace, lambda traced, tmp: torch.jit.save(traced, tmp),
                   example_batch, check_batch, atol)


def _torch_export(wrapper, inputs) -> Tuple[object, object]:
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(wrapper, inputs, dynamic_shapes={"inputs": tuple({0: batch} for _ in inputs)})
    except Exception as err:      # torch.export's refusals span many types (Unsupported, UserError, ...)
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise ArtifactError(f"torch.export cannot export this model ({type(err).__name__}: {first}); "
                            "nothing written") from err
    return program, program.module()


def _save_program(program, tmp: str) -> None:
    with open(tmp, "wb") as fh:          # a file object: torch.export.save wants a name ending in .pt2 otherwise
        torch.export.save(program, fh)


def export_torch_export(model, path: "str | Path", example_batch: int = 8, check_batch: int = 5,
                        atol: float = 1e-5) -> Path:
    """``torch.export.export`` ``model`` (an ``Unfolded`` for beamforming) behind the real-valued
    wrapper with a dynamic batch dimension, save it with ``torch.export.save`` into ``path`` (a
    ``.pt2`` archive) and write ``<path>.json`` describing the interface. Raises ArtifactError when
    the model is not a beamforming model, torch.export refuses it, or the exported program does not
    reproduce the eager model on two other batch sizes (nothing is written then)."""
    return _export(model, path, TORCH_EXPORT, _torch_export, _save_program, example_batch, check_batch, atol)


EXPORTERS = {TORCHSCRIPT: export_torchscript, TORCH_EXPORT: export_torch_export}


def load_torchscript(path: "str | Path"):
    """Load an exported module (``torch.jit.load``), on CPU."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such TorchScript file")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as err:    # torch.jit.load's failures on a foreign file
        raise ArtifactError(f"{path}: not a TorchScript module ({type(err).__name__}: {str(err)[:200]})") from None


def _is_pt2_archive(path: Path) -> bool:
    """A zip whose ``<name>/archive_format`` record says ``pt2`` (what torch.export.save writes):
    checked first so a foreign file is refused without torch.export.load's logged traceback."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/archive_format") and zf.read(n).strip() == b"pt2" for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return False


def load_torch_export(path: "str | Path"):
    """Load an exported program (``torch.export.load``) and return its callable module
    (``.module()``): ``module(H_real, noise_var) -> W_real``."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such torch.export file")
    if not _is_pt2_archive(path):
        raise ArtifactError(f"{path}: not a torch.export program (expected a .pt2 archive from torch.export.save)")
    try:
        with open(path, "rb") as fh:
            program = torch.export.load(fh)
        return program.module()
    except (RuntimeError, ValueError, OSError, KeyError, AssertionError, zipfile.BadZipFile) as err:
        raise ArtifactError(f"{path}: not a loadable torch.export program "
                            f"({type(err).__name__}: {str(err).strip()[:200]})") from None

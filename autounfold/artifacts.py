"""Saving and loading models: weights (a plain state dict) + the experiment config, no pickled code.

A model directory holds ``config.yaml`` (canonical experiment config), ``weights.pt`` (tensors only,
read with ``torch.load(weights_only=True)``) and ``meta.json`` (format version, metrics, and the
sha256 of the config and of the weights, verified on load).

Writing is safe for the user's files and atomic for the model:
* ``check_output_dir`` refuses an ``--out`` that holds anything but an autounfold model (a regular
  file, a directory of other files) unless ``overwrite`` is given: nothing the program did not
  write is deleted without being asked.
* the new model is written completely in a hidden sibling directory, then exchanged with the old
  one in one ``renameat2(RENAME_EXCHANGE)`` call (Linux); at every instant the path holds either the
  old or the new complete model. Where the exchange is not available, the old model is first
  renamed to a recovery name that ``load`` / the next ``save`` restore from after a crash.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .build import build_model
from .config import ExperimentConfig, parse_config, yaml_mapping
from .errors import ArtifactError
from .unfolding.layers import revision_mismatch, revision_record

FORMAT_VERSION = 1
MODEL_FILES = ("config.yaml", "weights.pt", "meta.json")


def is_model_dir(path: Path) -> bool:
    """A directory that an autounfold ``save`` wrote (its three files, meta.json naming the format)."""
    path = Path(path)
    if not path.is_dir() or not all((path / f).is_file() for f in MODEL_FILES):
        return False
    try:
        return "format_version" in json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False


def check_output_dir(path: "str | Path", overwrite: bool = False) -> Path:
    """Raise ArtifactError unless ``path`` may receive a model: it does not exist, is an empty
    directory, is an earlier autounfold model, or ``overwrite`` is given."""
    path = Path(path)
    _recover(path)
    _check_writable(path.parent)
    if overwrite or not (path.exists() or path.is_symlink()):
        return path
    if path.is_dir() and not path.is_symlink():
        if is_model_dir(path) or not any(path.iterdir()):
            return path
        raise ArtifactError(f"{path}: an existing directory that is not an autounfold model directory; refusing to replace "
                            "what autounfold did not write (choose another --out, or pass --overwrite)")
    raise ArtifactError(f"{path}: exists and is not a directory; refusing to replace it "
                        "(choose another --out, or pass --overwrite)")


def _check_writable(directory: Path) -> None:
    """ArtifactError now (before any training) when ``directory`` cannot receive a model."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ArtifactError(f"{directory}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ArtifactError(f"{directory}: not writable ({probe} refuses new files)")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
        return False                               # this file system cannot exchange: two-step path
    raise OSError(err, os.strerror(err), str(b))


def _recovery_name(path: Path) -> Path:
    return path.parent / f".{path.name}.replaced"


def _recover(path: Path) -> None:
    """Finish a replacement a crash interrupted on a system without the atomic exchange: the old
    model is back under ``path`` if nothing took its place."""
    old = _recovery_name(path)
    if old.is_dir():
        if not path.exists():
            os.replace(old, path)
        else:
            shutil.rmtree(old, ignore_errors=True)


def _with_model_knots(config: ExperimentConfig, model) -> ExperimentConfig:
    """``config`` with an integer ``model.snr_knots`` / ``cond_knots`` replaced by the knots ``model`` was
    built with: a count would be spread again on whatever problem the model is later loaded or moved to,
    under weights learned at the old knots."""
    update = {}
    for field in ("snr_knots", "cond_knots"):
        knots = getattr(model, field, None)
        if isinstance(knots, torch.Tensor) and isinstance(getattr(config.model, field, None), int):
            update[field] = [float(v) for v in knots.tolist()]
    return config.model_copy(update={"model": config.model.model_copy(update=update)}) if update else config


def save(model, path, config: ExperimentConfig, metrics: Optional[dict] = None, overwrite: bool = False,
         extra_files: Optional[dict] = None) -> Path:
    """Write the model directory ``path`` (see the module docstring for what may be replaced and
    how), with ``extra_files`` (name -> text) beside the model files. Raises ArtifactError for an
    output that is not the program's to replace."""
    path = Path(path)
    check_output_dir(path, overwrite)
    config = _with_model_knots(config, model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.new.", dir=path.parent))
    except OSError as err:
        raise ArtifactError(f"{path}: cannot be written ({err.strerror or err})") from None
    try:
        config_bytes = config.canonical_yaml().encode()
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
        weight_bytes = buf.getvalue()
        (tmp / "config.yaml").write_bytes(config_bytes)
        (tmp / "weights.pt").write_bytes(weight_bytes)
        problem = model.problem
        meta = {"format_version": FORMAT_VERSION, "num_parameters": model.num_parameters(),
                "interface": {"problem": problem.name, "inputs": problem.inputs, "outputs": problem.outputs},
                "sha256": {"config.yaml": _digest(config_bytes), "weights.pt": _digest(weight_bytes)},
                "layer_parameters": model.scalar_parameters(), "metrics": _finite(metrics or {})}
        if getattr(model, "cond_knots", None) is not None:        # what the condition knots are values of
            meta["conditioning"] = getattr(problem, "conditioning", None)
        meta["layer_revision"] = revision_record(model.layer)   # which update rule the weights fit
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        for f in MODEL_FILES:                            # on disk before the model becomes visible
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        if path.is_dir() and not path.is_symlink() and _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)       # tmp now holds the old model
        elif path.is_dir() and not path.is_symlink():
            old = _recovery_name(path)                   # no atomic exchange here: recoverable two-step
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if path.exists() or path.is_symlink():       # a file the user asked (--overwrite) to replace
                path.unlink()
            os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArtifactError(f"{path}: cannot be written ({err.strerror or err})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _finite(metrics: dict) -> dict:
    """JSON-safe metrics: non-finite floats become None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def load(path, map_location="cpu"):
    """Rebuild a saved model from its directory; returns the ``Unfolded`` module in eval mode.

    Refuses (ArtifactError) a directory whose files are missing, whose config or weights do not
    match the sha256 recorded in meta.json (an edited config.yaml, a swapped weights.pt), or whose
    weights are not finite."""
    path = Path(path)
    _recover(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such model directory")
    for name in ("config.yaml", "weights.pt"):
        if not (path / name).is_file():
            raise ArtifactError(f"{path}: not an autounfold model directory (missing {name})")
    # each file is read once: the bytes that are verified are the bytes that are parsed
    raw = {name: (path / name).read_bytes() for name in ("config.yaml", "weights.pt")}
    meta = _read_meta(path)
    for name, digest in _recorded_digests(meta).items():
        if _digest(raw[name]) != digest:
            raise ArtifactError(f"{path / name}: does not match the sha256 recorded in meta.json "
                                "(the file was changed after the model was saved)")
    origin = str(path / "config.yaml")
    cfg = parse_config(yaml_mapping(raw["config.yaml"], origin, ArtifactError), origin)
    model = build_model(cfg)
    _check_conditioning(path, model, meta)
    _check_layer_revision(path, model, meta)
    try:
        state = torch.load(io.BytesIO(raw["weights.pt"]), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        # a corrupt file, or pickled code that weights_only refuses
        raise ArtifactError(f"{path / 'weights.pt'}: cannot be read as plain tensors ({err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path / 'weights.pt'}: not a state dict of tensors")
    bad = [k for k, v in state.items() if not torch.isfinite(torch.view_as_real(v) if v.is_complex() else v).all()]
    if bad:
        raise ArtifactError(f"{path / 'weights.pt'}: non-finite values in {', '.join(bad)}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ArtifactError(f"{path}: weights do not match config.yaml ({str(err).splitlines()[0]})") from None
    model.config = cfg
    return model.eval()


def _check_conditioning(path: Path, model, meta: dict) -> None:
    """ArtifactError where the model's condition knots are values of another feature than the one its
    problem computes now (``problem.conditioning``, recorded in meta.json at save; a model saved before
    the record existed conditioned on an earlier definition): its scalars would be read at the wrong knots."""
    if getattr(model, "cond_knots", None) is None:
        return
    recorded = meta.get("conditioning")
    now = getattr(model.problem, "conditioning", None)
    if recorded != now:
        raise ArtifactError(f"{path}: its condition knots (model.cond_knots) are values of "
                            f"{recorded or 'an earlier conditioning feature'}, but {model.problem.name} now "
                            f"conditions on {now}; retrain it")


def _check_layer_revision(path: Path, model, meta: dict) -> None:
    """ArtifactError where the weights were trained for another revision of the model's layer type
    (``LayerType.revision``, recorded in meta.json at save; a model saved before the record existed
    was trained for revision 1): the same parameters would feed another computation."""
    why = revision_mismatch(model.layer, meta.get("layer_revision"))
    if why:
        raise ArtifactError(f"{path}: {why}; retrain it")


def _read_meta(path: Path) -> dict:
    """meta.json of a model directory as a dict ({} where there is none, or it holds no object);
    ArtifactError where it is not valid JSON."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ArtifactError(f"{meta_path}: not valid JSON ({err})") from None
    return meta if isinstance(meta, dict) else {}


def _recorded_digests(meta: dict) -> dict:
    digests = meta.get("sha256")
    return {k: v for k, v in digests.items() if k in ("config.yaml", "weights.pt")} if isinstance(digests, dict) else {}

"""Saving and loading models: weights (a plain state dict) + the experiment config, no pickled code.

A model directory holds ``config.yaml`` (canonical experiment config), ``weights.pt`` (tensors only,
read with ``torch.load(weights_only=True)``) and ``meta.json`` (format version, metrics).
"""
from __future__ import annotations

import json
import pickle
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch
import yaml

from .build import build_model
from .config import ExperimentConfig, parse_config
from .errors import ArtifactError

FORMAT_VERSION = 1


def save(model, path, config: ExperimentConfig, metrics: Optional[dict] = None) -> Path:
    """Write the model directory atomically: a temporary sibling directory renamed into place, so
    an interrupted save never leaves a half-written model behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / "config.yaml").write_text(config.canonical_yaml())
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp / "weights.pt")
        problem = model.problem
        meta = {"format_version": FORMAT_VERSION, "num_parameters": model.num_parameters(),
                "interface": {"problem": problem.name, "inputs": problem.inputs, "outputs": problem.outputs},
                "layer_parameters": model.scalar_parameters(), "metrics": metrics or {}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if path.exists():                       # replace an earlier save: swap, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "model")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path, map_location="cpu"):
    """Rebuild a saved model from its directory; returns the ``Unfolded`` module in eval mode."""
    path = Path(path)
    for name in ("config.yaml", "weights.pt"):
        if not (path / name).is_file():
            raise ArtifactError(f"{path}: not an autounfold model directory (missing {name})")
    cfg = parse_config(yaml.safe_load((path / "config.yaml").read_text()), str(path / "config.yaml"))
    model = build_model(cfg)
    try:
        state = torch.load(path / "weights.pt", map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        # a corrupt file, or pickled code that weights_only refuses
        raise ArtifactError(f"{path / 'weights.pt'}: cannot be read as plain tensors ({err})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ArtifactError(f"{path}: weights do not match config.yaml ({err})") from None
    model.config = cfg
    return model.eval()

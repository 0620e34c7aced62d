"""Single experiments as operations: train one model and save it; draw synthetic CSI to Parquet.
What ``autounfold train`` and ``autounfold csi write`` run, callable from Python."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import torch

from ..algorithms import evaluation_reference
from ..artifacts import check_output_dir, save
from ..build import build_model, build_problem, check_memory
from ..config import load_config
from ..errors import ConfigError
from ..seeding import generator
from ..training import train

TEST_BATCH = 2048


def check_device(device: str) -> torch.device:
    """The torch device ``device`` names, or ConfigError when it is unknown or absent here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device: unknown torch device {device!r} (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available on this machine (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: autounfold runs on cpu, cuda or mps")
    return dev


def train_experiment(config: str, out: "str | Path", overrides: Optional[List[str]] = None, device: str = "cpu",
                     progress: bool = True, overwrite: bool = False) -> dict:
    """Train the experiment ``config`` (a YAML path or ``preset:NAME``), score it on the test
    stream (``generator(seed, "test")``, 2048 instances) and save it to ``out`` with its history.
    Returns the saved metrics plus ``model_dir`` and ``layer_parameters``.

    Everything is checked before training starts (config, device, that ``out`` may be written:
    ``artifacts.check_output_dir``); nothing is written until the model is complete."""
    cfg = load_config(config, overrides)
    check_device(device)
    check_output_dir(out, overwrite)
    check_memory(cfg)
    model = build_model(cfg)
    res = train(model, cfg.training, seed=cfg.seed, device=device, progress=progress)
    problem = model.problem
    test = problem.sample(TEST_BATCH, generator(cfg.seed, "test"), device)
    with torch.no_grad():
        metrics = problem.summarize(model.run(test), test, evaluation_reference(problem, test))
    metrics.update(best_validation_score=res.best_score, best_step=res.best_step, train_seconds=res.seconds)
    if res.refine is not None:
        metrics.update({f"refine_{k}": v for k, v in res.refine.items() if k not in ("params", "placed")})
        if "placed" in res.refine:                # where training.refine.crossing put the draw
            placed = res.refine["placed"]
            metrics.update(refine_band=placed["band"], refine_crossing=placed["crossing"], refine_crossing_kind=placed["kind"])
    save(model.cpu(), out, model.config, metrics, overwrite=overwrite,
         extra_files={"history.json": json.dumps(res.history, indent=1)})
    return {"model_dir": str(out), **metrics, "layer_parameters": model.scalar_parameters()}


def write_synthetic_csi(out: "str | Path", rows: int, config: str = "preset:auto_pgd",
                        overrides: Optional[List[str]] = None, seed: int = 0, cell_id: Optional[str] = None,
                        start_ms: Optional[int] = None, interval_ms: int = 1) -> dict:
    """Draw ``rows`` channels from the experiment's channel model (``generator(seed, "csi")``) and
    write them in the autounfold CSI schema. Returns ``{"path", "rows", "channel"}``.

    Every problem whose monitor reads recorded CSI (``Problem.accepts_csi``) can be written: the
    precoding problems (H (n_rx, n_tx), downlink) and detection (H (n_rx, n_users), the uplink as its
    ``problem.source`` draws it: the rows its monitor's ``traffic`` reads back). The file's ``power``
    is the source's (P in ``noise_var = P / 10**(snr_db/10)``; detection: 1, unit-energy symbols)."""
    import numpy as np

    from ..channels.parquet import write_csi
    if rows < 1:
        raise ConfigError(f"--rows must be >= 1 (got {rows})")
    cfg = load_config(config, overrides)
    problem = build_problem(cfg.problem)
    source = getattr(problem, "source", None)
    if not problem.accepts_csi() or source is None or not hasattr(source, "sample"):
        raise ConfigError(f"csi write draws MIMO channels: problem {cfg.problem.name!r} of {config} does not draw "
                          "channels that recorded CSI holds")
    batch = source.sample(rows, generator(seed, "csi"))
    t0 = start_ms if start_ms is not None else int(time.time() * 1000)
    path = write_csi(out, batch, t0 + interval_ms * np.arange(rows, dtype=np.int64),
                     [cell_id] * rows if cell_id else None, power=source.power)
    ch = cfg.problem.channel
    sizes = f"{ch.n_rx} x {ch.n_tx}" if problem.draws_channels else f"{ch.n_rx} x {ch.n_tx}, n_rx x users"
    return {"path": str(path), "rows": rows, "channel": f"{ch.model}, {sizes}"}

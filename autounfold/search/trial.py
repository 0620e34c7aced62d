"""One search trial, independent of Ray: params -> experiment -> train on its own shard -> metrics.

The Ray trainable (``search.tune_trainable``) is a thin wrapper that passes ``tune.report`` in
as ``report`` and a restored checkpoint as ``resume``; tests call ``run_trial`` directly.

Seeding: the training batches of trial ``trial_id`` come from ``generator(spec.seed,
"trial:<trial_id>", phase, step)`` (``training.trainer``), so two trials never share a shard and
replaying a trial with the same id reproduces it bit for bit on CPU; the validation set comes from
``generator(spec.seed, "validation")`` and is the same for every trial.
"""
from __future__ import annotations

import math
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import AutoUnfoldError
from ..gpu.memory import apply_memory_caps
from ..spaces.spec import SearchSpec

FAILED = "failed"
OK = "ok"


def shard_purpose(trial_id: str) -> str:
    return f"trial:{trial_id}"


def objective_value(spec: SearchSpec, score: float, num_layers: int, latency_ms: Optional[float] = None) -> float:
    """The searched number: the metric, less the depth penalty, less the latency penalty when over budget."""
    sign = spec.objective.sign
    value = score - sign * spec.objective.depth_penalty * num_layers
    budget = spec.objective.latency_budget_ms
    if budget is not None and latency_ms is not None and latency_ms > budget:
        value -= sign * spec.objective.latency_penalty
    return value


Report = Callable[[dict, Optional[dict], Optional[Path]], None]
"""report(metrics, trainer_state or None, model_dir or None): called at every validation and once at the end."""


def run_trial(spec: SearchSpec, params: dict, trial_id: str, report: Report, resume: Optional[dict] = None,
              device: str = "cpu", threads: Optional[int] = None) -> dict:
    """Train and evaluate one configuration; returns the final metrics (also passed to ``report``).

    Never raises for a bad configuration or a diverging run: the final metrics then carry
    ``status="failed"``, ``reason`` and ``objective = spec.objective.worst``.
    """
    from ..build import build_model, check_memory
    from ..training import train

    if threads:
        torch.set_num_threads(max(1, int(threads)))
    caps = apply_memory_caps(spec.resources.gpu)
    started = time.perf_counter()
    base = {"trial_id": trial_id, "shard": shard_purpose(trial_id), "memory_cap": caps["torch"] or caps["cupy"] or 0.0}
    model = None
    try:
        cfg = spec.experiment(params)
        check_memory(cfg)
        model = build_model(cfg)
        K = cfg.model.num_layers

        def on_validation(entry, snapshot):
            metrics = {**base, **_numbers(entry), "num_layers": K, "status": "running", "done": False,
                       "objective": objective_value(spec, entry["val_score"], K)}
            report(metrics, snapshot(), None)

        result = train(model, cfg.training, seed=spec.seed, purpose=shard_purpose(trial_id), device=device,
                       progress=False, on_validation=on_validation, resume=resume)
        latency = _latency(model, spec, device) if spec.objective.measure_latency else None
        final = {**base, **_numbers(result.history[-1] if result.history else {}), "num_layers": K,
                 "val_score": result.best_score, "best_step": result.best_step,
                 "latency_ms": latency if latency is not None else float("nan"),
                 "num_parameters": model.num_parameters(), "train_seconds": result.seconds,
                 "objective": objective_value(spec, result.best_score, K, latency),
                 "status": OK, "reason": "", "done": True, "trial_seconds": time.perf_counter() - started}
        if not math.isfinite(final["objective"]):
            raise AutoUnfoldError(f"validation score is not finite ({result.best_score})")
        with tempfile.TemporaryDirectory() as tmp:
            from ..artifacts import save
            model_dir = save(model, Path(tmp) / "model", model.config, metrics={"val_score": result.best_score,
                                                                       "latency_ms": final["latency_ms"]})
            report(final, None, model_dir)
        return final
    except Exception as err:  # a failed trial is a result: record why, let the search go on
        reason = f"{type(err).__name__}: {err}"
        if not isinstance(err, AutoUnfoldError):  # a bug rather than a bad config: say where
            frame = traceback.extract_tb(err.__traceback__)[-1]
            reason += f" (at {Path(frame.filename).name}:{frame.lineno})"
        final = {**base, "status": FAILED, "reason": reason[:2000], "done": True,
                 "objective": spec.objective.worst, "val_score": float("nan"),
                 "seconds": time.perf_counter() - started}
        report(final, None, None)
        return final


def _numbers(entry: dict) -> dict:
    return {k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _latency(model, spec: SearchSpec, device) -> float:
    """Median wall time (ms) of one forward pass on a batch of ``objective.latency_batch`` channels."""
    from ..evaluation.latency import measure_latency
    from ..seeding import generator

    inst = model.problem.sample(spec.objective.latency_batch, generator(spec.seed, "latency"), device)
    # a channel batch is timed on a new batch per call (``inst[:]`` starts without ``derived``): a problem may
    # keep per-batch work there (MU-MISO: the Gram matrix, RZF's inverse), and a timed call must do it as a
    # user's call does; a plugin's own instance type is timed as it is
    fresh = (lambda: inst[:]) if isinstance(getattr(inst, "derived", None), dict) else (lambda: inst)
    return measure_latency({"model": lambda: model.run(fresh())}, repeats=15, warmup=2)["model"]["median_ms"]

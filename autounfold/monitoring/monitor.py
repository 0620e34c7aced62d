"""The monitor loop: windows of CSI in, per-window statistics, alerts and (at most once per drift)
re-search triggers out. Pure PyTorch plus a JSON-lines event log; what a trigger *does* is a
callback (``autounfold monitor`` passes one that runs a warm-started re-search and registers the
result as the new challenger)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional

import torch
from pydantic import Field

from ..algorithms import reference
from ..channels.base import ChannelBatch, build_channel
from ..errors import ConfigError
from ..schema import Schema
from ..seeding import SEED_MAX, SEED_MIN
from ..seeding import generator
from .drift import covariance_shift, estimate_angular_spread, gradient_norm, parameter_drift, transmit_covariance


GRAD_CHUNK = 256                      # channels per gradient-norm evaluation


class MonitorConfig(Schema):
    """Thresholds and sizes; defaults are the seed article's values where it gives one."""

    window: int = Field(512, ge=8)                              # channels per window
    covariance_threshold: float = Field(0.15, gt=0)             # relative Frobenius change -> re-search
    shadow_fraction: float = Field(0.01, gt=0, le=1)            # share of inputs also solved by the reference
    shadow_threshold_pct: float = Field(97.0, gt=0, le=100)     # alert below this % of the reference
    step_drift_threshold: float = Field(0.20, gt=0)             # per-layer learned-parameter change -> alert
    grad_norm_ratio: float = Field(3.0, gt=1)                   # gradient norm vs baseline -> alert
    trigger_patience: int = Field(2, ge=1)                      # consecutive windows over the threshold
    baseline_channels: int = Field(4096, ge=64)
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX)


@dataclass
class Baseline:
    R_tx: torch.Tensor                 # (n_tx, n_tx) complex128, the training distribution's transmit covariance
    layer_parameters: dict             # per-layer learned scalars of the monitored version
    grad_norm: float                   # largest gradient norm over 8 training-distribution chunks of GRAD_CHUNK channels
    antenna_spacing: float = 0.5

    def to_state(self) -> dict:
        return {"R_tx": self.R_tx, "grad_norm": torch.tensor(self.grad_norm, dtype=torch.float64),
                "layer_parameters": json.dumps(self.layer_parameters), "antenna_spacing": self.antenna_spacing}

    @classmethod
    def from_state(cls, state: dict) -> "Baseline":
        return cls(state["R_tx"], json.loads(state["layer_parameters"]), float(state["grad_norm"]),
                   float(state.get("antenna_spacing", 0.5)))


def compute_baseline(model, channels: int = 4096, seed: int = 0) -> Baseline:
    """The baseline of a model: statistics of the distribution it was trained on (its config's source)."""
    problem = model.problem
    inst = problem.sample(channels, generator(seed, "monitor-baseline"))
    spacing = getattr(problem.source, "antenna_spacing", 0.5)
    # the gradient norm of a window is noisy (heavy-tailed per-channel gradients): its reference is
    # the largest of 8 chunks from the training distribution, so only a real change rings the alarm
    chunks = [problem.sample(GRAD_CHUNK, generator(seed, "monitor-baseline-grad", i)) for i in range(8)]
    reference = max(gradient_norm(model, c) for c in chunks)
    return Baseline(transmit_covariance(inst.H), model.scalar_parameters(), reference, spacing)


class EventLog:
    """Append-only JSON lines; a trigger ``key`` already in the log is not fired again (across restarts)."""

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.events: List[dict] = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    try:
                        self.events.append(json.loads(line))
                    except json.JSONDecodeError:       # a torn last line from a crash: ignore it
                        continue

    def fired(self, key: str) -> bool:
        return any(e.get("kind") == "trigger" and e.get("key") == key for e in self.events)

    def append(self, event: dict) -> dict:
        event = {"time": time.time(), **event}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(event, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.events.append(event)
        return event


def monitor_windows(model, windows: Iterable[ChannelBatch], cfg: MonitorConfig, baseline: Baseline, log: EventLog,
                    model_ref: str, on_trigger: Optional[Callable[[dict], Optional[dict]]] = None,
                    on_window: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """Process windows; returns one record per window. Alerts are logged; the covariance trigger
    fires once per ``model_ref`` (the drift is measured against that version's baseline)."""
    problem = model.problem
    records = []
    trigger_key = f"{model_ref}:covariance_shift"
    over = 0                                   # consecutive windows above the covariance threshold
    for w, raw in enumerate(windows):
        inst = problem.accept(raw)
        B = inst.H.shape[0]
        with torch.no_grad():
            W = model.run(inst)
            se = problem.objective(W, inst).double()
        R = transmit_covariance(inst.H)
        shift = covariance_shift(R, baseline.R_tx)
        coin = torch.rand(B, generator=generator(cfg.seed, "shadow", w)) < cfg.shadow_fraction
        if not coin.any():
            coin[int(torch.randint(0, B, (1,), generator=generator(cfg.seed, "shadow-one", w)))] = True
        sub = inst[coin]
        with torch.no_grad():
            ref_se = problem.objective(reference(problem, sub), sub).double()
        shadow = float(100.0 * se[coin].mean() / ref_se.mean())
        gnorm = gradient_norm(model, inst[: min(B, GRAD_CHUNK)])
        drift = parameter_drift(baseline.layer_parameters, model.scalar_parameters())
        rec = {"window": w, "channels": B, "se_mean": float(se.mean()), "covariance_shift": shift,
               "shadow_pct": shadow, "shadow_samples": int(coin.sum()), "grad_norm": gnorm,
               "grad_norm_ratio": gnorm / max(baseline.grad_norm, 1e-12), "parameter_drift": drift,
               "angular_spread_estimate": _spread(problem, R, baseline.antenna_spacing)}
        alerts = []
        if shift > cfg.covariance_threshold:
            alerts.append(("covariance_shift", shift, cfg.covariance_threshold))
        if shadow < cfg.shadow_threshold_pct:
            alerts.append(("shadow_pct", shadow, cfg.shadow_threshold_pct))
        if drift > cfg.step_drift_threshold:
            alerts.append(("parameter_drift", drift, cfg.step_drift_threshold))
        if rec["grad_norm_ratio"] > cfg.grad_norm_ratio:
            alerts.append(("grad_norm_ratio", rec["grad_norm_ratio"], cfg.grad_norm_ratio))
        for metric, value, threshold in alerts:
            log.append({"kind": "alert", "model": model_ref, "window": w, "metric": metric, "value": value,
                        "threshold": threshold})
        rec["alerts"] = [a[0] for a in alerts]
        over = over + 1 if shift > cfg.covariance_threshold else 0
        # a shift that persists (not one noisy window) triggers, once per model version
        if over >= cfg.trigger_patience and not log.fired(trigger_key):
            event = log.append({"kind": "trigger", "key": trigger_key, "model": model_ref, "window": w,
                                "metric": "covariance_shift", "value": shift, "threshold": cfg.covariance_threshold,
                                "angular_spread_estimate": rec["angular_spread_estimate"], "action": "re-search"})
            rec["trigger"] = event
            if on_trigger is not None:
                outcome = on_trigger(event)
                log.append({"kind": "trigger_done", "key": trigger_key, "model": model_ref, "outcome": outcome})
        records.append(rec)
        if on_window is not None:
            on_window(rec)
    return records


def _spread(problem, R, spacing: float) -> float:
    """The problem's own estimate of the angular spread where it has one, else the exponential model's."""
    own = problem.estimate_angular_spread(R)
    return float(own) if own is not None else estimate_angular_spread(R, spacing)


def window_line(rec: dict) -> str:
    """One human line per monitor window record."""
    return (f"window {rec['window']:>3}: cov shift {rec['covariance_shift']:.3f}  shadow {rec['shadow_pct']:.3f}%  "
            f"AS~{rec['angular_spread_estimate']:.1f} deg  grad x{rec['grad_norm_ratio']:.1f}"
            + (f"  ALERT {','.join(rec['alerts'])}" if rec["alerts"] else ""))


def parse_synthetic(spec: str) -> dict:
    """``synthetic:angular_spread=15->40,windows=12[,at=3]`` -> {"from": 15, "to": 40, "windows": 12, "at": 3}:
    a linear ramp over the windows, or with ``at`` a step change at that window."""
    body = spec.split(":", 1)[1] if ":" in spec else ""
    out = {"windows": 10, "at": None}
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key == "angular_spread" and "->" in value:
            a, b = value.split("->")
            out["from"], out["to"] = float(a), float(b)
        elif key in ("windows", "at"):
            try:
                out[key] = int(value)
            except ValueError:
                raise ConfigError(f"--source {spec!r}: {key} must be an integer (got {value!r})") from None
        else:
            raise ConfigError(f"--source {spec!r}: unknown part {part!r}; expected "
                              "synthetic:angular_spread=A->B,windows=N[,at=K]")
    if "from" not in out:
        raise ConfigError(f"--source {spec!r}: needs angular_spread=A->B (degrees)")
    if out["windows"] < 1:
        raise ConfigError(f"--source {spec!r}: windows must be >= 1")
    return out


def drifting_windows(model, spec: dict, window: int, seed: int = 0) -> Iterator[ChannelBatch]:
    """Windows of the model's own channel model whose angular spread moves from ``spec["from"]`` to
    ``spec["to"]`` degrees: linearly over ``spec["windows"]`` windows, or in one step at window ``spec["at"]``."""
    pcfg = model.config.problem
    n = spec["windows"]
    for w in range(n):
        if spec.get("at") is not None:
            a = spec["from"] if w < spec["at"] else spec["to"]
        else:
            a = spec["from"] + (spec["to"] - spec["from"]) * (w / max(n - 1, 1))
        src = model.problem.drift_source(pcfg, a) or \
            build_channel(pcfg.channel.model_copy(update={"model": "correlated_rayleigh", "angular_spread_deg": a}))
        yield src.sample(window, generator(seed, "drift", w))

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
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import torch
from pydantic import Field

from ..algorithms import reference
from ..channels.base import ChannelBatch, ChannelConfig, build_channel
from ..errors import ConfigError
from ..plugins import CHANNELS
from ..problems.base import Problem
from ..schema import Schema
from ..seeding import SEED_MAX, SEED_MIN
from ..seeding import generator
from .drift import covariance_shift, estimate_angular_spread, gradient_norm, monitored_covariance, parameter_drift


GRAD_CHUNK = 256                      # channels per gradient-norm evaluation


class MonitorConfig(Schema):
    """Thresholds and sizes; defaults are the seed article's values where it gives one."""

    window: int = Field(512, ge=8)                              # channels per window
    covariance_threshold: float = Field(0.15, gt=0)             # relative Frobenius change -> re-search
    shadow_fraction: Optional[float] = Field(None, gt=0, le=1)  # share of inputs also solved by the reference
    #                                                             (None: the problem's, Problem.shadow_fraction:
    #                                                             1% by default, every symbol for detection)
    shadow_threshold_pct: float = Field(97.0, gt=0, le=100)     # alert below this % of the reference
    step_drift_threshold: float = Field(0.20, gt=0)             # per-layer learned-parameter change -> alert
    grad_norm_ratio: float = Field(3.0, gt=1)                   # gradient norm vs baseline -> alert
    trigger_patience: int = Field(2, ge=1)                      # consecutive windows over the threshold
    baseline_channels: int = Field(4096, ge=64)
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX)


@dataclass
class Baseline:
    R_tx: torch.Tensor                 # (d, d) complex128, the training distribution's monitored moment
    #                                    (Problem.monitor_rows: the transmit covariance; detection: the
    #                                    per-user receive-array coherence)
    layer_parameters: dict             # per-layer learned scalars of the monitored version
    grad_norm: float                   # largest gradient norm over 8 training-distribution chunks of GRAD_CHUNK channels
    antenna_spacing: float = 0.5
    shadow: Optional[dict] = None      # the problem's own shadow numbers on the baseline draw (detection: the
    #                                    model's and LMMSE's SER at registration); None for the default shadow

    def to_state(self) -> dict:
        state = {"R_tx": self.R_tx, "grad_norm": torch.tensor(self.grad_norm, dtype=torch.float64),
                 "layer_parameters": json.dumps(self.layer_parameters), "antenna_spacing": self.antenna_spacing}
        if self.shadow is not None:
            state["shadow"] = json.dumps(self.shadow)
        return state

    @classmethod
    def from_state(cls, state: dict) -> "Baseline":
        return cls(state["R_tx"], json.loads(state["layer_parameters"]), float(state["grad_norm"]),
                   float(state.get("antenna_spacing", 0.5)),
                   json.loads(state["shadow"]) if "shadow" in state else None)


def compute_baseline(model, channels: int = 4096, seed: int = 0) -> Baseline:
    """The baseline of a model: statistics of the distribution it serves, its config's problem (the one
    it was validated on; ``training.problem`` may have drawn its training batches elsewhere)."""
    problem = model.problem
    inst = problem.sample(channels, generator(seed, "monitor-baseline"))
    spacing = getattr(problem.source, "antenna_spacing", 0.5)
    # the gradient norm of a window is noisy (heavy-tailed per-channel gradients): its reference is
    # the largest of 8 chunks from the training distribution, so only a real change rings the alarm
    chunks = [problem.sample(GRAD_CHUNK, generator(seed, "monitor-baseline-grad", i)) for i in range(8)]
    reference = max(gradient_norm(model, c) for c in chunks)
    shadow = None
    if type(problem).monitor_shadow is not Problem.monitor_shadow:      # the problem scores its own shadow
        with torch.no_grad():
            own = problem.monitor_shadow(model.run(inst), inst, torch.ones(inst.H.shape[0], dtype=torch.bool), 0.0)
        shadow = {k: float(v) for k, v in own.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return Baseline(monitored_covariance(problem, inst), model.scalar_parameters(), reference, spacing, shadow)


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
    spread_estimated = estimates_angular_spread(problem)
    fraction = cfg.shadow_fraction if cfg.shadow_fraction is not None else problem.shadow_fraction
    for w, raw in enumerate(windows):
        inst = problem.traffic(raw, generator(cfg.seed, "traffic", w))
        B = inst.H.shape[0]
        with torch.no_grad():
            W = model.run(inst)
            se = problem.objective(W, inst).double()
        R = monitored_covariance(problem, inst)
        shift = covariance_shift(R, baseline.R_tx)
        coin = torch.rand(B, generator=generator(cfg.seed, "shadow", w)) < fraction
        if not coin.any():
            coin[int(torch.randint(0, B, (1,), generator=generator(cfg.seed, "shadow-one", w)))] = True
        with torch.no_grad():
            own = problem.monitor_shadow(W, inst, coin, cfg.shadow_threshold_pct)
        if own is None:                        # the objective of the model as % of the reference solution's
            sub = inst[coin]
            with torch.no_grad():
                ref_se = problem.objective(reference(problem, sub), sub).double()
            shadow = float(100.0 * se[coin].mean() / ref_se.mean())
            own = {"shadow_pct": shadow, "shadow_alarm": shadow < cfg.shadow_threshold_pct}
        shadow = float(own["shadow_pct"])
        gnorm = gradient_norm(model, inst[: min(B, GRAD_CHUNK)])
        drift = parameter_drift(baseline.layer_parameters, model.scalar_parameters())
        rec = {"window": w, "channels": B, "se_mean": float(se.mean()), "covariance_shift": shift,
               "shadow_pct": shadow, "shadow_samples": int(coin.sum()), "grad_norm": gnorm,
               "grad_norm_ratio": gnorm / max(baseline.grad_norm, 1e-12), "parameter_drift": drift,
               **({"angular_spread_estimate": _spread(problem, R, baseline.antenna_spacing)} if spread_estimated else {}),
               **{k: v for k, v in own.items() if k not in ("shadow_pct", "shadow_alarm")}}
        if baseline.shadow and "shadow_pct" in baseline.shadow:
            rec["shadow_baseline_pct"] = float(baseline.shadow["shadow_pct"])
        alerts = []
        if shift > cfg.covariance_threshold:
            alerts.append(("covariance_shift", shift, cfg.covariance_threshold))
        if own["shadow_alarm"]:
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
            # where the problem can name what changed (detection: the channel model), the re-search is aimed there
            changes = problem.drift_changes(R)
            event = log.append({"kind": "trigger", "key": trigger_key, "model": model_ref, "window": w,
                                "metric": "covariance_shift", "value": shift, "threshold": cfg.covariance_threshold,
                                **({"angular_spread_estimate": rec["angular_spread_estimate"]} if spread_estimated else {}),
                                "action": "re-search",
                                "drift_changes": changes,
                                "research_set": [f"base.problem.{k}={v}" for k, v in changes.items()]})
            rec["trigger"] = event
            if on_trigger is not None:
                outcome = on_trigger(event)
                log.append({"kind": "trigger_done", "key": trigger_key, "model": model_ref, "outcome": outcome})
        records.append(rec)
        if on_window is not None:
            on_window(rec)
    return records


def estimates_angular_spread(problem) -> bool:
    """Whether the monitor estimates an angular spread for ``problem``: only where the monitored moment
    is the transmit covariance (the problem keeps the default ``Problem.monitor_rows``), which the
    estimate fits. Detection watches the per-user receive-array coherence: its records and trigger
    events carry no ``angular_spread_estimate``, and what its re-search re-targets is the trigger's
    ``research_set`` (``Problem.drift_changes``: the channel model)."""
    return type(problem).monitor_rows is Problem.monitor_rows


def _spread(problem, R, spacing: float) -> float:
    """The problem's own estimate of the angular spread where it has one, else the exponential model's."""
    own = problem.estimate_angular_spread(R)
    return float(own) if own is not None else estimate_angular_spread(R, spacing)


def window_line(rec: dict) -> str:
    """One human line per monitor window record: the angular-spread estimate where the record has one
    (not for detection, whose monitored moment is not the transmit covariance), and on a trigger window
    the changes the problem named for the re-search (its ``research_set``, e.g. the channel model)."""
    shadow = rec.get("shadow_line") or f"{rec['shadow_pct']:.3f}%"
    spread = rec.get("angular_spread_estimate")
    named = (rec.get("trigger") or {}).get("research_set") or []
    return (f"window {rec['window']:>3}: cov shift {rec['covariance_shift']:.3f}  shadow {shadow}  "
            + (f"AS~{spread:.1f} deg  " if spread is not None else "") + f"grad x{rec['grad_norm_ratio']:.1f}"
            + (f"  ALERT {','.join(rec['alerts'])}" if rec["alerts"] else "")
            + (f"  TRIGGER re-search with {' '.join(named)}" if named else ""))


SYNTHETIC_FORMS = ("synthetic:angular_spread=A->B,windows=N[,at=K] or "
                   "synthetic:channel=M1->M2,windows=N[,at=K][,pool_seed=S]")


def parse_synthetic(spec: str) -> dict:
    """A synthetic drift source, one of

    * ``synthetic:angular_spread=15->40,windows=12[,at=3]`` -> {"kind": "angular_spread", "from": 15.0,
      "to": 40.0, "windows": 12, "at": 3}: a linear ramp of the angular spread (degrees) over the windows,
      or with ``at`` a step change at that window;
    * ``synthetic:channel=umi->uma,windows=8[,at=3][,pool_seed=S]`` -> {"kind": "channel", "from": "umi",
      "to": "uma", ...}: the channel model (``problem.channel.model``, the model's own settings otherwise)
      changes at window ``at``, or without it a growing share of each window (0 .. all) comes from the
      second; 3GPP sources draw their users from pool ``pool_seed`` (default: the model's pool_seed + 1,
      users the model was not trained on)."""
    body = spec.split(":", 1)[1] if ":" in spec else ""
    out = {"windows": 10, "at": None, "pool_seed": None}
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key in ("angular_spread", "channel") and "->" in value:
            if "kind" in out:
                raise ConfigError(f"--source {spec!r}: give one of angular_spread=A->B or channel=M1->M2")
            a, b = value.split("->", 1)
            if key == "angular_spread":
                try:
                    out["from"], out["to"] = float(a), float(b)
                except ValueError:
                    raise ConfigError(f"--source {spec!r}: angular_spread=A->B takes degrees (got {value!r})") from None
            else:
                for m in (a, b):
                    if m not in CHANNELS:
                        raise ConfigError(f"--source {spec!r}: unknown channel model {m!r}; allowed: "
                                          f"{', '.join(CHANNELS.names())}")
                out["from"], out["to"] = a, b
            out["kind"] = key
        elif key in ("windows", "at", "pool_seed"):
            try:
                out[key] = int(value)
            except ValueError:
                raise ConfigError(f"--source {spec!r}: {key} must be an integer (got {value!r})") from None
        else:
            raise ConfigError(f"--source {spec!r}: unknown part {part!r}; expected {SYNTHETIC_FORMS}")
    if "kind" not in out:
        raise ConfigError(f"--source {spec!r}: needs angular_spread=A->B (degrees) or channel=M1->M2 (models)")
    if out["windows"] < 1:
        raise ConfigError(f"--source {spec!r}: windows must be >= 1")
    if out["at"] is not None and not 0 <= out["at"] < out["windows"]:
        raise ConfigError(f"--source {spec!r}: at must be a window in 0..{out['windows'] - 1} (got {out['at']})")
    if out["pool_seed"] is not None and out["kind"] != "channel":
        raise ConfigError(f"--source {spec!r}: pool_seed goes with channel=M1->M2 (the 3GPP sources' user pool)")
    return out


def drifting_windows(model, spec: dict, window: int, seed: int = 0) -> Iterator[ChannelBatch]:
    """Windows of channels drifting as ``spec`` (``parse_synthetic``) says. Angular spread: the model's
    own channel model whose spread moves from ``spec["from"]`` to ``spec["to"]`` degrees, linearly over
    ``spec["windows"]`` windows or in one step at window ``spec["at"]``. Channel: ``_channel_windows``."""
    if spec.get("kind", "angular_spread") == "channel":
        yield from _channel_windows(model, spec, window, seed)
        return
    pcfg = model.config.problem
    n = spec["windows"]
    for w in range(n):
        if spec.get("at") is not None:
            a = spec["from"] if w < spec["at"] else spec["to"]
        else:
            a = spec["from"] + (spec["to"] - spec["from"]) * (w / max(n - 1, 1))
        src = model.problem.drift_source(pcfg, a) or \
            build_channel(pcfg.channel.model_copy(update={"model": "correlated_rayleigh", "angular_spread_deg": a,
                                                          "tx_rho": None}))      # the spread sets rho_tx
        yield src.sample(window, generator(seed, "drift", w))


def channel_sources(model, spec: dict) -> Tuple:
    """The two sources of a channel drift: the model's ``problem.channel`` section with ``model`` set to
    ``spec["from"]`` / ``spec["to"]`` and ``pool_seed`` to ``spec["pool_seed"]`` (default the model's + 1).
    Raises ConfigError for a problem whose channel section is not a ``ChannelConfig`` (multi-band)."""
    pcfg = model.config.problem
    ch = getattr(pcfg, "channel", None)
    if not isinstance(ch, ChannelConfig):
        raise ConfigError(f"--source synthetic:channel=...: problem {pcfg.name!r} does not draw its channels from a "
                          "problem.channel model; use synthetic:angular_spread=A->B")
    pool_seed = spec.get("pool_seed")
    pool_seed = ch.pool_seed + 1 if pool_seed is None else pool_seed
    out = []
    for m in (spec["from"], spec["to"]):
        try:
            cfg = ChannelConfig.model_validate({**ch.model_dump(), "model": m, "pool_seed": pool_seed})
        except ValueError as err:
            raise ConfigError(f"--source synthetic:channel={spec['from']}->{spec['to']}: {m}: "
                              f"{str(err).splitlines()[-1].strip()}") from None
        out.append(build_channel(cfg))
    return tuple(out)


def _channel_windows(model, spec: dict, window: int, seed: int) -> Iterator[ChannelBatch]:
    """Window w of ``window`` channels: from the first source before ``spec["at"]``, from the second from
    then on; without ``at``, round(window * w / (windows - 1)) of them from the second (a population that
    moves over), the rest from the first."""
    first, second = channel_sources(model, spec)
    n = spec["windows"]
    for w in range(n):
        g = generator(seed, "drift", w)
        if spec.get("at") is not None:
            yield (first if w < spec["at"] else second).sample(window, g)
            continue
        k = round(window * w / max(n - 1, 1))
        parts = [src.sample(m, g) for src, m in ((first, window - k), (second, k)) if m > 0]
        yield ChannelBatch(torch.cat([b.H for b in parts]), torch.cat([b.noise_var for b in parts]),
                           torch.cat([b.snr_db for b in parts]))

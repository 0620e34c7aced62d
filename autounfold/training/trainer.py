"""Training loop: fresh seeded batches every step, validation on a fixed set, best state kept."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch

from ..algorithms import evaluation_reference
from ..build import build_refine_problem, build_training_problem, operating_range
from ..config import TrainingConfig
from ..curves import crossing_kind, snr_at
from ..errors import ConfigError, TrainingError
from ..seeding import generator
from ..unfolding.layers import revision_mismatch, revision_record
from .losses import layer_weights, per_sample_loss, training_reference


@dataclass
class TrainResult:
    """history: one dict per logged step; best_score: validation score of the returned weights
    (``problem.score``, higher is better: % of the optimum for beamforming, -NMSE dB for LASSO)."""

    history: List[dict] = field(default_factory=list)
    best_score: float = float("-inf")
    best_step: int = -1
    seconds: float = 0.0
    # training.refine: {"params", "start", "end" (scores on its draw), "evaluations", "seconds"}; None without
    refine: Optional[dict] = None


def _optimizer(cfg: TrainingConfig, model, scale: float = 1.0):
    """The optimizer over the model's trainable parameters at ``scale`` times the configured rates;
    with ``training.scalar_lr``, per-layer scalars (steps, thresholds, momenta: parameters of at most
    2 dimensions that are not of kind "matrix") get that rate, and matrices and network weights
    (biases included) ``training.lr``."""
    params = [q for q in model.parameters() if q.requires_grad]
    if cfg.scalar_lr is not None:
        kinds = getattr(model, "kinds", {})
        names = {id(p): name.replace("__", ".") for name, p in model.named_parameters()}

        def scalar(q):
            name = names.get(id(q), "").split("params.", 1)[-1]
            return q.dim() <= 2 and kinds.get(name) != "matrix"
        groups = [{"params": [q for q in params if not scalar(q)], "lr": cfg.lr * scale},
                  {"params": [q for q in params if scalar(q)], "lr": cfg.scalar_lr * scale}]
        params = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr * scale, momentum=0.9)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr * scale)


def _scheduler(cfg: TrainingConfig, opt, total: int):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1), eta_min=cfg.lr * 0.02)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(total // 3, 1), gamma=0.3)
    return None


STAGE_RATES = (1.0, 0.2, 0.02)
"""Stagewise training: the learning-rate scale of the three stages of each layer (Chen et al. 2018)."""


def _phases(cfg: TrainingConfig, K: int):
    """(num_layers, steps, weights, only_layer, lr_scale) per phase.

    sequential: each prefix alone, then end to end. stagewise: for k = 1..K, layer k alone
    (``only_layer`` k-1, earlier layers frozen), then the whole prefix at 0.2 and 0.02 of the rate,
    on the loss of layer k; the steps are split evenly (the last stage takes the remainder; at least
    one step per stage). layerwise: for k = 1..K, layer k alone (earlier layers frozen) on the loss of
    its output, half the steps in all, then all layers end to end for the rest."""
    if cfg.loss == "stagewise" and cfg.steps > 0:
        n = max(cfg.steps // (len(STAGE_RATES) * K), 1)
        phases = [(k, n, layer_weights("end_to_end", k), k - 1 if j == 0 else None, rate)
                  for k in range(1, K + 1) for j, rate in enumerate(STAGE_RATES)]
        last = phases[-1]
        return phases[:-1] + [(K, max(cfg.steps - n * (len(phases) - 1), 1), last[2], None, last[4])]
    if cfg.loss == "layerwise" and cfg.steps > 0 and K > 1:
        per_layer = max(cfg.steps // (2 * K), 1)
        phases = [(k, per_layer, layer_weights("end_to_end", k), k - 1, 1.0) for k in range(1, K + 1)]
        return phases + [(K, max(cfg.steps - per_layer * K, 1), layer_weights("end_to_end", K), None, 1.0)]
    if cfg.loss != "sequential" or K == 1:
        weights = layer_weights("end_to_end" if cfg.loss in ("stagewise", "sequential", "layerwise") else cfg.loss, K)
        return [(K, cfg.steps, weights, None, 1.0)]
    per_layer = max(cfg.steps // (2 * K), 1)
    phases = [(k, per_layer, layer_weights("end_to_end", k), None, 1.0) for k in range(1, K + 1)]
    return phases + [(K, max(cfg.steps - per_layer * K, 0), layer_weights("end_to_end", K), None, 1.0)]


def train(model, cfg: TrainingConfig, seed: int, purpose: str = "train", device="cpu",
          progress: bool = True, on_validation: Optional[Callable[..., None]] = None,
          resume: Optional[dict] = None) -> TrainResult:
    """Train ``model`` in place and leave it holding the best validated weights.

    Batch i of phase p is drawn from ``generator(seed, purpose, p, i)``, from the model's problem or,
    where ``cfg.problem`` changes its sampling keys, from the problem so changed; the validation set
    from ``generator(seed, "validation")`` and the model's problem (shared by every trial of a search
    with the same seed).
    Raises TrainingError on a non-finite loss or gradient; the model then keeps its best weights.

    ``on_validation(entry, snapshot)`` is called after every validation; ``snapshot()`` returns the
    complete training state (tensors and numbers only) which, passed back as ``resume=``, continues
    the run from that step with the same batches, so a resumed run ends where an uninterrupted one does.
    """
    problem = model.problem
    # the training batches' source: the model's problem, or it with ``training.problem``'s changes
    # (another SNR range, channel model...); validation and everything else use the model's problem
    sampler = build_training_problem(model, cfg)
    refine_names = refine_parameters(model, cfg.refine.params) if cfg.refine is not None else None
    refine_problem = build_refine_problem(model, cfg.refine) if cfg.refine is not None else None
    torch.manual_seed(seed)
    model.to(device).train()
    val_inst = problem.sample(cfg.validation_batch, generator(seed, "validation"), device)
    # scored against the ground truth where the instances carry it (LASSO), else the reference
    val_ref = evaluation_reference(problem, val_inst)
    result = TrainResult()
    phases = _phases(cfg, model.num_layers)
    total = sum(p[1] for p in phases)
    best_state = copy.deepcopy(model.state_dict())

    def validate(step: int, loss: float):
        model.eval()
        with torch.no_grad():
            score = problem.score(problem.summarize(model.run(val_inst), val_inst, val_ref))
        model.train()
        entry = {"step": step, "loss": loss, "val_score": score, **{f"{n}_{k}": v for n, vals in
                 model.scalar_parameters().items() for k, v in enumerate(vals)}}
        result.history.append(entry)
        if score > result.best_score:
            result.best_score, result.best_step = score, step
            best_state.update(copy.deepcopy(model.state_dict()))
        if on_validation:
            on_validation(entry, lambda: _snapshot(step, p_idx, i + 1, opt, sched))
        return score

    def _snapshot(step, p_idx, next_i, opt, sched):
        return {"format": 1, "step": step, "phase": p_idx, "next_i": next_i,
                "layer_revision": revision_record(model.layer),
                "model": copy.deepcopy(model.state_dict()), "best_state": copy.deepcopy(best_state),
                "optimizer": copy.deepcopy(opt.state_dict()) if opt is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "best_score": result.best_score, "best_step": result.best_step,
                "history": copy.deepcopy(result.history), "rng": torch.get_rng_state()}

    start = time.perf_counter()
    step, first_phase, first_i = 0, 0, 0
    p_idx, i, opt, sched = 0, -1, None, None
    if resume is not None:
        why = revision_mismatch(model.layer, resume.get("layer_revision"))
        if why:          # a snapshot from before an update-rule change: its weights fit the old rule
            raise ConfigError(f"cannot resume this training: {why}; start it afresh")
        step, first_phase, first_i = resume["step"], resume["phase"], resume["next_i"]
        model.load_state_dict(resume["model"])
        best_state.update(resume["best_state"])
        result.best_score, result.best_step = resume["best_score"], resume["best_step"]
        result.history = list(resume["history"])
        torch.set_rng_state(resume["rng"])
    else:
        validate(0, float("nan"))
    bar = _Progress(total, enabled=progress)
    bar.advance(step)
    try:
        for p_idx, (K, n_steps, weights, only_layer, rate) in enumerate(phases):
            if p_idx < first_phase:
                continue
            opt = _optimizer(cfg, model, rate)
            sched = _scheduler(cfg, opt, n_steps)
            start_i = 0
            if resume is not None and p_idx == first_phase:
                if resume["optimizer"] is not None and first_i > 0:
                    opt.load_state_dict(resume["optimizer"])
                    if sched is not None and resume["scheduler"] is not None:
                        sched.load_state_dict(resume["scheduler"])
                start_i = first_i
            for i in range(start_i, n_steps):
                inst = sampler.sample(cfg.batch_size, generator(seed, purpose, p_idx, i), device)
                ref = training_reference(problem, inst, cfg.target)
                iterates = model.run(inst, return_all=True, num_layers=K)
                loss = sum(w * per_sample_loss(problem, x, inst, cfg.target, ref).mean()
                           for w, x in zip(weights, iterates) if w > 0)
                if not torch.isfinite(loss):
                    raise TrainingError(f"non-finite training loss ({float(loss.detach())}) at step {step} "
                                        f"(phase {p_idx}, lr={cfg.lr}); lower training.lr or the step_init")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if only_layer is not None:
                    model.restrict_grad(only_layer)
                if cfg.grad_clip is not None:
                    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    if not torch.isfinite(norm):
                        raise TrainingError(f"non-finite gradient at step {step} (phase {p_idx})")
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                score = None
                if step % cfg.validate_every == 0 or step == total:
                    score = validate(step, float(loss.detach()))
                bar.update(float(loss.detach()), score)
    finally:
        bar.close()
        model.load_state_dict(best_state)
        model.eval()
        result.seconds = time.perf_counter() - start
    if cfg.refine is not None:
        placed = None
        if cfg.refine.crossing is not None:           # the band where the trained model's metric crosses the target
            placed = refine_band(model, cfg.refine, seed, device)
            refine_problem = build_refine_problem(model, cfg.refine, placed["band"])
            if progress:
                where = "never reached" if placed["kind"] == "never" else (
                    "already below at the low end" if placed["kind"] == "below" else f"crossed at {placed['crossing']:.2f} dB")
                print(f"refine band {placed['key']} [{placed['band'][0]:.2f}, {placed['band'][1]:.2f}] "
                      f"({placed['metric_name']} {cfg.refine.crossing:g} {where})", flush=True)
        result.refine = refine(model, cfg.refine, refine_names, refine_problem, seed, device, progress)
        if placed is not None:
            result.refine["placed"] = placed
            result.refine["seconds"] += placed["seconds"]          # the sweep is part of the refine's time
        # what is reported describes the weights returned: the refined ones, scored on the validation draw
        with torch.no_grad():
            score = problem.score(problem.summarize(model.run(val_inst), val_inst, val_ref))
        result.refine["validation_before"], result.refine["validation_after"] = result.best_score, score
        result.best_score = score
        result.seconds += result.refine["seconds"]
        result.history.append({"step": result.history[-1]["step"] if result.history else 0, "loss": float("nan"),
                               "val_score": score, "refined": True,
                               **{f"{n}_{k}": v for n, vals in model.scalar_parameters().items() for k, v in enumerate(vals)}})
    return result


def refine_parameters(model, names) -> List[str]:
    """The per-layer scalars ``training.refine`` searches: ``names``, or every trainable per-layer
    scalar (a learned value per layer, or one shared); ConfigError names an unknown or non-scalar one."""
    if not hasattr(model, "kinds") or not hasattr(model, "params"):
        raise ConfigError(f"training.refine: searches the per-layer scalars of an unfolded network; "
                          f"{type(model).__name__} has none")
    knotted = getattr(model, "knotted", set())      # (K, knots): an offset moves all knots of a layer together
    scalars = [n for n, kind in model.kinds.items()
               if kind != "fixed" and (model.params[n.replace(".", "__")].dim() == 1 or n in knotted)]
    if not names:
        return scalars
    bad = [n for n in names if n not in scalars]
    if bad:
        raise ConfigError(f"training.refine.params: {', '.join(map(repr, bad))} not among this model's per-layer "
                          f"scalars ({', '.join(scalars) or 'none'}); set training.refine.params to some of those "
                          f"(a preset's list names its own layer's parameters)")
    return list(names)


def refine_band(model, cfg, seed: int, device="cpu") -> dict:
    """Where ``training.refine.crossing`` places the refine draw (``RefineConfig``): the model's metric
    (its problem's ``score_key``: SER, BLER) on a sweep of the problem's range along its ``operating_key``
    at evenly spaced points at most 1 dB apart (the refine's other problem changes applied), ``cfg.batch``
    instances per point, every point from the same stream (``generator(seed, "refine-sweep")``: the same
    channels and noise shapes at each SNR, so the curve falls smoothly), read by ``curves.snr_at`` (a point
    without errors taken as half an error: ``Problem.score_count``); the band ``cfg.width_db`` wide centred
    on the crossing, moved inside the range (all of it where the range is narrower). A metric already below
    the target at the range's low end ("below") centres it there, one that never reaches it ("never") at
    the high end. The model's train / eval mode is left as it was. Returns {"key", "band" [lo, hi],
    "crossing" (dB or None), "kind", "metric_name", "grid", "metric", "seconds"}."""
    start = time.perf_counter()
    lo, hi = operating_range(model)
    key, name = type(model.problem).operating_key, type(model.problem).score_key
    n = max(1, math.ceil(hi - lo - 1e-9))
    grid = [lo + (hi - lo) * i / n for i in range(n + 1)] if hi > lo else [lo]
    was_training = model.training
    model.eval()
    metric, counted = [], 0
    try:
        for snr in grid:
            problem = build_refine_problem(model, cfg, (snr, snr))
            inst = problem.sample(cfg.batch, generator(seed, "refine-sweep"), device)
            counted = problem.score_count(inst)
            with torch.no_grad():
                metric.append(float(problem.summarize(model.run(inst), inst, evaluation_reference(problem, inst))[name]))
    finally:
        model.train(was_training)
    kind = crossing_kind(grid, metric, cfg.crossing)
    crossing = snr_at(grid, metric, cfg.crossing, floor=0.5 / max(counted, 1)) if kind == "crossing" else None
    centre = crossing if crossing is not None else (lo if kind == "below" else hi)
    a = min(max(centre - cfg.width_db / 2, lo), max(hi - cfg.width_db, lo))
    band = [a, min(a + cfg.width_db, hi)]
    return {"key": key, "band": band, "crossing": crossing, "kind": kind, "metric_name": name, "grid": grid,
            "metric": metric, "seconds": time.perf_counter() - start}


def refine(model, cfg, names: List[str], problem, seed: int, device="cpu", progress: bool = False) -> dict:
    """Coordinate search over the per-layer scalars ``names`` (``RefineConfig``): on a draw of
    ``cfg.batch`` instances of ``problem`` (``generator(seed, "refine")``), scored by the model's
    problem's validation metric; for each parameter and layer in turn every offset of the learned
    value is tried and the best kept if it beats the current score (ties keep the value). In place."""
    start = time.perf_counter()
    inst = problem.sample(cfg.batch, generator(seed, "refine"), device)
    ref = evaluation_reference(problem, inst)
    model.eval()

    def score() -> float:
        with torch.no_grad():
            return model.problem.score(problem.summarize(model.run(inst), inst, ref))

    first = best = score()
    evaluations = 1
    for sweep in range(cfg.sweeps):
        for name in names:
            raw = model.params[name.replace(".", "__")]
            for k in range(raw.shape[0]):
                with torch.no_grad():
                    kept = raw[k].clone()
                    trials = []
                    for off in cfg.offsets:
                        raw[k] = kept + off
                        trials.append((score(), off))
                        evaluations += 1
                    trials = [t for t in trials if math.isfinite(t[0])]
                    s, off = max(trials) if trials else (best, 0.0)
                    if s > best:
                        best = s
                        raw[k] = kept + off
                    else:
                        raw[k] = kept
        if progress:
            print(f"refine sweep {sweep + 1}/{cfg.sweeps}: score {best:.6g} (start {first:.6g})", flush=True)
    return {"params": list(names), "start": first, "end": best, "evaluations": evaluations,
            "seconds": time.perf_counter() - start}


class _Progress:
    """A rich progress bar showing the loss and the last validation score; silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total > 0:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("train", total=total, info="")
            self.bar.start()
        self.score = None

    def advance(self, n: int):
        if self.bar is not None and n:
            self.bar.update(self.task, advance=n)

    def update(self, loss: float, score):
        if self.bar is None:
            return
        self.score = score if score is not None else self.score
        info = f"loss {loss:.5f}" + (f"  val {self.score:.4f}" if self.score is not None else "")
        self.bar.update(self.task, advance=1, info=info)

    def close(self):
        if self.bar is not None:
            self.bar.stop()

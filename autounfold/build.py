"""From typed config to objects: the problem (with its channel source) and the unfolded model.

Names resolve through the tables in ``autounfold.plugins``: nothing here knows a problem by name.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import torch

from .config import ExperimentConfig, ModelConfig, dotted_keys, lookup_dotted, range_pair, refine_band_inside
from .errors import ConfigError
from .plugins import ALGORITHMS, LAYERS, PROBLEMS
from .problems.base import Problem, ProblemConfig
from .unfolding import Unfolded
from .unfolding.unfolded import check_conditioning


def build_problem(cfg: ProblemConfig) -> Problem:
    """The registered problem ``cfg.name`` built from its validated config."""
    return PROBLEMS.get(cfg.name).from_config(cfg)


def build_training_problem(model, training) -> Problem:
    """The problem ``model``'s training batches are drawn from under ``training`` (a TrainingConfig):
    ``model.problem`` itself, or, where ``training.problem`` changes sampling keys, the problem of
    ``model.config`` with those changes (``ExperimentConfig.training_problem``). ConfigError for
    changes the problem does not allow, or a model that was not built from an experiment config."""
    return _changed_problem(model, training.problem, "training.problem", "the training batches")


def build_refine_problem(model, refine, band: Optional[Sequence[float]] = None) -> Problem:
    """The problem ``training.refine`` (``refine``, a RefineConfig) draws its scoring set from (as ``build_training_problem``);
    ConfigError when its SNR band lies outside the model's (``config.refine_band_inside``). ``band``
    ([lo, hi] dB): the draw's range along the problem's ``operating_key``, where ``training.refine.crossing``
    placed it (``training.trainer.refine_band``); without it, a config with ``crossing`` is checked only
    (the model must have a problem config to change)."""
    exp = getattr(model, "config", None)
    if isinstance(exp, ExperimentConfig) and refine.problem:
        try:
            refine_band_inside(exp.problem.model_dump(mode="json"), refine.problem)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    changes = refine.problem
    if refine.crossing is not None:
        operating_range(model)                            # the model has an SNR range to sweep
        if band is not None:
            changes = {**dotted_keys(changes), type(model.problem).operating_key: [float(band[0]), float(band[1])]}
    return _changed_problem(model, changes, "training.refine.problem", "the refine draw")


def operating_range(model) -> Tuple[float, float]:
    """(lo, hi) dB of ``model``'s problem along its ``operating_key`` (a single value: lo == hi), read from
    ``model.config``; ConfigError for a problem without one or a model not built from an experiment config."""
    key = type(model.problem).operating_key
    if key is None:
        raise ConfigError(f"training.refine.crossing: {model.problem.name} has no SNR range along which its metric "
                          "falls (Problem.operating_key); place the refine draw with training.refine.problem")
    exp = getattr(model, "config", None)
    if not isinstance(exp, ExperimentConfig):
        raise ConfigError("training.refine.crossing: the model was not built from an experiment config (build_model), "
                          f"so there is no problem.{key} to sweep; build it with build_model")
    pair = range_pair(lookup_dotted(exp.problem.model_dump(mode="json"), key))
    return min(pair), max(pair)


def _changed_problem(model, changes, label: str, what: str) -> Problem:
    if not changes:
        return model.problem
    exp = getattr(model, "config", None)
    if not isinstance(exp, ExperimentConfig):
        raise ConfigError(f"{label}: the model was not built from an experiment config (build_model), so "
                          f"there is no problem section to change; build it with build_model or leave {label} out")
    try:
        cfg = exp.changed_problem(changes, label, what)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        return build_problem(cfg)
    except ConfigError as err:            # a value the schema lets through but the problem refuses
        raise ConfigError(f"{label}: {err}") from None


def build_algorithm(cfg: ModelConfig, problem: Problem):
    """The update rule the layer type unrolls (``model.algorithm: auto``) built from ``model:``."""
    name = LAYERS.get(cfg.layer).algorithm if cfg.algorithm == "auto" else cfg.algorithm
    return ALGORITHMS.get(name).from_model_config(cfg, problem)


def available_memory() -> int:
    """Bytes of memory available to this process (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62


def check_memory(cfg: ExperimentConfig, available: int = None) -> None:
    """ConfigError before anything is allocated when training this experiment cannot fit in memory:
    names the setting that drives the size and how much it would need. Called before training
    (``train``, search trials), not when a trained model is loaded."""
    refine = cfg.training.refine.batch if cfg.training.refine is not None else 0
    batch = max(cfg.training.batch_size, cfg.training.validation_batch, refine)
    need = PROBLEMS.get(cfg.problem.name).memory_estimate(cfg.problem, batch)
    total = sum(need.values())
    have = available_memory() if available is None else available
    if total > have:
        worst = max(need, key=need.get)
        raise ConfigError(f"the experiment needs about {total / 2**30:.1f} GiB of memory, mostly for {worst} "
                          f"(batch {batch}); {have / 2**30:.1f} GiB are available. Lower {worst.split(' x ')[0]} "
                          "or training.batch_size / validation_batch / refine.batch")


TUNE_BATCH = 512


def resolve_tuned_init(cfg: ExperimentConfig, problem: Problem) -> ExperimentConfig:
    """``cfg`` with ``model.step_init: tuned`` replaced by numbers: the constants of the classical
    solver the layer type unrolls (WMMSE's over-relaxation; projected gradient's step, and momentum
    for momentum layers; hybrid PGA's analog and digital steps), tuned at the model's depth on a validation draw of the training seed
    (``generator(seed, "validation")``, at most 512 instances). The network then starts as the best
    classical solver of its depth. Other configs are returned unchanged."""
    m = cfg.model
    if m.step_init != "tuned":
        return cfg
    from .algorithms import evaluation_reference
    from .algorithms.tuning import MOMENTA, tune_pgd, tune_wmmse
    from .seeding import generator
    inst = problem.sample(min(cfg.training.validation_batch, TUNE_BATCH), generator(cfg.seed, "validation"))
    ref = evaluation_reference(problem, inst)
    layer = LAYERS.get(m.layer)
    if layer.algorithm == "wmmse":
        update = {"step_init": tune_wmmse(problem, inst, ref, m.num_layers)[0]}
    elif layer.algorithm == "hybrid_pga":
        from .algorithms.tuning import HYBRID_INIT_STEPS, HYBRID_MOMENTA, tune_hybrid_pga
        algo = build_algorithm(m, problem)
        if m.digital_step_init is not None:
            raise ConfigError("model.digital_step_init: step_init 'tuned' sets it (to the tuned classical digital "
                              "step); leave it out, or give both steps as numbers")
        learns_momentum = "momentum" in layer.params(problem, m.num_layers, [1.0] * m.num_layers, 0.0, None)
        best, _ = tune_hybrid_pga(problem, inst, ref, m.num_layers, steps=HYBRID_INIT_STEPS, normalize=algo.normalize,
                                  momenta=HYBRID_MOMENTA if learns_momentum else (0.0,), reach=1,
                                  safeguard=algo.safeguard)
        if best is None:
            raise ConfigError(f"model.step_init 'tuned': no step pair of the grid gives a finite result for {m.layer!r}")
        update = {"step_init": best["step_analog"], "digital_step_init": best["step_digital"],
                  "momentum_init": best["momentum"]}
    else:
        algo = build_algorithm(m, problem)
        momenta = MOMENTA if m.layer == "momentum" else (0.0,)
        best, _ = tune_pgd(problem, inst, ref, m.num_layers, momenta=momenta, normalize=algo.normalize,
                           extrapolation=algo.extrapolation)
        if best is None:
            raise ConfigError(f"model.step_init 'tuned': no step of the grid gives a finite result for {m.layer!r}")
        update = {"step_init": best["step"], "momentum_init": best["momentum"]}
    return cfg.model_copy(update={"model": m.model_copy(update=update)})


def _training_problem_config(cfg: ExperimentConfig) -> ProblemConfig:
    """``cfg.training_problem()``, or ``cfg.problem`` where training.problem changes nothing (ConfigError
    for a change it does not allow)."""
    try:
        return cfg.training_problem() or cfg.problem
    except ValueError as err:
        raise ConfigError(str(err)) from None


def resolve_snr_knots(cfg: ExperimentConfig, problem: Problem) -> ExperimentConfig:
    """``cfg`` with an integer ``model.snr_knots`` n >= 2 replaced by n SNRs (dB) spread evenly over the
    SNR range the training batches are drawn from (``problem.channel.snr_db``, as ``training.problem``
    changes it), so a saved or moved model keeps the knots it was trained with. ConfigError where the
    problem has no SNR range or the range is a single SNR."""
    n = cfg.model.snr_knots
    if n:                                           # a problem that cannot take knots says so first
        check_conditioning(problem, build_algorithm(cfg.model, problem))
    if not isinstance(n, int) or n == 0:
        return cfg
    rng = getattr(getattr(_training_problem_config(cfg), "channel", None), "snr_db", None)
    if rng is None:
        raise ConfigError(f"model.snr_knots: {cfg.problem.name} has no channel SNR range to spread {n} knots over; "
                          "give the knots as a list of SNRs in dB, or set model.snr_knots to 0")
    lo, hi = float(rng[0]), float(rng[1])
    if hi <= lo:
        raise ConfigError(f"model.snr_knots: the training SNR range is the single SNR {lo:g} dB; knots need a range "
                          "(problem.channel.snr_db: [low, high]) or an explicit list")
    knots = [round(lo + (hi - lo) * i / (n - 1), 6) for i in range(n)]
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"snr_knots": knots})})


COND_DRAW = 512
COND_QUANTILES = (0.01, 0.99)


def resolve_cond_knots(cfg: ExperimentConfig, problem: Problem) -> ExperimentConfig:
    """``cfg`` with an integer ``model.cond_knots`` n >= 2 replaced by n values of the channel's
    conditioning (``problem.log_condition``), spread evenly between its 1st and 99th percentiles on a draw of 512 training
    channels (``generator(seed, "cond_knots")``, the training batches' problem), so that a saved or moved
    model keeps them. ConfigError where the problem has no ``log_condition``."""
    n = cfg.model.cond_knots
    if n:
        check_conditioning(problem, build_algorithm(cfg.model, problem), "cond_knots")
    if not isinstance(n, int) or n == 0:
        return cfg
    from .seeding import generator
    pc = _training_problem_config(cfg)
    train_problem = problem if pc is cfg.problem else build_problem(pc)
    c = train_problem.log_condition(train_problem.sample(COND_DRAW, generator(cfg.seed, "cond_knots")))
    lo, hi = (float(torch.quantile(c.double(), q)) for q in COND_QUANTILES)
    if not hi > lo:
        raise ConfigError(f"model.cond_knots: the training channels' conditioning does not vary (log10 {lo:.3g}); "
                          "give the knots as a list, or set model.cond_knots to 0")
    knots = [round(lo + (hi - lo) * i / (n - 1), 4) for i in range(n)]
    if len(set(knots)) < n:
        raise ConfigError(f"model.cond_knots: the training channels' conditioning varies too little for {n} "
                          f"knots (log10 {lo:.4g} to {hi:.4g}); use fewer, give a list, or set model.cond_knots to 0")
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"cond_knots": knots})})


def build_model(cfg: ExperimentConfig, problem: Problem = None) -> Unfolded:
    """The unfolded network of ``cfg`` (``model.config`` is ``cfg`` with a tuned start and the SNR and
    condition-number knots resolved)."""
    if problem is None:
        problem = build_problem(cfg.problem)
    cfg = resolve_cond_knots(resolve_snr_knots(resolve_tuned_init(cfg, problem), problem), problem)
    m = cfg.model
    model = Unfolded(problem, build_algorithm(m, problem), m.num_layers, m.layer, tied=m.tied,
                     step_init=m.step_init, momentum_init=m.momentum_init, digital_step_init=m.digital_step_init,
                     support=m.support, snr_knots=m.snr_knots or None, cond_knots=m.cond_knots or None)
    model.config = cfg
    return model

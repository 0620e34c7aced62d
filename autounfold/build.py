"""From typed config to objects: the problem (with its channel source) and the unfolded model.

Names resolve through the tables in ``autounfold.plugins``: nothing here knows a problem by name.
"""
from __future__ import annotations

import os

from .config import ExperimentConfig, ModelConfig
from .errors import ConfigError
from .plugins import ALGORITHMS, LAYERS, PROBLEMS
from .problems.base import Problem, ProblemConfig
from .unfolding import Unfolded


def build_problem(cfg: ProblemConfig) -> Problem:
    """The registered problem ``cfg.name`` built from its validated config."""
    return PROBLEMS.get(cfg.name).from_config(cfg)


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
    batch = max(cfg.training.batch_size, cfg.training.validation_batch)
    need = PROBLEMS.get(cfg.problem.name).memory_estimate(cfg.problem, batch)
    total = sum(need.values())
    have = available_memory() if available is None else available
    if total > have:
        worst = max(need, key=need.get)
        raise ConfigError(f"the experiment needs about {total / 2**30:.1f} GiB of memory, mostly for {worst} "
                          f"(batch {batch}); {have / 2**30:.1f} GiB are available. Lower {worst.split(' x ')[0]} "
                          "or training.batch_size / validation_batch")


def build_model(cfg: ExperimentConfig, problem: Problem = None) -> Unfolded:
    if problem is None:
        problem = build_problem(cfg.problem)
    m = cfg.model
    model = Unfolded(problem, build_algorithm(m, problem), m.num_layers, m.layer, tied=m.tied,
                     step_init=m.step_init, momentum_init=m.momentum_init)
    model.config = cfg
    return model

"""From typed config to objects: the problem (with its channel source) and the unfolded model.

Names resolve through the tables in ``autounfold.plugins``: nothing here knows a problem by name.
"""
from __future__ import annotations

from .algorithms import ProximalGradient
from .config import ExperimentConfig, ModelConfig
from .plugins import PROBLEMS
from .problems.base import Problem, ProblemConfig
from .unfolding import Unfolded


def build_problem(cfg: ProblemConfig) -> Problem:
    """The registered problem ``cfg.name`` built from its validated config."""
    return PROBLEMS.get(cfg.name).from_config(cfg)


def build_algorithm(cfg: ModelConfig, problem: Problem) -> ProximalGradient:
    scaling = {"auto": problem.default_scaling, "none": None}.get(cfg.gradient_scaling, cfg.gradient_scaling)
    return ProximalGradient(extrapolation=cfg.extrapolation, normalize=scaling)


def build_model(cfg: ExperimentConfig, problem: Problem = None) -> Unfolded:
    problem = problem if problem is not None else build_problem(cfg.problem)
    m = cfg.model
    model = Unfolded(problem, build_algorithm(m, problem), m.num_layers, m.layer, tied=m.tied,
                     step_init=m.step_init, momentum_init=m.momentum_init)
    model.config = cfg
    return model

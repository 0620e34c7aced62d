"""From typed config to objects: problem (with its channel source) and unfolded model."""
from __future__ import annotations

from .algorithms import ProximalGradient
from .config import BeamformingConfig, ChannelConfig, ExperimentConfig, LassoConfig, ModelConfig
from .plugins import CHANNELS, PROBLEMS
from .unfolding import Unfolded


def build_channel(cfg: ChannelConfig):
    cls = CHANNELS.get(cfg.model)
    kwargs = dict(n_tx=cfg.n_tx, n_rx=cfg.n_rx, snr_db=tuple(cfg.snr_db), power=cfg.power)
    if cfg.model == "correlated_rayleigh":
        kwargs.update(angular_spread_deg=cfg.angular_spread_deg, antenna_spacing=cfg.antenna_spacing, rx_rho=cfg.rx_rho)
    return cls(**kwargs)


def build_problem(cfg: "BeamformingConfig | LassoConfig"):
    cls = PROBLEMS.get(cfg.name)
    if cfg.name == "beamforming":
        return cls(build_channel(cfg.channel), n_streams=cfg.n_streams, constraint=cfg.constraint, init=cfg.init)
    return cls(n=cfg.n, m=cfg.m, sparsity=cfg.sparsity, snr_db=cfg.snr_db, lam=cfg.lam, matrix_seed=cfg.matrix_seed)


def build_algorithm(cfg: ModelConfig, problem) -> ProximalGradient:
    scaling = {"auto": problem.default_scaling, "none": None}.get(cfg.gradient_scaling, cfg.gradient_scaling)
    return ProximalGradient(extrapolation=cfg.extrapolation, normalize=scaling)


def build_model(cfg: ExperimentConfig, problem=None) -> Unfolded:
    problem = problem if problem is not None else build_problem(cfg.problem)
    m = cfg.model
    model = Unfolded(problem, build_algorithm(m, problem), m.num_layers, m.layer, tied=m.tied,
                     step_init=m.step_init, momentum_init=m.momentum_init)
    model.config = cfg
    return model

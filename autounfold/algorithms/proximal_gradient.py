"""Projected / proximal gradient: the one update rule behind PGD, power iteration, ISTA and FISTA.

The same ``ProximalGradient.step`` is called by the classical solver (fixed hyperparameters, T
iterations) and by the unfolded network (K layers, learned per-layer parameters).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import Problem, batch_scalar, rmul


@dataclass
class State:
    """x: current iterate; x_prev: previous iterate (momentum / extrapolation)."""

    x: torch.Tensor
    x_prev: torch.Tensor


@ALGORITHMS.register
class ProximalGradient:
    """x_{k+1} = prox( y_k + alpha_k T_k d(y_k) [+ beta_k (x_k - x_{k-1})] ),  d = sense * grad / L_hat.

    Args:
        extrapolation: "heavy_ball" (momentum added after the gradient step, y_k = x_k) or
            "nesterov" (y_k = x_k + beta_k (x_k - x_{k-1}), gradient taken at y_k: FISTA).
        normalize: None, or a curvature scaling the problem knows (``problem.scalings``; beamforming
            "rayleigh" / "trace", lasso "lipschitz"): the gradient is divided by
            ``problem.curvature(x, inst, normalize)``, so that alpha = 1 is the classical 1/L step.

    Per-iteration parameters (``step`` below), each a scalar or a (B,) tensor:
        step (alpha, required), momentum (beta, default 0), threshold (prox threshold; default
        ``problem.threshold(effective step)`` where the problem has one), transform (a matrix T
        applied to the gradient, the "hybrid" layer), operator (problem matrices replaced by
        learned ones, LISTA) and support (the share of entries that bypass the threshold, LISTA-CPSS
        and ALISTA's support selection; passed to ``problem.prox`` only when given). For real
        iterates, two small per-entry networks ({"w1", "b1", "w2", "b2"}, see ``entrywise_mlp``):
        correction (a learned correction term: z += MLP(x_i, alpha d_i), the survey's third
        paradigm) and proxnet (a learned prox: x = prox(z) + t MLP(z_i / t), t the threshold, the
        fourth); both start at zero output, i.e. as the plain step.
    """

    name = "pgd"
    parameters = ("step", "momentum", "threshold", "transform", "operator", "support", "correction", "proxnet")
    per_sample = True                               # step, momentum (and threshold) may be (B,) tensors
    problems = None                                 # every problem (it needs a gradient and a prox)

    def __init__(self, extrapolation: str = "heavy_ball", normalize: Optional[str] = None):
        if extrapolation not in ("heavy_ball", "nesterov"):
            raise ConfigError(f"pgd: extrapolation must be 'heavy_ball' or 'nesterov' (got {extrapolation!r})")
        if normalize is not None and not isinstance(normalize, str):
            raise ConfigError(f"pgd: normalize must be None or a scaling name (got {normalize!r})")
        self.extrapolation, self.normalize = extrapolation, normalize

    @classmethod
    def from_model_config(cls, cfg, problem) -> "ProximalGradient":
        """From ``model:`` (extrapolation, gradient_scaling: auto = the problem's default, none)."""
        scaling = {"auto": problem.default_scaling, "none": None}.get(cfg.gradient_scaling, cfg.gradient_scaling)
        return cls(extrapolation=cfg.extrapolation, normalize=scaling)

    @classmethod
    def for_reference(cls, decl) -> "ProximalGradient":
        """From a problem's ``ReferenceSolver`` declaration."""
        return cls(extrapolation=decl.extrapolation, normalize=decl.normalize)

    def init_state(self, x0: torch.Tensor) -> State:
        return State(x0, x0)

    def step(self, problem: Problem, inst, state: State, params: dict) -> State:
        x, x_prev = state.x, state.x_prev
        beta = params.get("momentum")
        moving = beta is not None and not (isinstance(beta, (int, float)) and beta == 0)
        y = x + rmul(x - x_prev, batch_scalar(beta, x)) if moving and self.extrapolation == "nesterov" else x
        d, curvature = problem.scaled_direction(y, inst, self.normalize, params.get("operator"))
        alpha = batch_scalar(params["step"], y)
        if curvature is not None:
            alpha = alpha / batch_scalar(curvature, y)
        transform = params.get("transform")
        if transform is not None:
            d = transform @ d
        z = y + rmul(d, alpha)
        if params.get("correction") is not None:
            z = z + entrywise_mlp(params["correction"], torch.stack([y, alpha * d], -1))
        if moving and self.extrapolation == "heavy_ball":
            z = z + rmul(x - x_prev, batch_scalar(beta, x))
        threshold = params.get("threshold")
        if threshold is None and hasattr(problem, "threshold"):
            threshold = problem.threshold(alpha)
        support = params.get("support")
        x_new = problem.prox(z, inst, threshold) if support is None else problem.prox(z, inst, threshold, support=support)
        if params.get("proxnet") is not None:
            t = batch_scalar(threshold, z)
            x_new = x_new + t * entrywise_mlp(params["proxnet"], (z / t).unsqueeze(-1))
        return State(x_new, x)


def entrywise_mlp(net: dict, features: torch.Tensor) -> torch.Tensor:
    """One hidden ReLU layer applied to every entry alike: features (B, N, F) real -> (B, N), with
    net {"w1": (H, F), "b1": (H,), "w2": (1, H), "b2": (1,)}. Shared over entries, so it is
    permutation-equivariant and works at any N."""
    h = torch.relu(features @ net["w1"].T + net["b1"])
    return (h @ net["w2"].T + net["b2"]).squeeze(-1)


def fista_momentum(k: int) -> float:
    """FISTA's beta_k = (t_k - 1) / t_{k+1}, t_1 = 1, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2 (k from 0)."""
    t = 1.0
    for _ in range(k):
        t = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
    t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
    return (t - 1.0) / t_next


SCHEDULES = {"fista": fista_momentum}
"""Per-iteration schedules a parameter can name in a declaration (``ReferenceSolver.params``)."""

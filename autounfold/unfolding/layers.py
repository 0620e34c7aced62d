"""Layer types: which per-layer parameters an unfolded network learns, and how they are stored.

Each layer type maps parameter names of the update rule to a ``LearnedParam``; the unfolded
network stores a (K, *shape) tensor per parameter (or (1, *shape) when tied across layers).

| layer      | paradigm (survey)              | learned per layer                                   |
|------------|--------------------------------|-----------------------------------------------------|
| step       | learned hyperparameters        | step alpha_k = exp(a_k) > 0                          |
| signed     | learned hyperparameters        | step alpha_k of either sign                          |
| momentum   | learned hyperparameters        | step alpha_k > 0 and momentum beta_k                 |
| hybrid     | learned objective parameters   | step alpha_k > 0 and a matrix T_k applied to the gradient (init identity) |
| ista       | learned hyperparameters        | step alpha_k > 0 and threshold theta_k > 0 (ALISTA-style, analytic W = A^T) |
| lista      | learned objective parameters   | Q_k (N, N), S_k (N, M), theta_k: x <- soft(x - (Q_k x - S_k y)/L)       |
| lista_cp   | learned objective parameters   | S_k (N, M) coupled with A, theta_k: x <- soft(x - S_k (A x - y)/L)     |
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from ..errors import ConfigError


@dataclass
class LearnedParam:
    """kind: "positive" (stored as log), "signed" or "matrix"; init: per-layer values or a matrix."""

    kind: str
    init: object


def chebyshev_steps(num_layers: int, edge: float) -> list:
    """Signed steps whose update polynomial prod_k (1 + alpha_k lambda) has its roots at the
    Chebyshev nodes of [0, edge]: it damps eigen-directions below ``edge`` (of the normalised
    Gram matrix) and amplifies the principal one, the classical acceleration of power iteration."""
    nodes = [edge * (1 + math.cos((2 * k + 1) * math.pi / (2 * num_layers))) / 2 for k in range(num_layers)]
    return [-1.0 / n for n in nodes]


def _per_layer(value, num_layers: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ConfigError(f"{name}: got {len(value)} per-layer values for {num_layers} layers")
        return [float(v) for v in value]
    return [float(value)] * num_layers


def layer_params(layer: str, problem, num_layers: int, step_init, momentum_init=0.0,
                 scaling: Optional[str] = None) -> Dict[str, LearnedParam]:
    """The learned parameters of ``layer`` for ``problem``; ``step_init`` is a scalar, a list of
    one value per layer, or "chebyshev" (signed layers with a normalised gradient)."""
    if step_init == "chebyshev":
        if layer != "signed" or not hasattr(problem, "spectrum_edge") or scaling is None:
            raise ConfigError("step_init 'chebyshev' needs layer 'signed', a scaled gradient and a problem with a "
                              f"spectrum_edge (got layer {layer!r}, scaling {scaling!r} on {problem.name!r})")
        steps = chebyshev_steps(num_layers, problem.spectrum_edge(scaling))
    else:
        steps = _per_layer(step_init, num_layers, "step_init")
    positive = layer in ("step", "momentum", "hybrid", "ista")
    if positive and min(steps) <= 0:
        raise ConfigError(f"layer {layer!r} learns a positive step: step_init must be > 0 (got {step_init})")
    if layer == "step":
        return {"step": LearnedParam("positive", steps)}
    if layer == "signed":
        return {"step": LearnedParam("signed", steps)}
    if layer == "momentum":
        return {"step": LearnedParam("positive", steps),
                "momentum": LearnedParam("signed", _per_layer(momentum_init, num_layers, "momentum_init"))}
    if layer == "hybrid":
        n = problem.n_tx if hasattr(problem, "n_tx") else problem.n
        dtype = torch.complex64 if problem.name == "beamforming" else torch.float32
        return {"step": LearnedParam("positive", steps), "transform": LearnedParam("matrix", torch.eye(n, dtype=dtype))}
    if layer in ("ista", "lista", "lista_cp"):
        if problem.name != "lasso":
            raise ConfigError(f"layer {layer!r} is for the lasso problem (got {problem.name!r})")
        theta = [problem.lam / problem.lipschitz * s for s in steps]
        out = {"threshold": LearnedParam("positive", theta)}
        if layer == "ista":
            out["step"] = LearnedParam("positive", steps)
        elif layer == "lista":
            out["operator.gram"] = LearnedParam("matrix", problem.A.T @ problem.A)
            out["operator.backproj"] = LearnedParam("matrix", problem.A.T.clone())
        else:
            out["operator.backproj"] = LearnedParam("matrix", problem.A.T.clone())
        return out
    raise ConfigError(f"unknown layer type {layer!r}; allowed: {', '.join(LAYER_TYPES)}")


LAYER_TYPES = ("step", "signed", "momentum", "hybrid", "ista", "lista", "lista_cp")

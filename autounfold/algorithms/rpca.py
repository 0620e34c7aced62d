"""The alternating robust-PCA update of the survey's eqs. (25)-(27), for the classical solver and for
the four unfolded variants of its comparative study.

One iteration from (L, R, Y), with the solver's Psi (``problem.operators``: the true one, or the
mismatched Psi_hat of case (b)) and P = Psi^-1:

    Y <- soft_zeta( P (X - L R^T) )                                           (25)
    S  = Psi Y                            [paradigm 4: S + CNN_k(X, L R^T, S, residual)]
    E  = L R^T + S - X
    L <- L - eta_L (E R) (R^T R)^-1                                            (26)
    R <- R - eta_R (E^T L) (L_new^T L_new)^-1                                  (27)
                                          [paradigm 3: + C R (R^T R)^-1, + C^T L (L^T L)^-1,
                                           C = CNN_k(X, L R^T, S, E) a learned correction]

Per-iteration parameters: ``step_L``, ``step_R``, ``threshold`` (paradigm 1: learned hyperparameters);
``operator`` {"psi", "psi_inv"} replacing the solver's Psi and Psi^-1 (paradigm 2: learned objective
parameters); ``correction`` {"w1", "b1", "w2", "b2"} (paradigm 3); ``psinet`` {...} (paradigm 4:
a network in place of the transform Psi, started from it). The networks are two 3x3 convolutions
over the 4 channels (X, L R^T, S, E) with a ReLU between; their last layer starts at zero, so every
variant starts as the classical iteration.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..plugins import ALGORITHMS
from ..problems.base import batch_scalar
from ..problems.rpca import soft
from .proximal_gradient import State


def _precondition(G: torch.Tensor, F_: torch.Tensor) -> torch.Tensor:
    """G (F^T F)^-1 for G (B, n, r), F (B, m, r); a 1e-6 relative ridge keeps it defined."""
    gram = F_.transpose(1, 2) @ F_
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    ridge = 1e-6 * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12).view(-1, 1, 1)
    return torch.linalg.solve(gram + ridge * eye, G.transpose(1, 2)).transpose(1, 2)


def cnn(net: dict, channels) -> torch.Tensor:
    """Two 3x3 convolutions with a ReLU between: (B, 4, n1, n2) channels -> (B, n1, n2)."""
    z = torch.stack(channels, 1)
    h = F.relu(F.conv2d(z, net["w1"], net["b1"], padding=1))
    return F.conv2d(h, net["w2"], net["b2"], padding=1).squeeze(1)


@ALGORITHMS.register
class RPCAStep:
    """Eqs. (25)-(27) with the paradigm hooks of the module docstring."""

    name = "rpca"
    parameters = ("step_L", "step_R", "threshold", "operator", "correction", "psinet")
    problems = ("rpca",)

    def __init__(self, normalize: Optional[str] = None):
        self.normalize = normalize
        self.extrapolation = "none"

    @classmethod
    def from_model_config(cls, cfg, problem) -> "RPCAStep":
        return cls()

    @classmethod
    def for_reference(cls, decl) -> "RPCAStep":
        return cls()

    def init_state(self, x0: torch.Tensor) -> State:
        return State(x0, x0)

    def step(self, problem, inst, state: State, params: dict) -> State:
        L, R, _ = problem.unpack(state.x, inst)
        X = inst.X
        Psi, P = problem.operators(X)
        op = params.get("operator") or {}
        Psi, P = op.get("psi", Psi), op.get("psi_inv", P)
        V = L @ R.transpose(1, 2)
        Y = soft(P @ (X - V), params["threshold"])                                   # (25)
        S = Psi @ Y
        if params.get("psinet") is not None:
            S = S + cnn(params["psinet"], [X, V, S, X - V - S])
        E = V + S - X
        eta_L, eta_R = batch_scalar(params["step_L"], L), batch_scalar(params["step_R"], R)
        L_new = L - eta_L * _precondition(E @ R, R)                                    # (26)
        R_new = R - eta_R * _precondition(E.transpose(1, 2) @ L, L_new)                # (27)
        if params.get("correction") is not None:
            C = cnn(params["correction"], [X, V, S, E])
            L_new = L_new + _precondition(C @ R, R)
            R_new = R_new + _precondition(C.transpose(1, 2) @ L, L_new)
        return State(problem.pack(L_new, R_new, Y), state.x)


__all__ = ["RPCAStep", "cnn"]

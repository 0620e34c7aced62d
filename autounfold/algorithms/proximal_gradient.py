"""Projected / proximal gradient: the one update rule behind PGD, power iteration, ISTA and FISTA.

The same ``ProximalGradient.step`` is called by the classical solver (fixed hyperparameters, T
iterations) and by the unfolded network (K layers, learned per-layer parameters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import Problem, batch_scalar, re_dot, rmul


@dataclass
class State:
    """x: current iterate; x_prev: previous iterate (momentum / extrapolation)."""

    x: torch.Tensor
    x_prev: torch.Tensor


@dataclass
class RowSpaceState:
    """An iterate V = H^H X of a problem whose gradients all lie in the row space of H (the problem has
    ``row_space_start`` and ``row_space_coefficients``: MU-MISO), kept as K x K matrices.

    X, X_prev: (B, K, K) complex, the iterate and the one before it (V = H^H X); Z, Z_prev: (B, K, K) = G X
    and G X_prev, the received signals H V; norm2: (B,) ||V||_F^2 = Re <X, Z>; G: (B, K, K) = H H^H;
    ``problem`` and ``inst`` (its H) for the readout. ``x`` / ``x_prev`` read the precoders out (one n_tx x K
    product, then the problem's projection, which only rounding can make act: X is inside the power
    set up to it)."""

    X: torch.Tensor
    X_prev: torch.Tensor
    Z: torch.Tensor
    Z_prev: torch.Tensor
    norm2: torch.Tensor
    G: torch.Tensor
    problem: object
    inst: object

    @property
    def x(self) -> torch.Tensor:
        return self.problem.prox(self.inst.H.mH @ self.X, self.inst)

    @property
    def x_prev(self) -> torch.Tensor:
        return self.problem.prox(self.inst.H.mH @ self.X_prev, self.inst)


def _rv(z: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(z.resolve_conj())


ROW_SPACE_PARAMS = frozenset({"step", "momentum"})
"""The parameters the row-space path takes; a layer with any other (transform, correction, ...) runs the
general step from the precoders the row-space state reads out."""


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

    def start(self, problem: Problem, inst) -> Optional[RowSpaceState]:
        """The row-space start where the problem offers one (``row_space_start``: MU-MISO), under a
        total-power projection and the gradient scalings None or ``norm`` (||grad||_F / ||V||_F); None
        otherwise (the caller then starts from ``init_state(problem.init(inst))``).

        Every sum-rate gradient is H^H C with C a K x K matrix, so from a start V_0 = H^H X_0 every
        iterate is V = H^H X. The state carries X and the received signals Z = G X (G = H H^H); a step
        forms C from Z and one K x K product W = G C, which gives both ||grad||_F^2 = Re <C, W> and the
        step's change of Z (Z_new = Z + alpha W (+ momentum)); ||V_new||_F^2 = Re <X_new, Z_new>. That is
        one K x K product instead of the n_tx x K products H V and H^H (A o Z), and every elementwise
        operation on K x K instead of n_tx x K matrices; the precoder H^H X is formed only when read. The
        same iterates as the general step up to float32 rounding (tested)."""
        rows = getattr(problem, "row_space_start", None)
        if rows is None or getattr(problem, "constraint", None) != "total" or self.normalize not in (None, "norm"):
            return None
        if torch.is_grad_enabled() and (inst.H.requires_grad or inst.noise_var.requires_grad):
            return None                  # gradients reach the channel through the general step's products
        G, X, Z = rows(inst)
        n = re_dot(X, Z)
        s = (float(problem.power) / n.clamp_min(1e-30)).sqrt()          # full power, as ``problem.init``
        X, Z = rmul(X, s.view(-1, 1, 1)), rmul(Z, s.view(-1, 1, 1))
        return RowSpaceState(X, X, Z, Z, n * s * s, G, problem, inst)

    def _row_step(self, problem, inst, state: RowSpaceState, params: dict, moving: bool) -> RowSpaceState:
        """``step`` on the row-space state (see ``start``). The same arithmetic as the general step, fused
        on the real views: at K x K every elementwise operation costs about as much as its work."""
        X, Z, n, G = state.X, state.Z, state.norm2, state.G
        B = X.shape[0]
        one = X.new_ones((), dtype=n.dtype)
        if moving:
            b = batch_scalar(params["momentum"], n).expand(B).view(B, 1, 1, 1)
        if moving and self.extrapolation == "nesterov":
            # y = x + b (x - x_prev) = (1 + b) x - b x_prev, its image alike
            X = torch.view_as_complex(torch.addcmul(_rv(X) * (one + b), _rv(state.X_prev), b, value=-1.0))
            Z = torch.view_as_complex(torch.addcmul(_rv(Z) * (one + b), _rv(state.Z_prev), b, value=-1.0))
            n = re_dot(X, Z)
        C = problem.row_space_coefficients(Z, inst)
        W = G @ C                                                       # H grad
        alpha = batch_scalar(params["step"], n)
        if self.normalize is not None:                                  # / (||grad|| / ||V||), each kept >= 1e-30
            alpha = alpha * n.clamp_min(0.0).sqrt().clamp_min(1e-30) / re_dot(C, W).clamp_min(0.0).sqrt().clamp_min(1e-30)
        a4 = alpha.expand(B).view(B, 1, 1, 1)
        # Z is updated with the step rather than recomputed as G X_new: X carries the start's
        # (G + load I)^{-1}, large where G is ill-conditioned, and G X would lose cond(G) times its rounding
        if moving and self.extrapolation == "heavy_ball":
            Xr = torch.addcmul(torch.addcmul(_rv(X) * (one + b), _rv(state.X_prev), b, value=-1.0), _rv(C), a4)
            Zr = torch.addcmul(torch.addcmul(_rv(Z) * (one + b), _rv(state.Z_prev), b, value=-1.0), _rv(W), a4)
        else:
            Xr, Zr = torch.addcmul(_rv(X), _rv(C), a4), torch.addcmul(_rv(Z), _rv(W), a4)
        n_new = torch.linalg.vecdot(Xr.reshape(B, -1), Zr.reshape(B, -1))     # ||V_new||^2 = Re <X, G X>
        s = (math.sqrt(problem.power) / n_new.clamp_min(0.0).sqrt().clamp_min(1e-30)).clamp(max=1.0)   # onto ||V||^2 <= P
        s4 = s.view(B, 1, 1, 1)
        return RowSpaceState(torch.view_as_complex(Xr * s4), state.X, torch.view_as_complex(Zr * s4), state.Z,
                             n_new * s * s, G, problem, inst)

    def step(self, problem: Problem, inst, state: State, params: dict) -> State:
        beta = params.get("momentum")
        moving = beta is not None and not (isinstance(beta, (int, float)) and beta == 0)
        if isinstance(state, RowSpaceState):
            if all(k in ROW_SPACE_PARAMS or v is None for k, v in params.items()):
                return self._row_step(problem, inst, state, params, moving)
            state = State(state.x, state.x_prev)
        x, x_prev = state.x, state.x_prev
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

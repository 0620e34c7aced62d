"""Projected gradient ascent for wideband hybrid precoding (the survey's eq. 12): the update rule of
the classical solver (fixed steps, T iterations) and of unfolded PGA (learned per-layer steps).

One iteration, from W_a (B, M, L) and W_d (B, NB, L, N):

    W_a <- Pi_a( W_a + mu_a  d_a(W_a, W_d)      [+ beta (W_a - W_a_prev)] )     (12a)
    W_d <- Pi_d( W_d + mu_d  d_d(W_a_new, W_d)  [+ beta (W_d - W_d_prev)] )     (12b, with the new W_a)

Pi_a: unit modulus entrywise; Pi_d: each band to power P. The digital step is taken in whitened
coordinates X_b = R W_d,b (thin QR W_a = Q R), i.e. along (W_a^H W_a)^{-1} dR/dW_d,b: there the power
set is a sphere and scaling onto it is the metric projection. With the plain gradient and that
scaling (the survey's literal eq. 12b) a step is not an ascent step at a constrained point whenever
W_a^H W_a is not a multiple of I: from the best digital precoder for W_a, a plain (norm-scaled)
digital step of 1e-3 lowers the rate on every channel, the whitened one does not
(``tests/test_hybrid.py::test_small_pga_steps_ascend_from_the_best_digital_precoder``). d = the rate gradient, divided with the
``norm`` scaling by ||grad||_F / ||W||_F (per sample for the analog block, per sample and band for
the digital one), so a step mu moves a block by mu ||W||_F whatever the SNR, the antenna count or the
number of bands: the learned steps are then free of every dimension. ``none`` uses the raw gradient
(the survey's form, whose good steps scale with the SNR).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import norm_ratio
from ..problems.hybrid import project_analog, project_stacked
from .proximal_gradient import State
from .wmmse import project_power, receivers, transmit


def _band_steps(value, like: torch.Tensor) -> torch.Tensor:
    """A digital step: a python scalar, a 0-d tensor or one value per band (NB,), shaped to broadcast
    against the (B, L, NB, N) blocks."""
    t = torch.as_tensor(value, dtype=like.real.dtype, device=like.device)
    return t.view(1, 1, -1, 1) if t.dim() == 1 else t


def _moving(beta) -> bool:
    return beta is not None and not (isinstance(beta, (int, float)) and beta == 0)


@dataclass
class GuardedState:
    """The state of safeguarded hybrid PGA. x: (B, D) the best iterate so far per sample (the output);
    path, path_prev: (B, D) the iteration's own current and previous iterate; f_best: (B,) the
    objective of x (None until the first step computes it)."""

    x: torch.Tensor
    path: torch.Tensor
    path_prev: torch.Tensor
    f_best: Optional[torch.Tensor]


@ALGORITHMS.register
class HybridPGA:
    """The alternating projected gradient step of eq. 12 (module docstring).

    Per-iteration parameters: ``step_analog`` (mu_a, scalar), ``step_digital`` (mu_d, a scalar or one
    per band), ``momentum`` (beta, optional heavy ball on both blocks). ``safeguard=True``: the
    iteration runs unchanged, but each step returns, per sample, the best iterate so far by
    ``problem.objective`` (``GuardedState``), so no output is worse than the start or any earlier one;
    one objective evaluation per step. (``solve(tol=...)`` then measures the change of that best iterate,
    and the reference solver runs the rule without the safeguard.)
    """

    name = "hybrid_pga"
    parameters = ("step_analog", "step_digital", "momentum")
    problems = ("hybrid_precoding",)

    def __init__(self, normalize: Optional[str] = "norm", safeguard: bool = False):
        if normalize not in (None, "norm"):
            raise ConfigError(f"hybrid_pga: gradient scaling must be 'norm' or none (got {normalize!r})")
        self.normalize = normalize
        self.safeguard = bool(safeguard)
        self.extrapolation = "heavy_ball"

    @classmethod
    def from_model_config(cls, cfg, problem) -> "HybridPGA":
        scaling = {"auto": problem.default_scaling, "none": None}.get(cfg.gradient_scaling, cfg.gradient_scaling)
        return cls(normalize=scaling, safeguard=cfg.safeguard)

    @classmethod
    def for_reference(cls, decl) -> "HybridPGA":
        return cls(normalize=decl.normalize)

    def init_state(self, x0: torch.Tensor):
        return GuardedState(x0, x0, x0, None) if self.safeguard else State(x0, x0)

    def _scale(self, g: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """||g||_F / ||W||_F over the last two dimensions (kept for broadcasting)."""
        if self.normalize is None:
            return torch.ones((), dtype=g.real.dtype, device=g.device)
        return norm_ratio(g, W, keepdim=True)

    def step(self, problem, inst, state, params: dict):
        if not self.safeguard:
            return self._step(problem, inst, state, params)
        # keep-best: the iteration goes on along its own path; what the step returns (state.x) is, per
        # sample, the best iterate so far by the objective (ties keep the earlier one)
        path = self._step(problem, inst, State(state.path, state.path_prev), params)
        f_best = problem.objective(state.x, inst) if state.f_best is None else state.f_best
        f = problem.objective(path.x, inst)
        better = f > f_best                                                        # (B,)
        return GuardedState(torch.where(better.unsqueeze(-1), path.x, state.x), path.x, path.x_prev,
                            torch.where(better, f, f_best))

    def _step(self, problem, inst, state: State, params: dict) -> State:
        NB = inst.H.shape[1]
        W_a, D = problem.unpack_stacked(state.x, inst)                             # (B, M, L), (B, L, NB N)
        beta = params.get("momentum")
        moving = _moving(beta)
        if moving:
            P_a, P_d = problem.unpack_stacked(state.x_prev, inst)
            b = torch.as_tensor(beta, dtype=W_a.real.dtype, device=W_a.device)
        G = problem.stack(problem.rate_gradient(problem.stacked_precoders(W_a, D, inst), inst))   # (B, M, NB N)
        g_a = G @ D.mH                                                             # sum_b G_b W_d,b^H
        mu_a = torch.as_tensor(params["step_analog"], dtype=W_a.real.dtype, device=W_a.device)
        Z_a = W_a + (mu_a / self._scale(g_a, W_a)) * g_a
        if moving:
            Z_a = Z_a + b * (W_a - P_a)
        W_a = project_analog(Z_a)
        G = problem.stack(problem.rate_gradient(problem.stacked_precoders(W_a, D, inst), inst))   # at the new W_a (12b)
        # the digital step in whitened coordinates X_b = R W_d,b (W_a^H W_a = R^H R), where the power
        # set is the sphere ||X_b||_F^2 = P and scaling onto it is the metric projection: dR/dX = R^{-H} dR/dW_d
        # a load of 1e-6 of the diagonal (= M, unit-modulus columns) keeps the factor defined when the
        # analog columns are (nearly) dependent; the same R maps both ways, so the step stays exact
        Gram = W_a.mH @ W_a
        eye = torch.eye(Gram.shape[-1], dtype=Gram.dtype, device=Gram.device)
        R = torch.linalg.cholesky(Gram + (1e-6 * W_a.shape[-2]) * eye, upper=True)   # (B, L, L)
        g_x = torch.linalg.solve_triangular(R.mH, W_a.mH @ G, upper=False)        # (B, L, NB N)
        X = (R @ D).view(D.shape[0], D.shape[1], NB, -1)
        g_x = g_x.view_as(X)
        X = X + (_band_steps(params["step_digital"], X) / self._scale_bands(g_x, X)) * g_x
        Z_d = torch.linalg.solve_triangular(R, X.view_as(D), upper=True)
        if moving:
            Z_d = Z_d + b * (D - P_d)
        return State(problem.pack_stacked(W_a, project_stacked(W_a, Z_d, NB, problem.power)), state.x)

    def _scale_bands(self, g: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """||g_b||_F / ||X_b||_F per sample and band for (B, L, NB, N) blocks, (B, 1, NB, 1)."""
        if self.normalize is None:
            return torch.ones((), dtype=g.real.dtype, device=g.device)
        return norm_ratio(g, X, (1, 3), keepdim=True)


@ALGORITHMS.register
class FullyDigitalWMMSE:
    """WMMSE (``algorithms.wmmse``) on each band's fully-digital precoder F (B, NB, M, N), power P per
    band: the fully-digital bound of the hybrid problem's ``sum_rate`` objective, run to convergence
    by the reference solver. No parameters."""

    name = "fd_wmmse"
    parameters = ()
    problems = ("hybrid_precoding",)
    normalize = None

    @classmethod
    def from_model_config(cls, cfg, problem) -> "FullyDigitalWMMSE":
        raise ConfigError("fd_wmmse computes the fully-digital reference; it is not an unfolded model's update rule")

    @classmethod
    def for_reference(cls, decl) -> "FullyDigitalWMMSE":
        return cls()

    def init_state(self, x0: torch.Tensor) -> State:
        return State(x0, x0)

    def step(self, problem, inst, state: State, params: dict) -> State:
        F = state.x
        B, NB, M, N = F.shape
        H, s2 = problem.per_band(inst)
        V = F.reshape(B * NB, M, N)
        u, w = receivers(H, V, s2)
        V = project_power(transmit(H, w, u, problem.power), problem.power)
        return State(V.view(B, NB, M, N), F)


def rate_trajectory(problem, inst, algorithm, params: dict, iterations: int) -> torch.Tensor:
    """Mean rate after each of ``iterations`` steps (index 0: the start), (T + 1,) float64: the
    rate-vs-iteration curve of the benchmark."""
    from .solver import solve
    x0 = problem.init(inst)
    run = solve(problem, inst, algorithm, params, iterations, trajectory=True, x0=x0)
    with torch.no_grad():
        return torch.stack([problem.objective(x, inst).double().mean() for x in [x0] + run.trajectory])


__all__ = ["HybridPGA", "FullyDigitalWMMSE", "rate_trajectory"]

"""Classical baselines run through the same update rule as the unfolded networks."""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch

from ..algorithms import ProximalGradient, fista_momentum, solve

# The seed article's PGD: raw (unnormalised) SE gradient, a small positive step, random start.
ARTICLE_STEP = 1e-3
# Power iteration is PGD with a scaled gradient and alpha -> infinity: w <- A w / ||A w||.
POWER_ITERATION_STEP = 1e6


def article_pgd(problem, inst, iterations: int):
    algo = ProximalGradient(normalize=None)
    return solve(problem, inst, algo, {"step": ARTICLE_STEP}, iterations, x0=problem.init(inst, "random", seed=7)).x


def power_iteration(problem, inst, iterations: int):
    return solve(problem, inst, ProximalGradient(normalize=problem.default_scaling), {"step": POWER_ITERATION_STEP}, iterations).x


def default_step_grid() -> list:
    """Signed steps on a log grid, for the normalised gradient: +-[0.1 .. 1e4] and the power-iteration limit."""
    mags = torch.logspace(-1, 4, 41).tolist()
    return [-m for m in mags] + mags + [POWER_ITERATION_STEP]


def tune_fixed_step(problem, inst, ref, iterations: int, grid: Optional[Iterable[float]] = None,
                    momentum_grid: Iterable[float] = (0.0,)) -> Tuple[dict, float]:
    """The best fixed (step, momentum) for ``iterations`` of normalised PGD on ``inst`` (a validation
    set), by exhaustive sweep. Returns (params, score)."""
    best, best_score = None, float("-inf")
    algo = ProximalGradient(normalize=problem.default_scaling)
    for beta in momentum_grid:
        for a in (grid if grid is not None else default_step_grid()):
            x = solve(problem, inst, algo, {"step": a, "momentum": beta}, iterations).x
            if not torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all():
                continue
            s = problem.score(problem.summarize(x, inst, ref))
            if s > best_score:
                best, best_score = {"step": a, "momentum": beta}, s
    return best, best_score


def run_tuned(problem, inst, params: dict, iterations: int):
    return solve(problem, inst, ProximalGradient(normalize=problem.default_scaling), params, iterations).x


def ista(problem, inst, iterations: int, trajectory: bool = False):
    return solve(problem, inst, ProximalGradient(normalize=problem.default_scaling), {"step": 1.0}, iterations, trajectory=trajectory)


def fista(problem, inst, iterations: int, trajectory: bool = False):
    return solve(problem, inst, ProximalGradient(extrapolation="nesterov", normalize=problem.default_scaling),
                 {"step": 1.0, "momentum": fista_momentum}, iterations, trajectory=trajectory)


# The classical solvers a problem can name in its ``classical`` declaration: name -> (label,
# solver(problem, inst, K) -> x), each run at the depth K of the model it is compared with.
CLASSICAL = {
    "power_iteration": ("power iteration", power_iteration),
    "ista": ("ISTA", lambda problem, inst, K: ista(problem, inst, K).x),
    "fista": ("FISTA", lambda problem, inst, K: fista(problem, inst, K).x),
}

"""Tuning a classical solver's constants on a validation set: the honest baseline at a given depth,
and the starting point of an unfolded network (``model.step_init: tuned``), which then begins as
the best classical solver of its depth and can only improve on it (the trainer keeps the best
validated weights, and step 0 is validated).
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch

from .proximal_gradient import ProximalGradient
from .solver import solve

# positive steps for a scaled gradient (alpha = 1 is the 1/L step) and heavy-ball momenta
POSITIVE_STEPS = torch.logspace(-3, 4, 36).tolist()
MOMENTA = (0.0, 0.3, 0.5, 0.7, 0.9)
RELAXATIONS = (0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0)
# analog and digital steps of hybrid PGA with the norm scaling (a step moves a block by that share of its norm),
# half a decade apart. Down to 1e-5: with the per-user sum rate the best analog step from the subspace start is
# 1e-4 or below (the analog precoder barely moves) with momentum 0.8-0.95 (benchmarks/experiments/hybrid_recipes.py
# --sum-rate); the benchmark's sweep of 2026-12-05 (1e-2 .. 1e2, no momentum) left classical PGA-30 at 97.19% of the
# bound instead of 98.32%, and the 1e-4 .. 1e2 / 0.9 grid of 2026-12-06 left PGA-5's pick on its corner.
HYBRID_STEPS = torch.logspace(-5, 2, 15).tolist()
HYBRID_MOMENTA = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
# the start of an unfolded network (``step_init: tuned``) needs no finer grid: training refines it
HYBRID_INIT_STEPS = torch.logspace(-4, 2, 7).tolist()


def _score(problem, inst, ref, iterations: int, algo, params) -> float:
    """``problem.score`` of ``iterations`` steps of ``algo`` with ``params`` on ``inst`` against ``ref``;
    -inf when the result has a NaN or Inf."""
    x = solve(problem, inst, algo, params, iterations).x
    if not torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all():
        return float("-inf")
    s = float(problem.score(problem.summarize(x, inst, ref)))
    return s if s == s else float("-inf")                      # a NaN score never wins


def _best(problem, inst, ref, iterations: int, candidates) -> Tuple[object, float]:
    """The candidate (``(key, algorithm, params)``) whose ``iterations`` steps score best on ``inst``
    against ``ref``; results with a NaN or Inf are skipped. Returns (key, score); (None, -inf) when
    every candidate diverges."""
    best, best_score = None, float("-inf")
    for key, algo, params in candidates:
        s = _score(problem, inst, ref, iterations, algo, params)
        if s > best_score:
            best, best_score = key, s
    return best, best_score


@torch.no_grad()
def tune_pgd(problem, inst, ref, iterations: int, steps: Iterable[float] = POSITIVE_STEPS,
             momenta: Iterable[float] = MOMENTA, normalize: Optional[str] = "default",
             extrapolation: str = "heavy_ball") -> Tuple[dict, float]:
    """The (step, momentum) of ``iterations`` of projected gradient (``normalize``: the problem's
    default scaling unless given) with the best ``problem.score`` on ``inst`` against ``ref``, by
    exhaustive sweep. Returns ({"step", "momentum"}, score)."""
    algo = ProximalGradient(extrapolation=extrapolation,
                            normalize=problem.default_scaling if normalize == "default" else normalize)
    grid = [{"step": a, "momentum": beta} for beta in momenta for a in steps]
    return _best(problem, inst, ref, iterations, ((p, algo, p) for p in grid))


@torch.no_grad()
def tune_wmmse(problem, inst, ref, iterations: int, grid: Iterable[float] = RELAXATIONS) -> Tuple[float, float]:
    """The over-relaxation omega of WMMSE-``iterations`` with the best score on ``inst`` (1, the
    classical value, if every candidate diverges)."""
    from .wmmse import WMMSE
    algo = WMMSE()
    best, score = _best(problem, inst, ref, iterations, ((w, algo, {"relaxation": w}) for w in grid))
    return (1.0 if best is None else best), score


@torch.no_grad()
def tune_hybrid_pga(problem, inst, ref, iterations: int, steps: Iterable[float] = HYBRID_STEPS,
                    momenta: Iterable[float] = (0.0,), normalize: Optional[str] = "norm", stride: int = 1,
                    reach: int = 2, rounds: int = 4, safeguard: bool = False) -> Tuple[Optional[dict], float]:
    """The fixed (analog step, digital step, momentum) of ``iterations`` of hybrid PGA with the best
    score on ``inst``, by a coordinate search over ``steps`` x ``steps`` x ``momenta``:

    1. every (analog, digital) pair of ``steps[::stride]`` without momentum (``stride`` > 1 thins this
       sweep for long runs);
    2. every momentum of ``momenta`` at the best pair so far;
    3. every pair within ``reach`` places of ``steps`` of the best pair, at its momentum.

    2 and 3 repeat until the best point stops moving (at most ``rounds`` times; ``rounds=0`` keeps the
    momentum-free sweep of 1 alone): a heavy-ball momentum
    beta stretches the effective step by about 1 / (1 - beta), so the best steps move once momentum
    enters, and 3 follows them. Every point is scored once; ties keep the point scored first.
    ``safeguard``: tune the safeguarded update (``HybridPGA(safeguard=True)``). Returns
    ({"step_analog", "step_digital", "momentum"}, score), or (None, -inf) when every point diverges."""
    from .hybrid_pga import HybridPGA
    steps, momenta = list(steps), list(momenta)
    if not steps or stride < 1 or reach < 0 or rounds < 0:
        raise ValueError(f"tune_hybrid_pga: needs steps, stride >= 1, reach >= 0, rounds >= 0 "
                         f"(got {len(steps)} steps, stride {stride}, reach {reach}, rounds {rounds})")
    algo = HybridPGA(normalize=normalize, safeguard=safeguard)
    scores: dict = {}                                     # (analog index, digital index, momentum) -> score

    def visit(points):
        for i, j, m in points:
            if (i, j, m) not in scores:
                params = {"step_analog": steps[i], "step_digital": steps[j], "momentum": m}
                scores[(i, j, m)] = _score(problem, inst, ref, iterations, algo, params)
        return max(scores, key=scores.get)

    coarse = range(0, len(steps), stride)
    best = visit((i, j, 0.0) for i in coarse for j in coarse)
    for _ in range(rounds):
        if scores[best] == float("-inf"):
            break
        before = best
        best = visit((best[0], best[1], m) for m in momenta)
        i0, j0, m0 = best
        near = lambda k: range(max(0, k - reach), min(len(steps), k + reach + 1))  # noqa: E731
        best = visit((i, j, m0) for i in near(i0) for j in near(j0))
        if best == before:
            break
    if scores[best] == float("-inf"):
        return None, float("-inf")
    i, j, m = best
    return {"step_analog": steps[i], "step_digital": steps[j], "momentum": float(m)}, scores[best]


# LASSO weights tried for ISTA / FISTA at a given iteration count (multiples of the problem's lam)
LASSO_LAMBDA_FACTORS = torch.logspace(-2, 2, 25).tolist()


@torch.no_grad()
def tune_lasso(problem, inst, ref, iterations: int, method: str = "ista",
               factors: Iterable[float] = LASSO_LAMBDA_FACTORS) -> Tuple[float, float]:
    """The LASSO weight lambda (``problem.lam`` times one of ``factors``) with which ``iterations``
    of ISTA or FISTA (step 1/L; FISTA's momentum schedule) score best on ``inst`` against ``ref``
    (the true signals): a few iterations want a larger lambda than the converged LASSO. Returns
    (lambda, score)."""
    from .proximal_gradient import fista_momentum
    if method not in ("ista", "fista"):
        raise ValueError(f"tune_lasso: method must be 'ista' or 'fista' (got {method!r})")
    algo = ProximalGradient(extrapolation="nesterov" if method == "fista" else "heavy_ball", normalize="lipschitz")

    def params(lam):
        p = {"step": 1.0, "threshold": lam / problem.lipschitz}
        return {**p, "momentum": fista_momentum} if method == "fista" else p

    lams = [problem.lam * f for f in factors]
    return _best(problem, inst, ref, iterations, ((lam, algo, params(lam)) for lam in lams))


def lasso_solve(problem, inst, iterations: int, lam: float, method: str = "ista", trajectory: bool = False):
    """ISTA / FISTA with LASSO weight ``lam`` (step 1/L): the tuned classical baseline's run."""
    from .proximal_gradient import fista_momentum
    algo = ProximalGradient(extrapolation="nesterov" if method == "fista" else "heavy_ball", normalize="lipschitz")
    p = {"step": 1.0, "threshold": lam / problem.lipschitz}
    if method == "fista":
        p["momentum"] = fista_momentum
    return solve(problem, inst, algo, p, iterations, trajectory=trajectory)


# robust PCA (eqs. 25-27): one step for both factors, the threshold zeta_k = zeta_0 rho^k
RPCA_STEPS = (0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5)
RPCA_THRESHOLDS = torch.logspace(-3, 0.5, 15).tolist()
RPCA_DECAYS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def rpca_params(step: float, threshold: float, decay: float = 1.0) -> dict:
    """The classical RPCA solver's per-iteration parameters: equal steps, a geometric threshold."""
    return {"step_L": step, "step_R": step,
            "threshold": threshold if decay == 1.0 else (lambda k: threshold * decay ** k)}


@torch.no_grad()
def tune_rpca(problem, inst, iterations: int, steps: Iterable[float] = RPCA_STEPS,
              thresholds: Iterable[float] = RPCA_THRESHOLDS, decays: Iterable[float] = RPCA_DECAYS) -> Tuple[dict, float]:
    """The (step, threshold, decay) of ``iterations`` RPCA iterations with the best low-rank NMSE on
    ``inst`` (exhaustive sweep). Returns ({"step", "threshold", "decay"}, score)."""
    from .rpca import RPCAStep
    algo = RPCAStep()
    grid = [{"step": a, "threshold": t, "decay": d} for d in decays for a in steps for t in thresholds]
    return _best(problem, inst, None, iterations, ((p, algo, rpca_params(**p)) for p in grid))


# soft interference cancellation (detection): damping and noise inflation
SIC_DAMPINGS = (0.0, 0.2, 0.4, 0.6)
SIC_INFLATIONS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3)


@torch.no_grad()
def tune_sic(problem, inst, iterations: int, dampings: Iterable[float] = SIC_DAMPINGS,
             inflations: Iterable[float] = SIC_INFLATIONS, exact_interferers: int = 0) -> Tuple[float, float]:
    """The (damping, noise inflation) of ``iterations`` SIC iterations with the lowest SER on ``inst``
    (instances with the transmitted symbols), ties broken by the cross-entropy (exhaustive sweep);
    ``exact_interferers`` 1 tunes the mixture SIC (``algorithms.detection.sic``)."""
    from .detection import sic
    scores = {}
    for b in dampings:
        for d in inflations:
            x = sic(problem, inst, iterations, b, d, exact_interferers)
            scores[(b, d)] = (problem.summarize(x, inst, inst.s)["ser"], problem.supervised_loss(x, inst, inst.s).mean().item())
    return min(scores, key=scores.get)

"""Reference solutions: the closed form where the problem declares one, else the problem's declared
``ReferenceSolver`` (the platform's own update rule) run to convergence.

This lives beside the algorithms, not in the problems: a problem declares *how* it is solved to
convergence; running that is the algorithms' business, so problems never import algorithms.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from .solver import param_at, solve


@torch.no_grad()
def reference(problem, inst) -> torch.Tensor:
    """The optimum of ``inst`` (closed form), or the declared iterative solve to its tolerance
    (from the declared initialisations, the best objective per sample). A per-sample solve runs all
    its starts as one stacked batch; its float results, like any per-sample solve's, depend slightly
    on which samples share the batch (a sample's last digits can differ from a solve of it alone).

    Returns an iterate of the problem's solution shape (beamforming: (B, n_tx, S) complex64;
    lasso: (B, n) float32; mu_miso: (B, n_tx, K) complex64)."""
    x = problem.closed_form(inst)
    if x is not None:
        return x
    decl = problem.reference_solver
    if decl is None:
        raise ConfigError(f"problem {problem.name!r} declares neither a closed form nor a reference_solver")
    algo = ALGORITHMS.get(decl.algorithm).for_reference(decl)
    starts = [problem.init(inst, m) for m in decl.inits] if decl.inits else [problem.reference_init(inst)]
    if decl.per_sample and len(starts) > 1:
        # every start in one stacked solve (S B samples): each sample stops on its own, so the loop runs
        # as long as the slowest start instead of the sum over starts, and its per-step overhead, which
        # dominates once few samples are left, is paid once (MU-MISO's three starts: about 2x faster)
        S, B = len(starts), starts[0].shape[0]
        stacked = inst[torch.arange(B, device=starts[0].device).repeat(S)]
        xs = _solve_per_sample(problem, stacked, algo, dict(decl.params), decl, torch.cat(starts)).unflatten(0, (S, B))
        runs = [(x, inst) for x in xs]
    else:
        run = _solve_per_sample if decl.per_sample else _solve_batch
        runs = [(run(problem, inst, algo, dict(decl.params), decl, x0), inst) for x0 in starts]
    best, best_obj = None, None
    for x, sub in runs:
        obj = problem.sense * problem.objective(x, sub)
        if best is None:
            best, best_obj = x, obj
        else:
            better = obj > best_obj                      # ties keep the earlier start
            best = torch.where(better.view(-1, *([1] * (x.dim() - 1))), x, best)
            best_obj = torch.maximum(obj, best_obj)
    return best


def _solve_batch(problem, inst, algo, params, decl, x0):
    return solve(problem, inst, algo, params, iterations=decl.max_iterations, tol=decl.tol, x0=x0).x


@torch.no_grad()
def _solve_per_sample(problem, inst, algo, params, decl, x0):
    """The declared solve with a per-sample stop: a sample whose relative objective change falls
    below ``tol`` leaves the batch (its iterate is final), so one slow channel does not keep the
    whole batch iterating. The instance must support indexing (``inst[idx]``)."""
    out = x0.clone()
    active = torch.arange(x0.shape[0], device=x0.device)
    sub, state = inst, algo.init_state(x0)
    prev = problem.objective(x0, inst)
    for k in range(decl.max_iterations):
        state = algo.step(problem, sub, state, {n: param_at(v, k) for n, v in params.items()})
        obj = problem.objective(state.x, sub)
        done = (obj - prev).abs() / obj.abs().clamp_min(1e-12) < decl.tol
        if k == decl.max_iterations - 1:
            done = torch.ones_like(done)
        if done.any():
            out[active[done]] = state.x[done]
            keep = ~done
            if not keep.any():
                break
            active, sub = active[keep], sub[keep]
            state = type(state)(state.x[keep], state.x_prev[keep])
            obj = obj[keep]
        prev = obj
    return out


def evaluation_reference(problem, inst) -> torch.Tensor:
    """What solutions are scored against: the ground truth where the instance carries it (sparse
    recovery scores against the true signal), else the reference solution."""
    truth = problem.ground_truth(inst)
    return truth if truth is not None else reference(problem, inst)

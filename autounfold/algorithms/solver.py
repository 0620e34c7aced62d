"""The classical solver: an update rule applied T times with fixed (or scheduled) hyperparameters."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import torch

from ..errors import ConfigError

ParamValue = Union[float, Sequence[float], Callable[[int], float], torch.Tensor, dict, None]


def param_at(value: ParamValue, k: int):
    """Per-iteration parameters are given as a scalar, a list (one per iteration), a callable
    k -> value or the name of a schedule in ``SCHEDULES`` (``"fista"``)."""
    if isinstance(value, str):
        from .proximal_gradient import SCHEDULES
        if value not in SCHEDULES:
            raise ConfigError(f"unknown parameter schedule {value!r}; allowed: {', '.join(SCHEDULES)}")
        value = SCHEDULES[value]
    if callable(value) and not isinstance(value, torch.Tensor):
        return value(k)
    if isinstance(value, (list, tuple)):
        if k >= len(value):
            raise ConfigError(f"a per-iteration parameter list has {len(value)} entries, iteration {k} needs more")
        return value[k]
    return value


@dataclass
class SolveResult:
    """x: final iterate; iterations: how many were run; trajectory: iterates after each step (if asked)."""

    x: torch.Tensor
    iterations: int
    converged: bool
    trajectory: List[torch.Tensor] = field(default_factory=list)


@torch.no_grad()
def solve(problem, inst, algorithm, params: dict, iterations: int, tol: Optional[float] = None,
          trajectory: bool = False, x0: Optional[torch.Tensor] = None) -> SolveResult:
    """Run ``algorithm.step`` up to ``iterations`` times, from ``x0``, else from the rule's own start
    (``algorithm.start(problem, inst)``, as ``Unfolded.run``) where it has one that applies, else from
    ``problem.init(inst)``.

    Args:
        params: {name: scalar | list | callable(k)} per-iteration hyperparameters.
        tol: stop once max over the batch of |f_k - f_{k-1}| / max(|f_k|, 1e-12) < tol (checked
            every iteration; None runs all ``iterations``).
        trajectory: keep every iterate (memory grows with T).
    """
    if iterations < 0:
        raise ConfigError(f"iterations must be >= 0 (got {iterations})")
    start = getattr(algorithm, "start", None) if x0 is None else None
    state = start(problem, inst) if callable(start) else None        # the rule's own start (as the unfolded net's)
    if state is None:
        state = algorithm.init_state(problem.init(inst) if x0 is None else x0)
    traj, prev_obj, converged, k = [], None, False, 0
    if tol is not None:
        prev_obj = problem.objective(state.x, inst)
    for k in range(iterations):
        state = algorithm.step(problem, inst, state, {n: param_at(v, k) for n, v in params.items()})
        if trajectory:
            traj.append(state.x)
        if tol is not None:
            obj = problem.objective(state.x, inst)
            change = ((obj - prev_obj).abs() / obj.abs().clamp_min(1e-12)).max()
            prev_obj = obj
            if change < tol:
                converged = True
                k += 1
                break
    else:
        k = iterations
    return SolveResult(state.x, k, converged, traj)

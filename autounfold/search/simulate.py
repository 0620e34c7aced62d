"""Run a product searcher (``searchers.make_searcher``) against a tabular benchmark (``tabular.Table``):
the same ``suggest`` / ``on_trial_complete`` calls Ray Tune makes, with each trial's result read
from the table instead of trained.

Concurrency is simulated on the table's own clock: ``concurrency`` trials are in flight, each takes
the ``trial_seconds`` its configuration took when the table was built, and the searcher is told
about trials in the order they would finish, so it suggests from the stale history a live search
with that many workers has.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ..spaces.spec import SearchSpec
from .history import History
from .searchers import make_searcher
from .tabular import Table, params_key


@dataclass
class SimRun:
    values: List[float]                  # objectives in the order the trials finished
    params: List[dict]                   # the configurations, same order
    finish_s: List[float]                # simulated wall time at which each finished
    decision: dict = field(default_factory=dict)    # a transfer searcher's record (replay, gate)

    def best_after(self, n: int, sign: float = 1.0) -> float:
        return sign * max(sign * v for v in self.values[:n])


def with_budget(spec: SearchSpec, **budget) -> SearchSpec:
    """``spec`` with budget fields replaced (validated) and, with ``seed=``, another search seed."""
    seed = budget.pop("seed", spec.seed)
    data = spec.model_dump(mode="json")
    data["budget"].update(budget)
    data["seed"] = seed
    out = type(spec).model_validate(data)
    out._origin = spec.origin
    return out


def simulate(spec: SearchSpec, table: Table, n_trials: int, concurrency: int = 1,
             history: Optional[History] = None) -> SimRun:
    """``n_trials`` trials of ``spec``'s searcher (algorithm, seed, constant liar, transfer) on ``table``."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    searcher, _ = make_searcher(spec, history)
    seconds = {r["key"]: float(r["trial_seconds"]) for r in table.rows if r["replicate"] == 0}
    running: list = []                   # heap of (finish time, order, trial id, params, objective)
    out = SimRun([], [], [])
    now, suggested = 0.0, 0
    while len(out.values) < n_trials:
        while len(running) < concurrency and suggested < n_trials:
            tid = f"sim{suggested}"
            config = searcher.suggest(tid)
            if config is None:
                raise RuntimeError(f"{type(searcher).__name__} suggested nothing at trial {suggested}")
            params = spec.flatten(config)
            value = table.lookup(params)        # TableError naming the table when the space does not match it
            heapq.heappush(running, (now + seconds[params_key(params)], suggested, tid, params, value))
            suggested += 1
        now, _, tid, params, value = heapq.heappop(running)
        searcher.on_trial_complete(tid, {"objective": value})
        out.values.append(value)
        out.params.append(params)
        out.finish_s.append(now)
    out.decision = dict(getattr(searcher, "decision", {}) or {})
    return out


def trials_to(values: Sequence[float], target: float, sign: float = 1.0) -> Optional[int]:
    """1-based number of finished trials until one is at least ``target`` (None: never)."""
    for i, v in enumerate(values):
        if sign * (v - target) >= 0:
            return i + 1
    return None

"""``--resume``: the searcher rebuilt from the trials the search recorded, not restored as saved.

Ray Tune saves a search in separate files: the experiment state (``experiment_state-*.json``, the
trials) and the searcher's state (``search_gen_state-*.json``: how many trials were suggested, which
are live in the ``ConcurrencyLimiter``; ``searcher-state-*.pkl``: TPE's history and random state).
A driver killed at the wrong moment leaves them from different saves (Tune rewrote its staging copy
while the background sync was copying it, or the kill fell between two files being published:
``atomic_sync``). Restored as saved, a searcher that is *ahead* counts trials the experiment state
does not hold as suggested: Tune ends the resumed search with its budget unspent (exit 130,
"interrupted", and again at every later ``--resume``), and the trials it holds as live keep
concurrency slots that never free. One that is *behind* suggests seeds it already used (a
configuration trained twice) and holds trials that have ended as live.

``install()`` makes Tune's ``TuneController.resume``, while ``activate`` has a ``ResumeContext``
active, rebuild the searcher right after Tune restored it, from what the search recorded: the
trials of the restored experiment state and the trials that ended after that state was saved (the
runner's ``trial_rows.jsonl``):

- the number of trials suggested is their number (the rest of ``num_samples`` is suggested again);
- the concurrency limiter's live trials are the restored trials that run again;
- TPE's history is the warm-start points, every ended trial with its objective and the trials that
  run again (pending, completed by Tune as they end);
- the random state is the seed advanced by one draw per recorded trial (TPE draws one seed per
  suggestion): what an uninterrupted search has after suggesting those trials, so that no seed is
  used twice.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import SearchError
from ..spaces.spec import SearchSpec
from .history import LEARNED_FROM, insert_doc
from .results import ENDED

log = logging.getLogger(__name__)

_MARK = "_autounfold_rebuilds_searcher"
_ACTIVE: dict = {}
STATE_GLOB = "experiment_state-*.json"
UNREADABLE = ".unreadable"


@dataclass
class ResumeContext:
    spec: SearchSpec
    rows: dict                          # trial id -> its last row in trial_rows.jsonl (any status)
    warm_inserted: int = 0              # warm-start points: the first documents of TPE's history
    report: dict = field(default_factory=dict)      # what the rebuild found (``rebuild_searcher``)


def activate(ctx: Optional[ResumeContext]) -> None:
    _ACTIVE.clear()
    if ctx is not None:
        _ACTIVE["ctx"] = ctx


def _chain(search_alg):
    """``SearchGenerator`` -> (the ``ConcurrencyLimiter`` or None, the innermost searcher)."""
    from ray.tune.search import ConcurrencyLimiter

    limiter, node = None, getattr(search_alg, "searcher", None)
    while node is not None and hasattr(node, "searcher"):
        if isinstance(node, ConcurrencyLimiter):
            limiter = node
        node = node.searcher
    return limiter, node


def _objective(row: Optional[dict], last_result: Optional[dict]) -> Optional[float]:
    """The objective TPE learns from an ended trial (None: it learns nothing, e.g. an error)."""
    if row is not None:
        if row.get("status") not in LEARNED_FROM:
            return None
        value = row.get("objective")
    else:
        value = (last_result or {}).get("objective")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rebuild_searcher(search_alg, trials: List, ctx: ResumeContext) -> dict:
    """Make Tune's restored ``search_alg`` (a ``SearchGenerator``) agree with ``trials`` (Tune's
    restored trials, requeued: ``TERMINATED`` ones have ended, the others run again) and with the
    trials in ``ctx.rows`` that ended but are not among them. Returns what it found and did."""
    import numpy as np
    from ray.tune.experiment import Trial

    spec = ctx.spec
    if not all(hasattr(search_alg, a) for a in ("_counter", "_total_samples", "_finished")):
        log.warning("--resume: Tune's search algorithm is %s, not a SearchGenerator: restored as saved",
                    type(search_alg).__name__)
        return {}
    in_state = {t.trial_id for t in trials}
    again = [t for t in trials if t.status != Trial.TERMINATED]
    ended = [t for t in trials if t.status == Trial.TERMINATED]
    after = [row for tid, row in ctx.rows.items() if tid not in in_state and row.get("status") in ENDED]
    recorded = len(in_state) + len(after)
    limiter, base = _chain(search_alg)
    report = {"trials_in_state": len(in_state), "ended_after_state": len(after), "run_again": len(again),
              "saved_counter": getattr(search_alg, "_counter", None),
              "saved_live": sorted(limiter.live_trials) if limiter is not None else None}

    search_alg._counter = recorded
    if recorded < search_alg._total_samples:
        search_alg._finished = False
    if getattr(search_alg, "_experiment", None) is None:
        log.warning("--resume: Tune restored no searcher state; no further trials can be suggested")
    if limiter is not None:
        limiter.live_trials = {t.trial_id for t in again}
        limiter.num_unfinished_live_trials = len(limiter.live_trials)
        limiter.cached_results = {}

    # every ended trial with its objective (None: it teaches nothing), and the trials that run again
    recorded_points = ([(spec.flatten(t.config), _objective(ctx.rows.get(t.trial_id), t.last_result)) for t in ended]
                       + [(json.loads(row["params"]), _objective(row, None)) for row in after])
    again_points = [(t.trial_id, spec.flatten(t.config)) for t in again]

    if base is not None and hasattr(base, "_hpopt_trials"):
        import hyperopt

        saved = base._hpopt_trials
        history = hyperopt.Trials()
        for doc in sorted(saved._dynamic_trials, key=lambda d: d["tid"])[:ctx.warm_inserted]:
            insert_doc(history, doc["misc"]["vals"], doc["result"]["loss"])
        learned = 0
        for params, objective in recorded_points:
            vals = spec.to_vals(params)
            if vals is not None and objective is not None:
                insert_doc(history, vals, -spec.objective.sign * objective)      # hyperopt minimises
                learned += 1
        live = {}
        for trial_id, params in again_points:
            vals = spec.to_vals(params)
            if vals is not None:
                doc = insert_doc(history, vals)
                live[trial_id] = (doc["tid"], doc)
        base._hpopt_trials = history
        base._live_trial_mapping = live
        base._points_to_evaluate = 0
        base.rstate = np.random.RandomState(spec.searcher_seed)
        for _ in range(recorded):                                # HyperOptSearch.suggest: one draw each
            base.rstate.randint(2**31 - 1)
        report.update(saved_documents=len(saved._dynamic_trials), documents=len(history._dynamic_trials),
                      learned=learned)
    elif base is not None and hasattr(base, "_ot_study"):          # optuna_tpe (searchers.AutoOptuna)
        from .searchers import rebuild_optuna

        learned = [(p, v) for p, v in recorded_points if v is not None and spec.to_vals(p) is not None]
        report.update(rebuild_optuna(base, spec, learned, again_points, ctx.warm_inserted, recorded))
    else:
        log.warning("--resume: the searcher is %s, neither HyperOptSearch nor OptunaSearch: only its counts "
                    "were rebuilt", type(base).__name__)
    node = getattr(search_alg, "searcher", None)
    while node is not None:                       # a warm start's replay (searchers.TransferSearcher)
        if hasattr(node, "rebuild") and node is not base:
            node.rebuild(recorded_points, again_points)
        node = getattr(node, "searcher", None)
    report["counter"] = recorded
    if report["saved_counter"] != recorded or (limiter is not None and not set(report["saved_live"]) <= limiter.live_trials):
        log.warning("--resume: the saved searcher state did not match the experiment state (it had suggested %s "
                    "trials, live %s; recorded: %d trials, %d to run again); rebuilt from the recorded trials",
                    report["saved_counter"], report["saved_live"], recorded, len(again))
    ctx.report.update(report)
    return report


def install() -> bool:
    """Wrap ``TuneController.resume`` in this process (idempotent): after Tune's restore, the active
    ``ResumeContext``'s rebuild. False where this Ray has no such method."""
    try:
        from ray.tune.execution.tune_controller import TuneController
    except ImportError:                                   # pragma: no cover - Ray is a dependency
        return False
    current = getattr(TuneController, "resume", None)
    if current is None:
        return False
    if getattr(current, _MARK, False):
        return True

    def resume(self, *args, **kwargs):
        out = current(self, *args, **kwargs)
        ctx = _ACTIVE.get("ctx")
        if ctx is not None:
            rebuild_searcher(self._search_alg, self._trials, ctx)
        return out

    setattr(resume, _MARK, True)
    resume.__wrapped__ = current
    TuneController.resume = resume
    return True


def set_aside_unreadable_states(tune_dir: Path) -> List[Path]:
    """Tune resumes from the newest ``experiment_state-*.json`` and, when it cannot read that one,
    silently starts the whole search again (every configuration trained a second time). A newest
    state that is not valid JSON (written by a Ray without ``atomic_sync``'s lock: a copy taken while
    Tune rewrote it) is renamed aside (``.unreadable``), so that Tune restores the newest readable
    one; SearchError when none is readable. Returns the paths set aside."""
    moved = []
    states = sorted(Path(tune_dir).glob(STATE_GLOB))
    while states:
        newest = states.pop()
        try:
            json.loads(newest.read_text())
            break
        except (OSError, ValueError):
            aside = newest.with_name(newest.name + UNREADABLE)
            newest.replace(aside)
            moved.append(aside)
            log.warning("--resume: %s is unreadable (a partial copy); set aside as %s, resuming from the state "
                        "before it", newest.name, aside.name)
    else:
        if moved:
            raise SearchError(f"--resume: {tune_dir} holds no readable Ray Tune experiment state (set aside: "
                              f"{', '.join(p.name for p in moved)}); the search cannot be continued, start it again "
                              "in another --out")
    return moved

"""Warm start: an earlier search's (params, objective) history, handed to TPE as evaluated points.

Ray's ``HyperOptSearch`` takes ``points_to_evaluate`` but no scores for them and does not implement
the searcher contract's ``add_evaluated_point``; ``make_searcher`` returns a subclass that does, so
the earlier trials become finished trials of TPE's own history: they count towards
``n_initial_points`` and shape the first model-based suggestions. Objectives are the earlier
search's: with a changed channel they are a prior (which regions were good), not a promise.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from ..errors import SearchError
from ..spaces.spec import SearchSpec

log = logging.getLogger(__name__)

TRIALS_FILE = "trials.parquet"
LEARNED_FROM = ("ok", "stopped", "failed")


@dataclass
class History:
    points: List[Tuple[dict, float]]      # (flat params, objective) of the trials TPE learned from
    source: str
    spec_sha256: str = ""


def read_history(path: "str | Path") -> History:
    """The trials of an earlier search that its TPE learned from, read from ``trials.parquet``:
    finished (``ok``), stopped early by ASHA (their last validation) and failed (scored worst, which
    tells TPE where configurations diverge). Trials that never ended (``unfinished``, ``error``) are left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table_path = path / TRIALS_FILE if path.is_dir() else path
    if not table_path.is_file():
        raise SearchError(f"warm start: {path} holds no {TRIALS_FILE} (give a search result directory "
                          "or the MLflow run id of a search)")
    try:
        rows = pq.read_table(table_path, columns=["params", "objective", "status", "spec_sha256"]).to_pylist()
    except (pa.ArrowException, OSError, KeyError) as err:
        raise SearchError(f"warm start: cannot read {table_path}: {err}") from None
    points = [(json.loads(r["params"]), float(r["objective"])) for r in rows
              if r["status"] in LEARNED_FROM and r["objective"] == r["objective"]]
    sha = rows[0]["spec_sha256"] if rows else ""
    return History(points, str(table_path), sha)


def insert_doc(trials, vals: dict, loss: "float | None" = None) -> dict:
    """Add one trial to a hyperopt ``Trials``: finished with ``loss`` (what TPE learns from), or,
    with ``loss=None``, suggested and not yet finished (what ``HyperOptSearch.suggest`` leaves: it
    counts towards ``n_initial_points`` and is completed by ``on_trial_complete``). ``vals``: hyperopt
    vals (``SearchSpec.to_vals``). Returns the document."""
    from hyperopt import base

    tid = trials.new_trial_ids(1)[0]
    misc = {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
            "idxs": {k: ([tid] if v else []) for k, v in vals.items()}, "vals": vals}
    result = {"status": base.STATUS_NEW} if loss is None else {"loss": float(loss), "status": base.STATUS_OK}
    doc = trials.new_trial_docs([tid], [None], [result], [misc])[0]
    doc["state"] = base.JOB_STATE_NEW if loss is None else base.JOB_STATE_DONE
    trials.insert_trial_docs([doc])
    trials.refresh()
    return doc


def make_searcher(spec: SearchSpec, history: "History | None" = None, n_initial_points: "int | None" = None):
    """The TPE searcher of ``spec`` (``WarmStartHyperOpt``), with ``history``'s points added through
    Ray's public searcher contract (``add_evaluated_point``). Returns ``(searcher, counts)`` with
    ``counts = {"inserted": n, "dropped": m}``."""
    from ray.tune.search.hyperopt import HyperOptSearch

    class WarmStartHyperOpt(HyperOptSearch):
        """``HyperOptSearch`` that implements ``Searcher.add_evaluated_point`` (Ray's contract for
        results evaluated outside the suggest / complete loop, which ``HyperOptSearch`` leaves
        unimplemented): the point becomes a finished trial of TPE's own history, so it counts
        towards ``n_initial_points`` and shapes the next suggestions.

        ``parameters`` are the flat trial parameters of ``spec`` (what ``trials.parquet`` stores);
        points outside the space raise ValueError."""

        def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
            vals = spec.to_vals(parameters)
            if vals is None:
                raise ValueError(f"point outside the search space of {spec.name}: {parameters}")
            if error:
                value = spec.objective.worst
            insert_doc(self._hpopt_trials, vals, -spec.objective.sign * float(value))      # hyperopt minimises

    b = spec.budget
    searcher = WarmStartHyperOpt(space=spec.hyperopt_space(), metric="objective", mode=spec.objective.mode,
                                 n_initial_points=n_initial_points or b.n_initial_points,
                                 random_state_seed=spec.seed, gamma=b.gamma)
    if history is None:
        return searcher, {"inserted": 0, "dropped": 0}
    inserted = dropped = 0
    for params, objective in history.points:
        if spec.to_vals(params) is None:
            dropped += 1
            continue
        searcher.add_evaluated_point(params, objective)
        inserted += 1
    if dropped:
        log.warning("warm start: %d of %d earlier trials lie outside the new search space and were dropped",
                    dropped, len(history.points))
    return searcher, {"inserted": inserted, "dropped": dropped}

"""Warm start: an earlier search's (params, objective) history, inserted into TPE's hyperopt Trials.

Ray's ``HyperOptSearch`` takes ``points_to_evaluate`` but no scores for them, so a warm start
writes finished hyperopt trial documents (``vals`` + ``{"loss": ..., "status": "ok"}``) straight
into the searcher's ``Trials``. TPE then treats them as its own past evaluations: they count
towards ``n_initial_points`` and shape the first model-based suggestions.
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
    import pyarrow.parquet as pq

    path = Path(path)
    table_path = path / TRIALS_FILE if path.is_dir() else path
    if not table_path.is_file():
        raise SearchError(f"warm start: {path} holds no {TRIALS_FILE} (give a search result directory "
                          "or the MLflow run id of a search)")
    try:
        rows = pq.read_table(table_path, columns=["params", "objective", "status", "spec_sha256"]).to_pylist()
    except Exception as err:
        raise SearchError(f"warm start: cannot read {table_path}: {err}") from None
    points = [(json.loads(r["params"]), float(r["objective"])) for r in rows
              if r["status"] in LEARNED_FROM and r["objective"] == r["objective"]]
    sha = rows[0]["spec_sha256"] if rows else ""
    return History(points, str(table_path), sha)


def insert_history(searcher, spec: SearchSpec, history: History) -> dict:
    """Insert the points of ``history`` that lie in ``spec``'s space into a ``HyperOptSearch``.

    Returns ``{"inserted": n, "dropped": m}``; dropped points (outside the new space) are counted
    in a warning. Objectives are the earlier search's: with a changed channel they are a prior,
    which is what TPE needs from them (which regions were good), not a promise.
    """
    from hyperopt import base

    trials = searcher._hpopt_trials          # created by HyperOptSearch when it gets its space
    sign = 1.0 if spec.objective.mode == "min" else -1.0   # hyperopt minimises
    usable = []
    for params, objective in history.points:
        vals = spec.to_vals(params)
        if vals is not None:
            usable.append((vals, objective))
    dropped = len(history.points) - len(usable)
    if dropped:
        log.warning("warm start: %d of %d earlier trials lie outside the new search space and were dropped",
                    dropped, len(history.points))
    if not usable:
        return {"inserted": 0, "dropped": dropped}
    tids = trials.new_trial_ids(len(usable))
    docs = []
    for tid, (vals, objective) in zip(tids, usable):
        misc = {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
                "idxs": {k: ([tid] if v else []) for k, v in vals.items()}, "vals": vals}
        doc = trials.new_trial_docs([tid], [None], [{"loss": sign * objective, "status": base.STATUS_OK}], [misc])[0]
        doc["state"] = base.JOB_STATE_DONE
        docs.append(doc)
    trials.insert_trial_docs(docs)
    trials.refresh()
    return {"inserted": len(usable), "dropped": dropped}

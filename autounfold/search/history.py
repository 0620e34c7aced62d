"""Warm start: an earlier search's (params, objective) history, handed to TPE as evaluated points.

How the history enters a new search is ``budget.transfer`` (``searchers.make_searcher``): inserted
as finished trials of TPE's own history, replayed first on the new task, or replayed and then
inserted only when the replayed results rank like the earlier ones. Objectives are the earlier
search's: with a changed channel they are a prior (which regions were good), not a promise.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from ..errors import SearchError

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

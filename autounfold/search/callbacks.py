"""Driver-side Tune callback: progress lines and the MLflow child runs of the trials.

Tune pickles its callbacks into the experiment (``tuner.pkl``) and unpickles them on
``Tuner.restore``; an MLflow client or a console does not belong there. The callback therefore
holds no state of its own: it forwards to the ``SearchContext`` the runner makes ``active``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional

from ray.tune import Callback

from .results import ENDED, trial_row

_ACTIVE: dict = {}


@dataclass
class SearchContext:
    spec: object
    tracker: object = None
    console: object = None
    total: int = 0
    done: int = 0
    best: Optional[float] = None
    last: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)          # trial id -> its row, made when the trial ended
    rows_log: Optional[Path] = None                   # the rows, appended and fsynced as trials end


def append_row(path: Path, row: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_rows(path: Path) -> dict:
    """trial id -> the last row recorded for it (a torn last line from a crash is skipped)."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows[row["trial_id"]] = row
    return rows


def activate(ctx: Optional[SearchContext]) -> None:
    _ACTIVE.clear()
    if ctx is not None:
        _ACTIVE["ctx"] = ctx


class SearchCallback(Callback):
    """Prints one line per finished trial (with the running best) and forwards every result to the
    active ``SearchTracker`` (MLflow). Runs in the driver: the only MLflow writer."""

    @staticmethod
    def _ctx() -> Optional[SearchContext]:
        return _ACTIVE.get("ctx")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        ctx = self._ctx()
        if ctx is None:
            return
        ctx.last[trial.trial_id] = result
        if ctx.tracker is not None:
            ctx.tracker.trial_result(trial.trial_id, ctx.spec.flatten(trial.config), result)

    def _finish(self, trial, error):
        ctx = self._ctx()
        if ctx is None:
            return
        params = ctx.spec.flatten(trial.config)
        result = ctx.last.get(trial.trial_id) or trial.last_result or {}
        row = trial_row(trial.trial_id, params, result, result.get("training_iteration", 0), error, ctx.spec)
        # it had ended before a crash or a Ctrl+C, and Tune reported it again from its checkpoint
        recovered = ctx.rows.get(trial.trial_id, {}).get("status") in ENDED
        ctx.rows[trial.trial_id] = row
        if ctx.rows_log is not None:                 # on disk before anyone is told: survives a SIGKILL
            append_row(ctx.rows_log, row)            # (the last row of a trial wins when it is read back)
        if recovered:
            if ctx.tracker is not None:
                ctx.tracker.trial_complete(trial.trial_id, params, row)
            return
        ctx.done += 1
        if row["status"] in ("ok", "stopped") and math.isfinite(row["objective"]):
            if ctx.spec.objective.better(row["objective"], ctx.best):
                ctx.best = row["objective"]
        if ctx.tracker is not None:
            ctx.tracker.trial_complete(trial.trial_id, params, row)
        if ctx.console is not None:
            score = "-" if math.isnan(row["val_score"]) else f"{row['val_score']:.4f}"
            extra = f"  ({row['reason'][:100]})" if row["status"] in ("failed", "error") else ""
            best = "-" if ctx.best is None else f"{ctx.best:.4f}"
            ctx.console.print(f"[{ctx.done}/{ctx.total}] {trial.trial_id} {row['status']:<7} {row['layer']:<8} "
                              f"K={row['num_layers']:<2} score {score}  best {best}{extra}", highlight=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        # the same error object Ray's ResultGrid later gives (pickled exception, else its text)
        err = trial.get_pickled_error() or trial.get_error() or "the trial's worker raised or died (see its Ray log)"
        self._finish(trial, err)

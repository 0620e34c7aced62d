"""The driver's view of a finished (or interrupted) search: the trial table, the leaderboard and
the Pareto front of score vs latency (or depth). Pure pandas / pyarrow / matplotlib: no Ray."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import List, Optional

import pandas as pd

from ..errors import ConfigError

COLUMNS = ["trial_id", "status", "objective", "val_score", "num_layers", "layer", "latency_ms", "num_parameters",
           "train_seconds", "trial_seconds", "finished_at", "iterations", "reason", "params", "spec_name", "spec_sha256", "search_seed", "shard",
           "node_id", "restored"]


ENDED = ("ok", "failed")
"""Statuses of a trial that has ended for good: a resumed search does not run it again."""


def error_reason(err) -> str:
    """The one text a trial's error gets (the Parquet ``reason`` and the MLflow tag alike): the last
    line of the error, prefixed with its type when that line does not already name one."""
    if err is None:
        return ""
    text = str(err).strip()
    last = text.splitlines()[-1].strip() if text else ""
    if isinstance(err, BaseException) and not re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", last):
        last = f"{type(err).__name__}: {last}" if last else type(err).__name__
    return last[:500] or "the trial's worker raised or died (see its Ray log)"


def trial_row(trial_id: str, params: dict, metrics: dict, iterations: int, error, spec) -> dict:
    """One row of the trial table from the last metrics a trial reported (or the error that ended
    it: an exception or Ray's error text, formatted by ``error_reason``). The only producer of rows.

    status: ``ok`` (trained to the end), ``failed`` (the trial reported why: bad config, divergence),
    ``stopped`` (stopped early by ASHA: its last validation is its score), ``unfinished`` (the
    search was interrupted while it ran, or before its first report; ``--resume`` continues it),
    ``error`` (the worker died; Ray's error text is the reason)."""
    metrics = metrics or {}
    status = metrics.get("status")
    error = error_reason(error) if error is not None else None
    if error:
        status = "error"
    elif status == "running":
        status = "stopped" if spec.budget.asha is not None else "unfinished"
    elif status is None:
        # no report and no error: the search ended (an interrupt, a time budget) before the trial's first
        # report; a worker that died would have left Ray's error text
        status = "unfinished"
    row = {
        "trial_id": trial_id, "status": status,
        "objective": _float(metrics.get("objective")), "val_score": _float(metrics.get("val_score")),
        "num_layers": int(metrics.get("num_layers") or _param(params, "model.num_layers") or 0),
        "layer": str(_param(params, "model.layer") or _set_layer(spec, params) or ""),
        "latency_ms": _float(metrics.get("latency_ms")), "num_parameters": int(metrics.get("num_parameters") or 0),
        "train_seconds": _float(metrics.get("train_seconds")), "trial_seconds": _float(metrics.get("trial_seconds")),
        "finished_at": _float(metrics.get("timestamp")), "iterations": int(iterations),
        "reason": str(error or metrics.get("reason") or ""), "params": json.dumps(params, sort_keys=True),
        "spec_name": spec.name, "spec_sha256": spec.sha256, "search_seed": spec.seed,
        "shard": str(metrics.get("shard", f"trial:{trial_id}")),
        # the Ray node that ran the trial's last report, and whether it continued from a checkpoint
        # (a node lost mid-trial: Tune reschedules the trial elsewhere from its last checkpoint)
        "node_id": str(metrics.get("node_id") or ""), "restored": bool(metrics.get("restored", False)),
    }
    if status == "error" and not math.isfinite(row["objective"]):
        row["objective"] = spec.objective.worst
    return row


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _param(params: dict, key: str):
    for label, v in params.items():
        if label == key or label.endswith("/" + key):
            return v
    return None


def _set_layer(spec, params):
    try:
        return spec.experiment(params).model.layer
    except ConfigError:                       # an invalid combination: the trial failed for that reason
        return None


def trial_table(rows: List[dict], objective) -> pd.DataFrame:
    """The rows, best first under ``objective`` (a spec's ``Objective``: its mode decides), trials
    without a finite objective last."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    key = (objective.sign * df.objective).where(df.objective.notna(), -math.inf)
    order = key.sort_values(ascending=False, kind="stable").index
    return df.loc[order].reset_index(drop=True)


def write_table(df: pd.DataFrame, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    tmp.replace(path)
    return path


def best_row(df: pd.DataFrame, objective) -> Optional[pd.Series]:
    """The best finished (``ok``) trial under ``objective``'s mode, or None."""
    ok = df[df.status.isin(["ok"])]
    if ok.empty:
        return None
    return ok.loc[(objective.sign * ok.objective).idxmax()]


def pareto_front(df: pd.DataFrame, cost: str = "latency_ms") -> pd.DataFrame:
    """Trials no other trial beats on both score (``val_score``, higher) and ``cost`` (lower)."""
    ok = df[(df.status == "ok") & df.val_score.notna() & df[cost].notna()]
    ok = ok.sort_values([cost, "val_score"], ascending=[True, False])
    front, best = [], -math.inf
    for idx, r in ok.iterrows():
        if r.val_score > best:
            front.append(idx)
            best = r.val_score
    return ok.loc[front]


def plot_pareto(df: pd.DataFrame, path: Path, title: str) -> Optional[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[(df.status == "ok") & df.val_score.notna()]
    if ok.empty:
        return None
    cost = "latency_ms" if ok.latency_ms.notna().any() else "num_layers"
    front = pareto_front(df, cost)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for layer, grp in ok.groupby("layer"):
        ax.scatter(grp[cost], grp.val_score, s=22, alpha=0.7, label=layer or "?")
    ax.step(front[cost], front.val_score, where="post", color="black", lw=1.2, label="Pareto front")
    ax.set_xlabel("median latency per batch (ms)" if cost == "latency_ms" else "depth (layers)")
    ax.set_ylabel("validation score")
    lo = min(ok.val_score.quantile(0.25), front.val_score.min())   # zoom on the good half; outliers below are cut
    hi = ok.val_score.max()
    pad = 0.08 * (hi - lo) + 1e-6
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


LEADER_COLUMNS = [("rank", "#"), ("trial_id", "trial"), ("status", "status"), ("objective", "objective"),
                  ("val_score", "score"), ("layer", "layer"), ("num_layers", "K"), ("latency_ms", "latency ms")]


def leaderboard(df: pd.DataFrame, top: int = 10) -> List[dict]:
    rows = []
    for i, (_, r) in enumerate(df.head(top).iterrows(), 1):
        rows.append({"rank": i, "trial_id": r.trial_id, "status": r.status, "objective": r.objective,
                     "val_score": r.val_score, "layer": r.layer, "num_layers": r.num_layers,
                     "latency_ms": r.latency_ms})
    return rows


def leaderboard_markdown(rows: List[dict]) -> str:
    head = "| " + " | ".join(h for _, h in LEADER_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in LEADER_COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[k]) for k, _ in LEADER_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4f}"
    return str(v)

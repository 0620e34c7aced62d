"""``run_search``: a search spec -> Ray Tune (HyperOptSearch TPE, concurrency limit, optional ASHA)
-> trial table, leaderboard, Pareto front, best model, MLflow runs and a registered challenger.

Result directory (``out``)::

    search.json         what ran: spec sha256, MLflow run id and tracking URI, warm start, timings
    spec.yaml           the canonical search-space YAML (its sha256 is in every row of trials.parquet)
    tune/               Ray Tune's experiment (checkpoints; what --resume continues)
    trials.parquet      one row per trial: status, objective, score, latency, params (JSON), reason
    leaderboard.md      the top trials;  summary.json  counts, best trial, timings
    pareto.png          score vs latency of the successful trials, Pareto front drawn
    best_model/         the best trial's model (autounfold.load reads it)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import SearchError
from ..spaces.spec import SearchSpec
from . import results as R
from .history import TRIALS_FILE, History, insert_history, read_history

log = logging.getLogger(__name__)

TUNE_DIR = "tune"
META = "search.json"
METRIC = "objective"


@dataclass
class SearchOutcome:
    out_dir: Path
    table: "object"                     # pandas DataFrame, best first
    summary: dict
    best_model: Optional[Path]
    registered: Optional[dict]
    run_id: Optional[str]


def _resolve_history(warm_start: str, tracking_uri: Optional[str]) -> History:
    import re
    p = Path(warm_start)
    if p.exists():
        return read_history(p)
    if not re.fullmatch(r"[0-9a-f]{32}", warm_start):
        raise SearchError(f"warm start {warm_start!r}: no such result directory (nor an MLflow run id: 32 hex digits)")
    # an MLflow run id of an earlier search: its trials.parquet artifact
    import tempfile

    from ..registry.tracking import mlflow_client
    client, uri = mlflow_client(tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(warm_start, TRIALS_FILE, tmp)
            return read_history(Path(local))
    except SearchError:
        raise
    except Exception as err:
        raise SearchError(f"warm start {warm_start!r}: neither a result directory nor the MLflow run id of a search "
                          f"in {uri} ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})") from None


def _make_searcher(spec: SearchSpec, history: Optional[History]):
    from ray.tune.search.hyperopt import HyperOptSearch

    b = spec.budget
    n_hist = len(history.points) if history else 0
    # random search = TPE that never leaves its random start-up (same code path, same seeding)
    n_initial = b.n_initial_points if b.algorithm == "tpe" else b.num_samples + n_hist + 1
    searcher = HyperOptSearch(space=spec.hyperopt_space(), metric=METRIC, mode=spec.objective.mode,
                              n_initial_points=n_initial, random_state_seed=spec.seed, gamma=b.gamma)
    counts = insert_history(searcher, spec, history) if history else {"inserted": 0, "dropped": 0}
    return searcher, counts


def _scheduler(spec: SearchSpec):
    a = spec.budget.asha
    if a is None:
        return None
    from ray.tune.schedulers import ASHAScheduler
    t = spec.base_config().training
    rounds = t.steps // t.validate_every + 2           # validation rounds + the final report
    return ASHAScheduler(time_attr="training_iteration", max_t=max(rounds, a.grace_period + 1),
                         grace_period=a.grace_period, reduction_factor=a.reduction_factor)


def _write_results(grid, spec: SearchSpec, out: Path, model_dir_name: str):
    """Trial table (Parquet), leaderboard, Pareto plot and the best trial's model from a ResultGrid."""
    rows, checkpoints = [], {}
    for res in grid:
        m = res.metrics or {}
        trial_id = m.get("trial_id") or Path(res.path).name
        try:
            params = spec.flatten(res.config)
        except Exception:
            params = {}
        err = None
        if res.error is not None:
            text = str(res.error).strip()
            err = f"{type(res.error).__name__}: {text.splitlines()[-1][:500] if text else ''}"
        rows.append(R.trial_row(trial_id, params, m, m.get("training_iteration", 0), err, spec))
        if res.checkpoint is not None:
            checkpoints[trial_id] = res.checkpoint
    table = R.trial_table(rows)
    R.write_table(table, out / TRIALS_FILE)
    (out / "leaderboard.md").write_text(R.leaderboard_markdown(R.leaderboard(table)))
    R.plot_pareto(table, out / "pareto.png", f"{spec.name}: score vs cost ({len(table)} trials)")
    best = R.best_row(table, spec.objective.mode)
    best_model = None
    if best is not None and best.trial_id in checkpoints:
        with checkpoints[best.trial_id].as_directory() as d:
            src = Path(d) / model_dir_name
            if src.is_dir():                       # staged beside, then swapped in: never half-written
                best_model = out / "best_model"
                tmp = out / ".best_model.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp)
                (tmp / "search_space.yaml").write_text(spec.canonical_yaml())
                shutil.rmtree(best_model, ignore_errors=True)
                tmp.replace(best_model)
    return table, best, best_model


def run_search(spec: SearchSpec, out: "str | Path", *, address: Optional[str] = None, resume: bool = False,
               warm_start: Optional[str] = None, tracking_uri: Optional[str] = None, track: bool = True,
               register: Optional[str] = None, console=None, num_cpus: Optional[int] = None) -> SearchOutcome:
    """Run (or ``resume``) a search and write its results to ``out``.

    ``warm_start``: a result directory or the MLflow run id of an earlier search (the trials its
    TPE learned from seed this one's; see ``history.read_history``). ``register``: a model name;
    the best model becomes a new version with alias ``challenger``. ``track=False`` skips MLflow entirely. Raises SearchError before anything
    starts when the output directory, the warm-start source or the resources do not fit.
    """
    import ray
    from ray import tune

    from .cluster import available, check_resources, connect
    from .callbacks import SearchCallback, SearchContext, activate
    from .tune_trainable import MODEL_DIR, trainable

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")                 # verbose=0 then means quiet
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    out = Path(out).resolve()
    tune_dir = out / TUNE_DIR
    meta_path = out / META
    meta = {}
    if resume:
        if not (tune_dir / "tuner.pkl").is_file() or not meta_path.is_file():
            raise SearchError(f"--resume: {out} holds no interrupted search (no {TUNE_DIR}/tuner.pkl)")
        meta = json.loads(meta_path.read_text())
        if meta.get("spec_sha256") != spec.sha256:
            raise SearchError(f"--resume: {out} was searched with a different spec (sha256 {meta.get('spec_sha256', '?')[:12]} "
                              f"!= {spec.sha256[:12]}); resume with the same YAML and --set values")
        if warm_start:
            raise SearchError("--resume continues a search with its own warm start; do not pass --warm-start again")
    elif tune_dir.exists():
        raise SearchError(f"{out} already holds a search; pass --resume to continue it or choose another --out")

    history = _resolve_history(warm_start, tracking_uri) if warm_start else None
    started_ray = connect(address, num_cpus)
    t0 = time.perf_counter()
    tracker = None
    try:
        fit = check_resources(spec, available())
        concurrency = min(spec.budget.max_concurrent or fit, fit)
        out.mkdir(parents=True, exist_ok=True)
        if track and (not resume or meta.get("mlflow_run_id")):
            from ..registry.tracking import SearchTracker
            # a resumed search keeps logging to the store and parent run it started with
            tracker = SearchTracker.start(spec, tracking_uri or meta.get("tracking_uri"), run_id=meta.get("mlflow_run_id"),
                                          tags={"autounfold.warm_start": warm_start or ""})
        if not resume:
            (out / "spec.yaml").write_text(spec.canonical_yaml())
            meta = {"spec_name": spec.name, "spec_sha256": spec.sha256, "origin": spec.origin,
                    "mlflow_run_id": tracker.run_id if tracker else None,
                    "tracking_uri": tracker.uri if tracker else None, "warm_start": warm_start,
                    "address": address, "concurrency": concurrency, "started": time.time()}
        meta_path.write_text(json.dumps(meta, indent=2))

        fn = tune.with_resources(tune.with_parameters(trainable, spec_yaml=spec.canonical_yaml()),
                                 {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        done_before = 0
        if resume:
            tuner = tune.Tuner.restore(str(tune_dir), trainable=fn, resume_unfinished=True, resume_errored=True)
            warm = meta.get("warm_start_counts", {"inserted": 0, "dropped": 0})
            try:
                done_before = sum(1 for r in tuner.get_results() if r.metrics.get("done"))
            except Exception:
                done_before = 0
        else:
            searcher, warm = _make_searcher(spec, history)
            meta["warm_start_counts"] = warm
            meta_path.write_text(json.dumps(meta, indent=2))
            from ray.tune.search import ConcurrencyLimiter
            tuner = tune.Tuner(
                fn,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency), scheduler=_scheduler(spec),
                    num_samples=spec.budget.num_samples, metric=METRIC, mode=spec.objective.mode,
                    time_budget_s=spec.budget.time_budget_s, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(out), verbose=0, callbacks=[SearchCallback()],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                    failure_config=tune.FailureConfig(max_failures=1)))
        if console is not None:
            console.print(f"search {spec.name}: {spec.budget.num_samples} trials ({spec.budget.algorithm}), "
                          f"{concurrency} at a time, sha256 {spec.sha256[:12]}"
                          + (f", warm start: {warm['inserted']} earlier trials ({warm['dropped']} dropped)"
                             if warm_start or warm.get("inserted") else "")
                          + (f", MLflow run {tracker.run_id} at {tracker.uri}" if tracker else ""), highlight=False)
        activate(SearchContext(spec, tracker, console, spec.budget.num_samples, done_before))
        try:
            grid = tuner.fit()
        finally:
            activate(None)
        seconds = time.perf_counter() - t0

        table, best, best_model = _write_results(grid, spec, out, MODEL_DIR)
        counts = table.status.value_counts().to_dict()
        interrupted = bool(counts.get("unfinished")) or (len(table) < spec.budget.num_samples
                                                          and spec.budget.time_budget_s is None)
        summary = {"interrupted": interrupted, "spec_name": spec.name, "spec_sha256": spec.sha256, "num_trials": int(len(table)),
                   "counts": {k: int(v) for k, v in counts.items()}, "seconds": seconds,
                   "concurrency": concurrency, "warm_start": warm_start, "warm_start_counts": warm,
                   "best": None if best is None else {k: (v.item() if hasattr(v, "item") else v)
                                                      for k, v in best.drop(labels=["params"]).items()},
                   "best_params": None if best is None else json.loads(best.params),
                   "mlflow_run_id": tracker.run_id if tracker else None,
                   "tracking_uri": tracker.uri if tracker else None}
        registered = None
        if tracker is not None and register and best_model is not None and not interrupted:
            from ..registry.models import register_model
            child = tracker.child_run(best.trial_id) or tracker.run_id
            registered = register_model(register, best_model, spec, child, tracker.run_id,
                                        {"val_score": float(best.val_score), "objective": float(best.objective)},
                                        tracking_uri=tracker.uri)
            summary["registered"] = registered
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if tracker is not None:
            if interrupted:
                tracker.finish(out, summary, status="KILLED")
            else:
                tracker.finish(out, summary)
        return SearchOutcome(out, table, summary, best_model, registered, tracker.run_id if tracker else None)
    except BaseException:
        if tracker is not None:
            try:
                tracker.client.set_terminated(tracker.run_id, "KILLED")
            except Exception:
                pass
        raise
    finally:
        if started_ray:
            ray.shutdown()

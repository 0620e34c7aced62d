"""``run_search``: a search spec -> Ray Tune (``searchers.make_searcher``: TPE, random or Optuna's TPE, a concurrency
limit, optional ASHA) -> trial table, leaderboard, Pareto front and the best model. It knows nothing
of MLflow: a ``tracker`` (``registry.SearchTracker`` when ``autounfold.ops.search`` runs it) is told
about every trial; registering the best model is the caller's business.

Result directory (``out``)::

    search.json         what ran: spec sha256, the tracker's state (run id, URI), warm start, timings
    search_space.yaml   the canonical search-space YAML (its sha256 is in every row of trials.parquet)
    tune/               Ray Tune's experiment (checkpoints; what --resume continues: Tune restores the
                        trials, the searcher is rebuilt from them and trial_rows.jsonl, see resume.py)
    trial_rows.jsonl    the row of every trial as it ended (fsynced: survives a SIGKILL)
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
from ..spaces.spec import SearchSpec, write_space_file
from . import results as R
from .history import TRIALS_FILE, History
from .searchers import make_searcher

log = logging.getLogger(__name__)

TUNE_DIR = "tune"
META = "search.json"
ROWS_LOG = "trial_rows.jsonl"
SUMMARY = "summary.json"
METRIC = "objective"


@dataclass
class SearchOutcome:
    out_dir: Path
    table: "object"                     # pandas DataFrame, best first
    summary: dict
    best_model: Optional[Path]
    registered: Optional[dict] = None   # set by the caller that registers (autounfold.ops.search)
    run_id: Optional[str] = None        # the tracker's run id, when a tracker was given


def resume_meta(out: "str | Path", spec: SearchSpec) -> dict:
    """The ``search.json`` of an interrupted search in ``out`` that ``spec`` may resume; SearchError
    when there is none or it was searched with a different spec."""
    out = Path(out).resolve()
    meta_path = out / META
    if not (out / TUNE_DIR / "tuner.pkl").is_file() or not meta_path.is_file():
        raise SearchError(f"--resume: {out} holds no interrupted search (no {TUNE_DIR}/tuner.pkl)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise SearchError(f"--resume: {meta_path} is unreadable ({err})") from None
    if meta.get("spec_sha256") != spec.sha256:
        raise SearchError(f"--resume: {out} was searched with a different spec (sha256 {str(meta.get('spec_sha256', '?'))[:12]} "
                          f"!= {spec.sha256[:12]}); resume with the same YAML and --set values")
    return meta


def _scheduler(spec: SearchSpec):
    a = spec.budget.asha
    if a is None:
        return None
    from ray.tune.schedulers import ASHAScheduler
    t = spec.base_config().training
    rounds = t.steps // t.validate_every + 2           # validation rounds + the final report
    return ASHAScheduler(time_attr="training_iteration", max_t=max(rounds, a.grace_period + 1),
                         grace_period=a.grace_period, reduction_factor=a.reduction_factor)


def _trial_id_of_dir(name: str, known) -> str:
    """The trial id of a result that carries no metrics, from its directory name: a known id inside
    Tune's name for it (``<trainable>_<id>_<tag>_<date>``), or the name when none matches. Without
    this a trial the callback saw end, whose result Tune's state saved before its first report,
    would be tabled twice: once under its id and once under its directory's name."""
    if name in known:
        return name
    return next((tid for tid in known if f"_{tid}_" in f"_{name}_"), name)


def _write_results(grid, rows_by_trial: dict, spec: SearchSpec, out: Path, model_dir_name: str):
    """Trial table (Parquet), leaderboard, Pareto plot and the best trial's model.

    Rows come from ``rows_by_trial`` (made by the callback as each trial ended, the one producer);
    a trial whose end the callback did not see (unfinished, or ended while Ctrl+C stopped the
    search) gets its row from its last reported result through the same ``results.trial_row``; if
    it did end, that row goes to the rows log too, so that a resume knows the trial as ended."""
    from .callbacks import append_row
    results = list(grid)
    # the trial ids behind Tune's directory names: from every listing with metrics, else a known id
    # (the callback's trials) inside the name
    named = {Path(r.path).name: r.metrics["trial_id"] for r in results if (r.metrics or {}).get("trial_id")}
    known = set(rows_by_trial) | set(named.values())
    latest, checkpoints = {}, {}

    def iteration(res):
        return (res.metrics or {}).get("training_iteration", 0)
    for res in results:
        name = Path(res.path).name
        trial_id = (res.metrics or {}).get("trial_id") or named.get(name) or _trial_id_of_dir(name, known)
        # one trial listed twice by a state saved mid-interrupt: its furthest listing, and a checkpoint
        # from any listing (the furthest listing's own where it has one)
        if trial_id not in latest or iteration(res) > iteration(latest[trial_id]):
            latest[trial_id] = res
        if res.checkpoint is not None and (trial_id not in checkpoints or latest[trial_id] is res):
            checkpoints[trial_id] = res.checkpoint
    rows = []
    for trial_id, res in latest.items():
        row = rows_by_trial.get(trial_id)
        if row is None:
            m = res.metrics or {}
            params = spec.flatten(res.config) if res.config else {}
            row = R.trial_row(trial_id, params, m, iteration(res), res.error, spec)
            if row["status"] in R.ENDED:
                append_row(out / ROWS_LOG, row)
        rows.append(row)
    # a trial that ended after Tune's last saved state before a crash: its row survives in the log
    rows += [row for tid, row in rows_by_trial.items() if tid not in latest]
    table = R.trial_table(rows, spec.objective)
    R.write_table(table, out / TRIALS_FILE)
    (out / "leaderboard.md").write_text(R.leaderboard_markdown(R.leaderboard(table)))
    R.plot_pareto(table, out / "pareto.png", f"{spec.name}: score vs cost ({len(table)} trials)")
    best = R.best_row(table, spec.objective)
    best_model = None
    if best is not None and best.trial_id in checkpoints:
        with checkpoints[best.trial_id].as_directory() as d:
            src = Path(d) / model_dir_name
            if src.is_dir():                       # staged beside, then swapped in: never half-written
                best_model = out / "best_model"
                tmp = out / ".best_model.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp)
                write_space_file(spec, tmp)
                old = out / ".best_model.old"
                shutil.rmtree(old, ignore_errors=True)
                if best_model.exists():
                    best_model.replace(old)
                tmp.replace(best_model)
                shutil.rmtree(old, ignore_errors=True)
    return table, best, best_model


def run_search(spec: SearchSpec, out: "str | Path", *, address: Optional[str] = None, resume: bool = False,
               history: Optional[History] = None, warm_start: Optional[str] = None, tracker=None, console=None,
               num_cpus: Optional[int] = None) -> SearchOutcome:
    """Run (or ``resume``) a search and write its results to ``out``.

    ``history``: the trials of an earlier search (``history.read_history``) that seed TPE;
    ``warm_start`` is only its label for the records. ``tracker``: an object with ``run_id``,
    ``uri``, ``trial_result(trial_id, params, metrics)`` and ``trial_complete(trial_id, params, row)``
    (``registry.SearchTracker``), told about every trial from the driver; the caller finishes it.
    Raises SearchError before anything starts when the output directory or the resources do not fit.
    """
    import ray
    from ray import tune

    from . import atomic_sync, resume as resume_state
    from .cluster import available, check_resources, connect
    from .callbacks import SearchCallback, SearchContext, activate, read_rows
    from .tune_trainable import MODEL_DIR, trainable

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")                 # verbose=0 then means quiet
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # save Tune's experiment state at every step (default: every 10 s or more), so that a killed
    # driver loses no trial that had ended; the state is small (a row per trial, the searcher)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    if not atomic_sync.install():
        log.warning("this Ray has no ray.train._internal.storage._upload_to_fs_path: Tune's experiment state is "
                    "synced non-atomically, and a driver killed during a sync may leave it unresumable")
    if not resume_state.install():
        log.warning("this Ray has no TuneController.resume: --resume restores the searcher as saved, which may "
                    "disagree with the trials after a crash")
    out = Path(out).resolve()
    tune_dir = out / TUNE_DIR
    meta_path = out / META
    if resume:
        meta = resume_meta(out, spec)
        if history is not None:
            raise SearchError("--resume continues a search with its own warm start; do not pass --warm-start again")
    elif tune_dir.exists():
        raise SearchError(f"{out} already holds a search; pass --resume to continue it or choose another --out")

    started_ray = connect(address, num_cpus)
    t0 = time.perf_counter()
    try:
        fit = check_resources(spec, available())
        concurrency = min(spec.budget.max_concurrent or fit, fit)
        out.mkdir(parents=True, exist_ok=True)
        tracking = {"run_id": tracker.run_id, "uri": tracker.uri} if tracker is not None else None
        if not resume:
            write_space_file(spec, out)
            meta = {"spec_name": spec.name, "spec_sha256": spec.sha256, "origin": spec.origin, "tracking": tracking,
                    "warm_start": warm_start, "address": address, "concurrency": concurrency, "started": time.time()}
        elif tracking is not None:
            meta["tracking"] = tracking
        meta_path.write_text(json.dumps(meta, indent=2))

        fn = tune.with_resources(tune.with_parameters(trainable, spec_yaml=spec.canonical_yaml()),
                                 {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        # trials that ended in earlier sessions (an errored one is run again: resume_errored)
        logged = read_rows(out / ROWS_LOG) if resume else {}
        ended = {t: r for t, r in logged.items() if r["status"] in R.ENDED}
        rebuild = None
        if resume:
            resume_state.set_aside_unreadable_states(tune_dir)
            tuner = tune.Tuner.restore(str(tune_dir), trainable=fn, resume_unfinished=True, resume_errored=True)
            warm = meta.get("warm_start_counts", {"inserted": 0, "dropped": 0})
            # Tune restores the searcher from its own files, which a crash may leave out of step with
            # the trials: rebuilt from the recorded trials as Tune restores them (resume.py)
            rebuild = resume_state.ResumeContext(spec, logged, int(warm.get("inserted", 0)))
        else:
            searcher, warm = make_searcher(spec, history)
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
                             if history is not None or warm.get("inserted") else "")
                          + (f", MLflow run {tracker.run_id} at {tracker.uri}" if tracker is not None else ""),
                          highlight=False)
        ctx = SearchContext(spec, tracker, console, spec.budget.num_samples, len(ended), rows=ended,
                            rows_log=out / ROWS_LOG)
        activate(ctx)
        resume_state.activate(rebuild)
        try:
            grid = tuner.fit()
        finally:
            activate(None)
            resume_state.activate(None)
        seconds = time.perf_counter() - t0

        table, best, best_model = _write_results(grid, ctx.rows, spec, out, MODEL_DIR)
        counts = table.status.value_counts().to_dict()
        interrupted = bool(counts.get("unfinished")) or (len(table) < spec.budget.num_samples
                                                          and spec.budget.time_budget_s is None)
        summary = {"interrupted": interrupted, "spec_name": spec.name, "spec_sha256": spec.sha256, "num_trials": int(len(table)),
                   "counts": {k: int(v) for k, v in counts.items()}, "seconds": seconds,
                   "concurrency": concurrency, "warm_start": warm_start or meta.get("warm_start"),
                   "nodes_used": int(table.node_id[table.node_id != ""].nunique()) if "node_id" in table else 0,
                   "restored_trials": int(table.restored.sum()) if "restored" in table else 0,
                   "warm_start_counts": warm,
                   "best": None if best is None else {k: (v.item() if hasattr(v, "item") else v)
                                                      for k, v in best.drop(labels=["params"]).items()},
                   "best_params": None if best is None else json.loads(best.params),
                   "tracking": tracking, "resume": None if rebuild is None else rebuild.report}
        (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
        return SearchOutcome(out, table, summary, best_model, None, tracker.run_id if tracker is not None else None)
    finally:
        if started_ray:
            ray.shutdown()

"""A search as an operation: spec (a file or a registered version's space) -> ``search.run_search``
with MLflow tracking -> the best model registered as ``challenger`` with its drift baseline.

``search.run_search`` knows nothing of MLflow; this module wires the registry to it. Every
function here is what ``autounfold search`` runs, with the same validation, callable from Python.
"""
from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path
from typing import List, Optional

import yaml

from ..errors import SearchError, brief
from ..search.history import TRIALS_FILE, History, read_history
from ..search.runner import SUMMARY, SearchOutcome, resume_meta, run_search
from ..spaces.spec import SPACE_FILE, SearchSpec, load_spec

BASELINE_FILE = "baseline.pt"


def load_search_spec(source: str, overrides: Optional[List[str]] = None,
                     tracking_uri: Optional[str] = None) -> SearchSpec:
    """A search-space YAML path, or ``models:/NAME/VERSION`` (the space that version was found with),
    validated with ``overrides`` applied."""
    if not str(source).startswith("models:/"):
        return load_spec(source, overrides)
    from ..registry import download_model
    with tempfile.TemporaryDirectory() as tmp:
        local = download_model(source, tmp, tracking_uri) / SPACE_FILE
        if not local.is_file():
            raise SearchError(f"{source}: this model version carries no {SPACE_FILE}")
        return load_spec(local, overrides, origin=f"{source} {SPACE_FILE}")


def resolve_history(warm_start: str, tracking_uri: Optional[str] = None) -> History:
    """The trials of an earlier search: its result directory, or the MLflow run id of a search
    (its ``trials.parquet`` artifact)."""
    p = Path(warm_start)
    if p.exists():
        return read_history(p)
    if not re.fullmatch(r"[0-9a-f]{32}", warm_start):
        raise SearchError(f"warm start {warm_start!r}: no such result directory (nor an MLflow run id: 32 hex digits)")
    from ..registry.tracking import mlflow_client, mlflow_errors
    client, uri = mlflow_client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(warm_start, TRIALS_FILE, tmp)
        except mlflow_errors() as err:      # a missing run or artifact, an unreachable server
            raise SearchError(f"warm start {warm_start!r}: neither a result directory nor the MLflow run id of a "
                              f"search in {uri} ({brief(err)})") from None
        return read_history(Path(local))


def drift_baseline(model_dir: Path) -> Optional[bytes]:
    """The drift monitor's baseline of a model whose problem draws channels (training-distribution
    covariance, learned parameters, gradient norm), serialised; None for other problems."""
    import torch

    from ..artifacts import load
    from ..monitoring.monitor import compute_baseline
    model = load(model_dir)
    if not model.problem.is_monitored():
        return None
    buf = io.BytesIO()
    torch.save(compute_baseline(model).to_state(), buf)
    return buf.getvalue()


def register_best(outcome: SearchOutcome, spec: SearchSpec, tracker, name: str) -> dict:
    """Register ``outcome``'s best model (it carries its search space) as a new version of ``name``
    with alias ``challenger``, tags naming the search, and the drift baseline."""
    from ..registry import register_model

    best = outcome.summary["best"]
    cfg = yaml.safe_load((outcome.best_model / "config.yaml").read_text())
    problem = cfg.get("problem", {})
    tags = {"autounfold.problem": str(problem.get("name", "")),
            "autounfold.channel_model": str((problem.get("channel") or {}).get("model", "")),
            "autounfold.spec_name": spec.name, "autounfold.spec_sha256": spec.sha256,
            "autounfold.search_run_id": tracker.run_id, "autounfold.trial_id": str(best["trial_id"]),
            "autounfold.metric.val_score": f"{float(best['val_score']):.6g}",
            "autounfold.metric.objective": f"{float(best['objective']):.6g}"}
    extra = {}
    baseline = drift_baseline(outcome.best_model)
    if baseline is not None:
        extra[BASELINE_FILE] = baseline
    run_id = tracker.child_run(best["trial_id"]) or tracker.run_id
    tags["autounfold.trial_run_id"] = run_id
    return register_model(name, outcome.best_model, run_id, tags, tracking_uri=tracker.uri, extra_files=extra)


def search(spec: SearchSpec, out: "str | Path", *, address: Optional[str] = None, resume: bool = False,
           warm_start: Optional[str] = None, tracking_uri: Optional[str] = None, track: bool = True,
           register: Optional[str] = None, console=None, num_cpus: Optional[int] = None) -> SearchOutcome:
    """Run (or resume) a search with MLflow tracking and register its best model.

    ``warm_start``: a result directory or the MLflow run id of an earlier search. ``register``: a
    model name (None: nothing is registered). A resumed search keeps logging to the run it started
    with, and registers nothing again when its best trial is the one already registered.
    """
    out = Path(out).resolve()
    meta = {}
    if resume:
        meta = resume_meta(out, spec)
        if warm_start:
            raise SearchError("--resume continues a search with its own warm start; do not pass --warm-start again")
    history = resolve_history(warm_start, tracking_uri) if warm_start else None
    tracker = None
    # search.json of the previous version: mlflow_run_id / tracking_uri at the top level
    tracking = meta.get("tracking") or {"run_id": meta.get("mlflow_run_id"), "uri": meta.get("tracking_uri")}
    if track and (not resume or tracking.get("run_id")):
        from ..registry import SearchTracker
        tracker = SearchTracker.start(spec, tracking_uri or tracking.get("uri"), run_id=tracking.get("run_id"),
                                      tags={"autounfold.warm_start": warm_start or ""})
    try:
        outcome = run_search(spec, out, address=address, resume=resume, history=history, warm_start=warm_start,
                             tracker=tracker, console=console, num_cpus=num_cpus)
        summary = outcome.summary
        best = summary.get("best") or {}
        if tracker is not None and register and outcome.best_model is not None and not summary["interrupted"]:
            # the store may be coming back from an outage: the trials' runs first, then the version
            tracker.wait_flushed()
            # idempotent: a version of this search's best trial may exist already (an earlier run of
            # this search registered it, maybe just before a crash): then nothing new is registered
            from ..registry import find_version
            same = {"autounfold.search_run_id": tracker.run_id, "autounfold.trial_id": str(best.get("trial_id"))}
            outcome.registered = find_version(tracker.client, tracker.uri, register, same) or \
                register_best(outcome, spec, tracker, register)
            summary["registered"] = outcome.registered
            (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
        if tracker is not None:
            if not summary["interrupted"]:
                tracker.close_open_children(dict(zip(outcome.table.trial_id, outcome.table.status)))
            tracker.finish(out, summary, status="KILLED" if summary["interrupted"] else "FINISHED")
        return outcome
    except BaseException:
        if tracker is not None:
            tracker.abort()
        raise


DEMO_SPEC = Path(__file__).resolve().parent.parent.parent / "search_spaces" / "auto_pgd.yaml"


def demo_search(out: "str | Path", trials: int = 14, steps: int = 200, tracking_uri: Optional[str] = None, console=None):
    """The few-minute tour: the shipped Auto-PGD space, ``trials`` trials of ``steps`` steps, two at
    a time, the best registered as ``auto_pgd_demo@challenger``. An earlier demo in ``out`` is
    replaced; any other existing ``out`` is refused (never delete what this program did not write).
    Returns ``(spec, outcome)``."""
    import shutil

    spec_file = DEMO_SPEC if DEMO_SPEC.is_file() else Path("search_spaces/auto_pgd.yaml")
    spec = load_spec(spec_file, [f"budget.num_samples={trials}", "budget.n_initial_points=8",
                                 "budget.max_concurrent=2", f"base.training.steps={steps}"])
    out = Path(out)
    if out.exists():
        try:
            earlier = json.loads((out / "search.json").read_text()).get("spec_name")
        except (OSError, ValueError):
            earlier = None
        if earlier != spec.name:
            raise SearchError(f"{out} exists and is not an earlier demo search; choose another --out")
        shutil.rmtree(out)
    if console is not None:
        console.print(f"Searching {trials} Auto-PGD configurations ({steps} training steps each, 2 at a time) ...")
    return spec, search(spec, out, tracking_uri=tracking_uri, register="auto_pgd_demo", console=console)

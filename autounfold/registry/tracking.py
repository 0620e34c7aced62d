"""Search tracking in MLflow.

Only the driver talks to MLflow: trials report to Ray Tune, a Tune callback on the driver turns
those reports into child runs. One writer means parallel trials cannot lock a sqlite store, and a
trial never waits on the tracking server.

Embedded default: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts in ``<cwd>/mlruns/artifacts``.
``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` (e.g. ``http://127.0.0.1:5000``) overrides it.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Dict, Optional

from ..errors import RegistryError, brief

log = logging.getLogger(__name__)

DEFAULT_DIR = "mlruns"


def _quiet_env() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # fail fast when a tracking server is down: the tracker queues and replays (see SearchTracker)
    # instead of blocking the search for minutes inside MLflow's own retry loop
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def mlflow_errors() -> tuple:
    """What a tracking store or registry raises when it refuses or cannot be reached: MLflow's own
    exception (server answers, SQL store errors) and OSError (connection and artifact I/O)."""
    from mlflow.exceptions import MlflowException
    return (MlflowException, OSError)


def default_tracking_uri(root: "str | Path | None" = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite store under ``root`` (default: the working dir)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    base = Path(root or Path.cwd()) / DEFAULT_DIR
    base.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def _schemes() -> list:
    """The URI schemes MLflow has a tracking store for here (its own and installed plugins')."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
        return sorted(k for k in _tracking_store_registry._registry if k)
    except (ImportError, AttributeError):        # a private table: if it moves, let MLflow judge
        return []


def check_tracking_uri(uri: str) -> None:
    """RegistryError for a tracking URI MLflow cannot use (an unknown scheme), or an HTTP server
    that does not answer (fail in seconds, not after MLflow's retries)."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    known = _schemes()
    if scheme and known and scheme not in known:
        raise RegistryError(f"tracking URI {uri!r}: unsupported scheme {scheme!r}; use one of "
                            f"{', '.join(s + '://' for s in known)} or a local path")
    if scheme in ("http", "https"):
        from ..net import check_reachable
        check_reachable(uri, "the MLflow tracking server", 5000, RegistryError)


def mlflow_client(tracking_uri: Optional[str] = None):
    _quiet_env()
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    check_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def experiment_id(client, uri: str, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):            # keep artifacts beside the embedded store
        db = Path(uri[len("sqlite:///"):])
        artifact_location = (db.parent / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


class SearchTracker:
    """Parent run of one search and the child runs of its trials.

    ``SearchTracker.start(spec, ...)`` creates (or, on resume, reopens) the parent run;
    ``trial_result`` / ``trial_complete`` log one trial; ``finish`` logs the search's artifacts.

    A tracking failure never stops the search: the operation is queued, with everything after it,
    and the queue is replayed in order as soon as the store answers again (at the latest in
    ``finish``, which retries for ``flush_timeout_s``). A child run is created once and remembered,
    so a replay does not duplicate runs. What is still queued when ``finish`` gives up is reported
    in ``pending``.
    """

    def __init__(self, client, uri: str, experiment_id: str, run_id: str, flush_timeout_s: float = 120.0):
        self.client, self.uri, self.experiment_id, self.run_id = client, uri, experiment_id, run_id
        self.children: Dict[str, str] = {}
        self._last_step: Dict[str, int] = {}
        self.pending: list = []
        self._params_logged: set = set()
        self.flush_timeout_s = flush_timeout_s
        self._outage_logged = False

    @classmethod
    def start(cls, spec, tracking_uri: Optional[str] = None, experiment: Optional[str] = None,
              run_id: Optional[str] = None, tags: Optional[dict] = None) -> "SearchTracker":
        client, uri = mlflow_client(tracking_uri)
        try:
            exp_id = experiment_id(client, uri, experiment or f"autounfold-{spec.name}")
            if run_id is not None:
                client.update_run(run_id, status="RUNNING")
                self = cls(client, uri, exp_id, run_id)
                self._load_children()
                return self
            run = client.create_run(exp_id, run_name=f"search-{spec.name}", tags={
                "autounfold.kind": "search", "autounfold.spec_name": spec.name,
                "autounfold.spec_sha256": spec.sha256, **(tags or {})})
        except mlflow_errors() as err:
            raise RegistryError(f"MLflow at {uri}: cannot start the search run ({type(err).__name__}: {err})") from None
        self = cls(client, uri, exp_id, run.info.run_id)
        self._safe(self._log_spec, spec)
        return self

    def _log_spec(self, spec) -> None:
        import tempfile
        c, rid = self.client, self.run_id
        c.log_param(rid, "spec_sha256", spec.sha256)
        c.log_param(rid, "search_seed", spec.seed)
        c.log_param(rid, "num_samples", spec.budget.num_samples)
        c.log_param(rid, "algorithm", spec.budget.algorithm)
        from ..spaces.spec import write_space_file
        with tempfile.TemporaryDirectory() as tmp:
            c.log_artifact(rid, str(write_space_file(spec, tmp)))

    def _load_children(self) -> None:
        runs = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'",
                                       max_results=10000)
        for r in runs:
            tid = r.data.tags.get("autounfold.trial_id")
            if tid:
                self.children[tid] = r.info.run_id

    def _safe(self, fn, *args) -> None:
        self.pending.append((fn, args))
        self._flush()

    def _flush(self) -> bool:
        """Replay queued operations in order; stop at the first failure (True when the queue is empty)."""
        while self.pending:
            fn, args = self.pending[0]
            try:
                fn(*args)
            except mlflow_errors() as err:  # a tracking outage must never take the search down
                if not self._outage_logged:
                    log.warning("MLflow at %s failed (%s); queuing tracking until it answers, the search goes on",
                                self.uri, brief(err))
                    self._outage_logged = True
                return False
            self.pending.pop(0)
            if self._outage_logged and not self.pending:
                log.warning("MLflow at %s answers again; queued tracking replayed", self.uri)
                self._outage_logged = False
        return True

    # -- trials ------------------------------------------------------------------------------
    def _child(self, trial_id: str, params: dict) -> str:
        if trial_id not in self.children:
            run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_id}", tags={
                "mlflow.parentRunId": self.run_id, "autounfold.kind": "trial", "autounfold.trial_id": trial_id})
            self.children[trial_id] = run.info.run_id          # remembered at once: a replay never duplicates it
        rid = self.children[trial_id]
        if rid not in self._params_logged:
            from mlflow.entities import Param
            batch = [Param(k[:250], json.dumps(v) if not isinstance(v, str) else v[:6000]) for k, v in params.items()]
            for i in range(0, len(batch), 100):
                self.client.log_batch(rid, params=batch[i:i + 100])
            self._params_logged.add(rid)
        return rid

    def trial_result(self, trial_id: str, params: dict, metrics: dict) -> None:
        self._safe(self._trial_result, trial_id, params, metrics)

    def _trial_result(self, trial_id, params, metrics) -> None:
        from mlflow.entities import Metric
        import time
        rid = self._child(trial_id, params)
        step = int(metrics.get("step", self._last_step.get(trial_id, 0)))
        self._last_step[trial_id] = step
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
                 and k not in ("step", "done", "training_iteration", "timestamp", "time_this_iter_s",
                               "time_total_s", "pid", "iterations_since_restore", "time_since_restore")]
        if batch:
            self.client.log_batch(rid, metrics=batch)

    def trial_complete(self, trial_id: str, params: dict, row: dict) -> None:
        self._safe(self._trial_complete, trial_id, params, row)

    def _trial_complete(self, trial_id, params, row) -> None:
        rid = self._child(trial_id, params)
        for key in ("status", "reason", "layer", "shard"):
            if row.get(key):
                self.client.set_tag(rid, f"autounfold.{key}", str(row[key])[:5000])
        self.client.set_terminated(rid, "FAILED" if row.get("status") in ("failed", "error") else "FINISHED")

    # -- the search --------------------------------------------------------------------------
    def finish(self, out_dir: Path, summary: dict, status: str = "FINISHED") -> None:
        def _finish():
            c, rid = self.client, self.run_id
            for name in ("trials.parquet", "leaderboard.md", "pareto.png", "summary.json"):
                p = out_dir / name
                if p.is_file():
                    c.log_artifact(rid, str(p))
            best = summary.get("best") or {}
            for k in ("objective", "val_score", "latency_ms", "num_layers"):
                v = best.get(k)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    c.log_metric(rid, f"best_{k}", float(v))
            c.log_metric(rid, "trials_ok", float(summary.get("counts", {}).get("ok", 0)))
            c.log_metric(rid, "trials_total", float(summary.get("num_trials", 0)))
            if best.get("trial_id"):
                c.set_tag(rid, "autounfold.best_trial", best["trial_id"])
            c.set_terminated(rid, status)
        self._safe(_finish)
        if not self.wait_flushed():
            log.warning("MLflow at %s: %d tracking operations could not be written (the results are in %s)",
                        self.uri, len(self.pending), out_dir)

    def wait_flushed(self) -> bool:
        """Replay the queue, retrying while the store is away, for up to ``flush_timeout_s``;
        True when everything queued has been written."""
        import time
        deadline = time.monotonic() + self.flush_timeout_s
        while not self._flush() and time.monotonic() < deadline:
            time.sleep(2.0)
        return not self.pending

    def close_open_children(self, statuses: dict) -> int:
        """Close the child runs a crash left RUNNING: a trial of the final table (``statuses``: trial
        id -> its row's status) gets FINISHED / FAILED like ``trial_complete`` gives, any other run
        KILLED and tagged ``orphaned``. Returns how many were closed."""
        def _close():
            runs = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}' "
                                           "and attributes.status = 'RUNNING'", max_results=10000)
            for r in runs:
                status = statuses.get(r.data.tags.get("autounfold.trial_id"))
                if status is None:
                    self.client.set_tag(r.info.run_id, "autounfold.status", "orphaned")
                    self.client.set_terminated(r.info.run_id, "KILLED")
                else:
                    self.client.set_tag(r.info.run_id, "autounfold.status", status)
                    self.client.set_terminated(r.info.run_id, "FAILED" if status in ("failed", "error") else "FINISHED")
                closed.append(r.info.run_id)
        closed: list = []
        self._safe(_close)
        return len(closed)

    def abort(self) -> None:
        """Mark the search run KILLED after the search raised or was interrupted (best effort: the
        exception that got us here is the one the caller needs to see)."""
        try:
            self.client.set_terminated(self.run_id, "KILLED")
        except mlflow_errors() as err:  # already unwinding another exception: warn only
            log.warning("MLflow at %s: could not mark run %s KILLED (%s)", self.uri, self.run_id, err)

    def child_run(self, trial_id: str) -> Optional[str]:
        return self.children.get(trial_id)

"""The monitor as an operation: a registered version, windows of CSI, MLflow metrics per window,
and on a covariance trigger the warm-started re-search (here, or as a Ray job on a cluster).

``monitoring`` computes the statistics and keeps the event log (pure PyTorch); this module wires
it to the registry and to the re-search. ``autounfold monitor`` is ``run_monitor``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

from pydantic import ValidationError

from ..artifacts import load
from ..config import set_override
from ..errors import ConfigError, InputError, format_validation_error
from ..monitoring import Baseline, EventLog, MonitorConfig, compute_baseline, drifting_windows, monitor_windows
from ..monitoring.monitor import estimates_angular_spread, parse_synthetic
from ..registry import download_model, experiment_id, resolve_version
from .research import research_changes, research_on_drift, submit_research
from .search import BASELINE_FILE

EXPERIMENT = "autounfold-monitoring"


def monitor_config(window: int, settings: Sequence[str] = ()) -> MonitorConfig:
    """``MonitorConfig`` from ``--window`` and ``--set key=value`` settings; one error line per field."""
    data = {}
    for o in settings:
        set_override(data, o)
    try:
        return MonitorConfig(window=window, **data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "monitor --set/--window")) from None


def _windows(net, sources: List[str], cfg: MonitorConfig):
    if len(sources) == 1 and sources[0].startswith("synthetic"):
        return drifting_windows(net, parse_synthetic(sources[0]), cfg.window, cfg.seed)
    if any(s.startswith("synthetic") for s in sources):
        raise ConfigError("--source: a synthetic: source stands alone (give one, without Parquet files)")
    from ..channels.parquet import ParquetSource
    return ParquetSource(sources).windows(cfg.window)


def run_monitor(model: str, sources: List[str], *, window: int = 512, events: Optional[Path] = None,
                research: bool = True, research_trials: int = 16, research_set: Sequence[str] = (),
                settings: Sequence[str] = (), address: Optional[str] = None, tracking_uri: Optional[str] = None,
                console=None, on_window=None) -> dict:
    """Monitor the version ``NAME@ALIAS`` on ``sources`` (CSI Parquet files, or one
    ``synthetic:angular_spread=A->B,windows=N[,at=K]`` or ``synthetic:channel=umi->uma,windows=N[,at=K]``).
    Returns ``{"records", "events", "version"}``.

    ``on_window(record)`` is called after each window (the CLI prints a line). For a problem whose
    angular-spread number is not an estimate (``monitoring.monitor.estimates_angular_spread``: detection) the
    records carry no ``angular_spread_estimate`` and a re-search aims only at the trigger's
    ``research_set``."""
    from mlflow.entities import Metric

    if "@" not in model:
        raise ConfigError(f"--model: expected NAME@ALIAS (got {model!r})")
    name, _alias = model.split("@", 1)
    cfg = monitor_config(window, settings)
    if address and research:                 # fail now, not when a trigger fires windows later
        from ..jobs.client import check_job_server
        check_job_server(address)
    client, uri, mv = resolve_version(f"models:/{model}", tracking_uri)
    ref = f"{name}:v{mv.version}"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = download_model(f"models:/{name}/{mv.version}", tmp, uri)
        net = load(str(model_dir))
        if not net.problem.is_monitored():
            raise InputError(f"models:/{model}: the monitor watches channel statistics; problem "
                             f"{net.problem.name!r} has none it can watch")
        if not net.problem.accepts_csi() and not (len(sources) == 1 and sources[0].startswith("synthetic")):
            raise InputError(f"--source: a {net.problem.name} model takes multi-band channels, which CSI Parquet "
                             "files do not hold; use one synthetic:angular_spread=A->B,windows=N source")
        import torch
        bfile = Path(model_dir) / BASELINE_FILE
        baseline = Baseline.from_state(torch.load(bfile, weights_only=True)) if bfile.is_file() else \
            compute_baseline(net, cfg.baseline_channels, cfg.seed)
        windows = _windows(net, list(sources), cfg)
        log = EventLog(events or Path("runs/monitor") / name / "events.jsonl")
        run = client.create_run(experiment_id(client, uri, EXPERIMENT), run_name=f"monitor-{ref}",
                                tags={"autounfold.kind": "monitor", "autounfold.model": ref})
        rid = run.info.run_id
        spread = estimates_angular_spread(net.problem)

        def window_done(rec):
            client.log_batch(rid, metrics=[Metric(k, float(v), int(time.time() * 1000), rec["window"])
                                           for k, v in rec.items() if isinstance(v, float)])
            if on_window is not None:
                on_window(rec)

        def on_trigger(event):
            if not research:
                return {"skipped": "--no-research"}
            warm = mv.tags.get("autounfold.search_run_id")
            # what the problem names as changed (detection: base.problem.channel.model=uma) first, so that
            # the user's --research-set has the last word
            overrides = [*event.get("research_set", []), *research_set]
            if address:
                changes = research_changes(model_dir, event, research_trials, overrides, spread)
                outcome = submit_research(ref, name, str(mv.version), changes, warm, uri, address, console)
                client.set_tag(rid, "autounfold.triggered_job", outcome["job_id"])
                return outcome
            outcome = research_on_drift(model_dir, name, event, log.path.parent, warm, uri, research_trials,
                                        overrides, console, spread)
            client.set_tag(rid, "autounfold.triggered_search", outcome["search_run_id"] or "")
            return outcome

        try:
            records = monitor_windows(net, windows, cfg, baseline, log, ref, on_trigger, window_done)
        except BaseException:
            client.set_terminated(rid, "FAILED")
            raise
        if log.path.is_file():               # a first run without an alert has written no event yet
            client.log_artifact(rid, str(log.path))
        client.set_terminated(rid, "FINISHED")
    return {"records": records, "events": log.path, "version": str(mv.version)}

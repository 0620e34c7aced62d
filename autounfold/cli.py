"""Command line: ``autounfold train | evaluate | search | benchmark | demo``. Every command has --help."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import AutoUnfoldError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="autounfold: deep unfolding of iterative physical-layer solvers.")
console = Console()


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


def _table(title: str, rows: List[dict], columns: List[tuple]) -> Table:
    t = Table(title=title)
    for head, _, _ in columns:
        t.add_column(head)
    for r in rows:
        t.add_row(*[fmt.format(r[key]) if r.get(key) is not None else "—" for _, key, fmt in columns])
    return t


@app.command()
def train(config: str = typer.Argument(..., help="experiment YAML, or preset:auto_pgd / preset:lista"),
          out: Path = typer.Option(..., "--out", help="model directory to write (config.yaml, weights.pt, meta.json)"),
          set_: List[str] = typer.Option([], "--set", help="override a key, e.g. --set model.num_layers=8"),
          device: str = typer.Option("cpu", help="torch device"),
          quiet: bool = typer.Option(False, help="no progress bar")):
    """Train one unfolded model, evaluate it on the test stream, save it."""
    from . import save
    from .build import build_model
    from .config import load_config
    from .evaluation.metrics import summarize
    from .seeding import generator
    from .training import train as run_training
    try:
        cfg = load_config(config, set_)
        model = build_model(cfg)
        res = run_training(model, cfg.training, seed=cfg.seed, device=device, progress=not quiet)
        problem = model.problem
        test = problem.sample(2048, generator(cfg.seed, "test"), device)
        import torch
        with torch.no_grad():
            metrics = summarize(problem, model.run(test), test, problem.reference(test))
        metrics.update(best_validation_score=res.best_score, best_step=res.best_step, train_seconds=res.seconds)
        save(model.cpu(), out, cfg, metrics)
        (Path(out) / "history.json").write_text(json.dumps(res.history, indent=1))
    except AutoUnfoldError as err:
        _fail(err)
    console.print_json(json.dumps({"model_dir": str(out), **metrics, "layer_parameters": model.scalar_parameters()}))


@app.command()
def evaluate(model_dir: str = typer.Argument(..., help="a model directory (from train or search), or models:/NAME@ALIAS"),
             scenario: List[str] = typer.Option(["nominal"], help="beamforming scenarios: nominal, iid, as5, as40, lowsnr, ntx32, ntx128"),
             batch: int = typer.Option(2048, help="test channels per scenario"),
             seed: int = typer.Option(1, help="seed of the test stream"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results as JSON")):
    """Evaluate a saved model (same learned parameters) against the optimum and classical solvers."""
    import torch
    from . import load
    from .evaluation import baselines
    from .evaluation.benchmark import scenario_problem_config, transfer
    from .evaluation.metrics import summarize
    from .seeding import generator
    rows = []
    try:
        model = load(model_dir)
        cfg = model.config
        for sc in scenario:
            if cfg.problem.name == "beamforming":
                pcfg = scenario_problem_config(cfg.problem, sc)
                m = transfer(model, cfg, pcfg)
            elif sc == "nominal":
                pcfg, m = cfg.problem, model
            else:
                raise AutoUnfoldError(f"scenario {sc!r} applies to beamforming models only")
            problem = m.problem
            test = problem.sample(batch, generator(seed, "evaluate", sc))
            ref = problem.reference(test)
            K = m.num_layers
            with torch.no_grad():
                cands = {f"{cfg.model.layer}-{K} (this model)": m.run(test)}
                if problem.name == "beamforming":
                    cands[f"power iteration-{K}"] = baselines.power_iteration(problem, test, K)
                else:
                    cands[f"ISTA-{K}"] = baselines.ista(problem, test, K).x
                    cands[f"FISTA-{K}"] = baselines.fista(problem, test, K).x
            for name, x in cands.items():
                rows.append({"scenario": sc, "method": name, **summarize(problem, x, test, ref)})
    except AutoUnfoldError as err:
        _fail(err)
    if rows and "pct_of_optimum" in rows[0]:
        cols = [("scenario", "scenario", "{}"), ("method", "method", "{}"), ("SE % of optimum", "pct_of_optimum", "{:.3f}"),
                ("p5 %", "p5_pct", "{:.3f}"), ("feasible", "feasible", "{}")]
    else:
        cols = [("scenario", "scenario", "{}"), ("method", "method", "{}"), ("NMSE dB", "nmse_db", "{:.2f}")]
    console.print(_table(f"evaluation of {model_dir}", rows, cols))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@app.command()
def benchmark(out: Path = typer.Option(Path("results/benchmark"), help="directory for benchmark.json / .md / PNGs"),
              steps: int = typer.Option(400, help="training steps per Auto-PGD model"),
              depths: str = typer.Option("3,5,8,12", help="comma-separated depths"),
              layers: str = typer.Option("step,signed,momentum,hybrid", help="comma-separated layer types"),
              test_batch: int = typer.Option(2048, help="test channels"),
              repeats: int = typer.Option(20, help="latency repetitions"),
              lista_steps: int = typer.Option(1500, help="training steps per LISTA model (0 skips the LISTA table)"),
              lista_large: bool = typer.Option(True, help="also the N=500, M=250 LISTA setting"),
              seed: int = typer.Option(0),
              quiet: bool = typer.Option(False)):
    """Unfolded vs classical on a fixed test set: quality, latency, robustness, LISTA; JSON + Markdown + plots."""
    from .evaluation.benchmark import run_benchmark
    try:
        d = [int(v) for v in depths.split(",") if v.strip()]
        ls = [v.strip() for v in layers.split(",") if v.strip()]
        bad = [v for v in ls if v not in ("step", "signed", "momentum", "hybrid")]
        if bad or not d or min(d) < 1:
            raise AutoUnfoldError(f"--layers takes step, signed, momentum, hybrid (got {bad}); --depths positive integers (got {depths!r})")
        run_benchmark(out, steps=steps, depths=d, layers=ls, test_batch=test_batch, repeats=repeats, seed=seed,
                      lista_steps=lista_steps, lista_large=lista_large, quiet=quiet)
    except ValueError as err:
        _fail(err)
    console.print((out / "benchmark.md").read_text(), markup=False, highlight=False)
    console.print(f"written: {out}/benchmark.json, benchmark.md, se_vs_layer.png, se_vs_latency.png, learned_steps.png")


def _print_search(outcome, spec) -> None:
    from .search.results import leaderboard
    rows = leaderboard(outcome.table, top=10)
    cols = [("#", "rank", "{}"), ("trial", "trial_id", "{}"), ("status", "status", "{}"), ("objective", "objective", "{:.4f}"),
            ("score", "val_score", "{:.4f}"), ("layer", "layer", "{}"), ("K", "num_layers", "{}"),
            ("latency ms", "latency_ms", "{:.2f}")]
    console.print(_table(f"leaderboard: {spec.name} ({outcome.summary['num_trials']} trials, "
                         f"{outcome.summary['seconds']:.0f} s)", rows, cols))
    out = outcome.out_dir
    console.print(f"results: {out}/trials.parquet, leaderboard.md, pareto.png, summary.json"
                  + (", best_model/" if outcome.best_model else ""), highlight=False)
    if outcome.registered:
        r = outcome.registered
        console.print(f"registered {r['name']} version {r['version']} as @{r['alias']}: "
                      f"autounfold.load(\"{r['uri']}\")", highlight=False)
    uri = outcome.summary.get("tracking_uri")
    if uri:
        console.print(f"MLflow: mlflow ui --backend-store-uri {uri}   (search run {outcome.run_id})", highlight=False)


@app.command()
def search(spec_path: str = typer.Argument(..., metavar="SPEC", help="search-space YAML, e.g. search_spaces/auto_pgd.yaml, "
                                                                   "or models:/NAME/VERSION (the space that version was found with)"),
           out: Optional[Path] = typer.Option(None, help="result directory (default runs/search/<spec name>)"),
           set_: List[str] = typer.Option([], "--set", help="override a spec key, e.g. --set budget.num_samples=60"),
           address: Optional[str] = typer.Option(None, help="Ray cluster address; default: start Ray on this machine"),
           resume: bool = typer.Option(False, "--resume", help="continue an interrupted search in --out"),
           warm_start: Optional[str] = typer.Option(None, "--warm-start",
                                                    help="an earlier search: its result directory or MLflow run id"),
           tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default MLFLOW_TRACKING_URI, "
                                                                 "else sqlite under ./mlruns)"),
           track: bool = typer.Option(True, "--track/--no-track", help="log to MLflow"),
           register: Optional[str] = typer.Option(None, help="registered model name (default: the spec name)"),
           no_register: bool = typer.Option(False, "--no-register", help="do not register the best model"),
           cpus: Optional[int] = typer.Option(None, help="CPUs of the embedded Ray (default: all)"),
           dry_run: bool = typer.Option(False, "--dry-run", help="validate the spec, print its space, start nothing")):
    """TPE search over an unfolded model's depth, parameterisation and training recipe on Ray Tune."""
    from .spaces import load_spec
    try:
        if spec_path.startswith("models:/"):
            import tempfile
            from .registry.models import download_model
            with tempfile.TemporaryDirectory() as tmp:
                local = download_model(spec_path, tmp, tracking_uri) / "search_space.yaml"
                if not local.is_file():
                    raise AutoUnfoldError(f"{spec_path}: this model version carries no search_space.yaml")
                spec = load_spec(local, set_)
                spec._origin = f"{spec_path} search_space.yaml" + (" (with --set overrides)" if set_ else "")
        else:
            spec = load_spec(spec_path, set_)
        if dry_run:
            console.print(f"{spec_path}: valid; sha256 {spec.sha256}; {spec.budget.num_samples} trials "
                          f"({spec.budget.algorithm}); dimensions: {', '.join(spec.labels())}", highlight=False)
            return
        from .search import run_search
        outcome = run_search(spec, out or Path("runs/search") / spec.name, address=address, resume=resume,
                             warm_start=warm_start, tracking_uri=tracking_uri, track=track,
                             register=None if no_register or not track else (register or spec.name),
                             console=console, num_cpus=cpus)
    except AutoUnfoldError as err:
        _fail(err)
    _print_search(outcome, spec)
    if outcome.summary.get("interrupted"):
        typer.echo(f"interrupted: {outcome.summary['counts'].get('ok', 0)} of {spec.budget.num_samples} trials finished; "
                   f"continue with: autounfold search {spec_path} --out {outcome.out_dir} --resume"
                   + "".join(f" --set {s}" for s in set_), err=True)
        raise typer.Exit(130)
    if not outcome.summary["counts"].get("ok"):
        typer.echo("error: no trial finished successfully (see the reasons in trials.parquet)", err=True)
        raise typer.Exit(1)


@app.command()
def export(model: str = typer.Argument(..., help="a model directory, or models:/NAME@ALIAS"),
           out: Path = typer.Option(..., "--out", help="file to write, e.g. model.pt (a .json beside it describes the interface)"),
           fmt: str = typer.Option("torchscript", "--format", help="torchscript (real-valued view_as_real inputs/outputs)"),
           tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI for models:/ URIs")):
    """Export a trained model for deployment; the exported module is checked against the eager one."""
    from . import load
    from .deploy import export_torchscript
    try:
        if fmt != "torchscript":
            raise AutoUnfoldError(f"--format: only 'torchscript' is supported (got {fmt!r})")
        path = export_torchscript(load(model, tracking_uri=tracking_uri), out)
    except AutoUnfoldError as err:
        _fail(err)
    console.print(f"wrote {path} and {path}.json: W_real = module(view_as_real(H), noise_var)", highlight=False)


csi_app = typer.Typer(no_args_is_help=True, help="CSI datasets in Parquet: write synthetic CSI, inspect a file.")
app.add_typer(csi_app, name="csi")


@csi_app.command("write")
def csi_write(out: Path = typer.Option(..., "--out", help="Parquet file to write"),
              rows: int = typer.Option(1024, help="number of channel realisations"),
              config: str = typer.Option("preset:auto_pgd", help="experiment YAML whose problem.channel is drawn from"),
              set_: List[str] = typer.Option([], "--set", help="override, e.g. --set problem.channel.angular_spread_deg=40"),
              seed: int = typer.Option(0, help="seed of the drawn channels"),
              cell_id: Optional[str] = typer.Option(None, help="cell id written in every row"),
              start_ms: Optional[int] = typer.Option(None, help="timestamp of the first row (ms since epoch; default now)"),
              interval_ms: int = typer.Option(1, help="milliseconds between rows")):
    """Draw synthetic CSI from a channel model and write it in the autounfold CSI schema."""
    import time
    import numpy as np
    from .build import build_problem
    from .channels.parquet import write_csi
    from .config import load_config
    from .seeding import generator
    try:
        if rows < 1:
            raise AutoUnfoldError(f"--rows must be >= 1 (got {rows})")
        cfg = load_config(config, set_)
        if cfg.problem.name != "beamforming":
            raise AutoUnfoldError("csi write draws MIMO channels: the config's problem must be beamforming")
        problem = build_problem(cfg.problem)
        batch = problem.source.sample(rows, generator(seed, "csi"))
        t0 = start_ms if start_ms is not None else int(time.time() * 1000)
        path = write_csi(out, batch, t0 + interval_ms * np.arange(rows, dtype=np.int64),
                         [cell_id] * rows if cell_id else None, power=problem.power)
    except AutoUnfoldError as err:
        _fail(err)
    console.print(f"wrote {rows} channels ({cfg.problem.channel.model}, {cfg.problem.channel.n_rx} x "
                  f"{cfg.problem.channel.n_tx}) to {path}", highlight=False)


@csi_app.command("inspect")
def csi_inspect(path: Path = typer.Argument(..., help="a CSI Parquet file")):
    """Validate a CSI file and print a JSON summary (rows, shape, SNR range, time span, ids)."""
    from .channels.parquet import inspect_csi
    try:
        summary = inspect_csi(path)
    except AutoUnfoldError as err:
        _fail(err)
    console.print_json(json.dumps(summary))


@app.command()
def promote(name: str = typer.Argument(..., help="registered model name"),
            canary: float = typer.Option(0.05, help="share of the traffic batches sent to the challenger"),
            batches: int = typer.Option(200, help="traffic batches in the canary"),
            batch_size: int = typer.Option(64, help="channels per batch"),
            tolerance: float = typer.Option(0.05, help="promote unless the challenger is worse by more than this many "
                                                       "percentage points of the optimum"),
            source: List[str] = typer.Option([], "--source", help="CSI Parquet file(s) as traffic (default: the "
                                                                 "champion's synthetic channel model)"),
            set_: List[str] = typer.Option([], "--set", help="change the synthetic traffic, e.g. "
                                                              "--set problem.channel.angular_spread_deg=40"),
            seed: int = typer.Option(0, help="seed of the routing and of synthetic traffic"),
            tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")):
    """Canary the 'challenger' version against the 'champion' and move the aliases (or roll back)."""
    from .registry.lifecycle import promote as run_promote
    try:
        traffic = None
        if source and set_:
            raise AutoUnfoldError("--source (recorded CSI) and --set (synthetic traffic) exclude each other")
        if source:
            from .channels.parquet import ParquetSource
            traffic = ParquetSource(source)
        record = run_promote(name, canary=canary, batches=batches, batch_size=batch_size, tolerance_pct=tolerance,
                             source=traffic, traffic_overrides=set_, seed=seed, tracking_uri=tracking_uri,
                             console=console)
    except AutoUnfoldError as err:
        _fail(err)
    console.print_json(json.dumps(record, default=str))


@app.command()
def monitor(model: str = typer.Option(..., "--model", help="NAME@ALIAS in the registry (e.g. auto_pgd@champion)"),
            source: List[str] = typer.Option(..., "--source", help="CSI Parquet file(s), or "
                                             "synthetic:angular_spread=15->40,windows=12"),
            window: int = typer.Option(512, help="channels per window"),
            events: Optional[Path] = typer.Option(None, help="event log (JSON lines; default runs/monitor/NAME/events.jsonl)"),
            research: bool = typer.Option(True, "--research/--no-research", help="run the warm-started re-search on a trigger"),
            research_trials: int = typer.Option(16, help="trials of a triggered re-search"),
            research_set: List[str] = typer.Option([], "--research-set", help="override for the re-search spec, "
                                                   "e.g. base.training.steps=200"),
            set_: List[str] = typer.Option([], "--set", help="monitor setting, e.g. --set covariance_threshold=0.2"),
            address: Optional[str] = typer.Option(None, help="submit a triggered re-search as a Ray job to this "
                                                             "cluster (default: run it in this process)"),
            tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")):
    """Watch CSI windows for drift (covariance shift, shadow metric, parameter drift, gradient norm);
    a covariance shift triggers, once per model version, a warm-started re-search -> new challenger."""
    import tempfile
    import time
    import torch
    from mlflow.entities import Metric
    from . import load
    from .errors import RegistryError
    from .monitoring import Baseline, EventLog, MonitorConfig, compute_baseline, drifting_windows, monitor_windows
    from .monitoring.monitor import parse_synthetic
    from .registry.models import BASELINE_FILE, download_model
    from .registry.tracking import _experiment_id, mlflow_client
    try:
        if "@" not in model:
            raise AutoUnfoldError(f"--model: expected NAME@ALIAS (got {model!r})")
        name, alias = model.split("@", 1)
        data = {}
        from .config import set_override
        for o in set_:
            set_override(data, o)
        try:
            cfg = MonitorConfig(window=window, **data)
        except Exception as err:
            raise AutoUnfoldError(f"--set: {err}") from None
        client, uri = mlflow_client(tracking_uri)
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except Exception:
            raise RegistryError(f"models:/{model}: no such registered model version in {uri}") from None
        ref = f"{name}:v{mv.version}"
        tmp = tempfile.TemporaryDirectory()
        model_dir = download_model(f"models:/{name}/{mv.version}", tmp.name, uri)
        net = load(str(model_dir))
        bfile = Path(model_dir) / BASELINE_FILE
        baseline = Baseline.from_state(torch.load(bfile, weights_only=True)) if bfile.is_file() else \
            compute_baseline(net, cfg.baseline_channels, cfg.seed)
        if len(source) == 1 and source[0].startswith("synthetic"):
            windows = drifting_windows(net, parse_synthetic(source[0]), cfg.window, cfg.seed)
        else:
            from .channels.parquet import ParquetSource
            windows = ParquetSource(source).windows(cfg.window)
        log = EventLog(events or Path("runs/monitor") / name / "events.jsonl")
        run = client.create_run(_experiment_id(client, uri, "autounfold-monitoring"), run_name=f"monitor-{ref}",
                                tags={"autounfold.kind": "monitor", "autounfold.model": ref})

        def on_window(rec):
            client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), int(time.time() * 1000), rec["window"])
                                                        for k, v in rec.items() if isinstance(v, float)])
            console.print(f"window {rec['window']:>3}: cov shift {rec['covariance_shift']:.3f}  shadow "
                          f"{rec['shadow_pct']:.3f}%  AS~{rec['angular_spread_estimate']:.1f} deg  "
                          f"grad x{rec['grad_norm_ratio']:.1f}" + (f"  ALERT {','.join(rec['alerts'])}" if rec["alerts"] else ""),
                          highlight=False)

        def on_trigger(event):
            if not research:
                return {"skipped": "--no-research"}
            from .monitoring.trigger import research_changes, research_on_drift, submit_research
            warm = mv.tags.get("autounfold.search_run_id")
            if address:
                outcome = submit_research(ref, name, str(mv.version), research_changes(model_dir, event, research_trials,
                                                                                       research_set), warm, uri, address, console)
                client.set_tag(run.info.run_id, "autounfold.triggered_job", outcome["job_id"])
                return outcome
            outcome = research_on_drift(model_dir, name, event, log.path.parent, warm, uri, research_trials,
                                        research_set, console)
            client.set_tag(run.info.run_id, "autounfold.triggered_search", outcome["search_run_id"] or "")
            return outcome

        records = monitor_windows(net, windows, cfg, baseline, log, ref, on_trigger, on_window)
        client.log_artifact(run.info.run_id, str(log.path))
        client.set_terminated(run.info.run_id, "FINISHED")
        tmp.cleanup()
    except AutoUnfoldError as err:
        _fail(err)
    alerts = sum(len(r["alerts"]) for r in records)
    triggers = [r["trigger"] for r in records if "trigger" in r]
    console.print(f"{len(records)} windows, {alerts} alerts, {len(triggers)} trigger(s); events in {log.path}", highlight=False)


@app.command()
def submit(spec_path: Path = typer.Argument(..., metavar="JOB", help="job spec, e.g. jobs/search.yaml"),
           address: Optional[str] = typer.Option(None, help="Ray dashboard address (default RAY_ADDRESS, else "
                                                            "http://127.0.0.1:8265)"),
           set_: List[str] = typer.Option([], "--set", help="override a spec key, e.g. --set entrypoint_num_cpus=2"),
           wait: bool = typer.Option(False, "--wait", help="follow the job to its end; exit 1 unless it SUCCEEDED"),
           timeout: float = typer.Option(3600.0, help="seconds --wait waits")):
    """Submit a declarative job spec to a Ray cluster (token authentication honoured)."""
    from .jobs import load_job_spec, submit_job, wait_for_job
    from .jobs.client import job_client
    try:
        spec = load_job_spec(spec_path, set_)
        job_id = submit_job(spec, address)
        console.print(f"submitted {spec.name} as {job_id}: {spec.entrypoint}", highlight=False)
        if not wait:
            return
        status = wait_for_job(job_id, address, timeout, on_status=lambda st, t: console.print(
            f"[{t:6.0f} s] {job_id} {st}", highlight=False))
        logs = job_client(address).get_job_logs(job_id)
        console.print(logs[-4000:], markup=False, highlight=False)
    except AutoUnfoldError as err:
        _fail(err)
    if status != "SUCCEEDED":
        typer.echo(f"error: job {job_id} ended {status}", err=True)
        raise typer.Exit(1)


jobs_app = typer.Typer(no_args_is_help=True, help="Ray jobs on a cluster: list, status, logs, stop.")
app.add_typer(jobs_app, name="jobs")
_ADDRESS_HELP = "Ray dashboard address (default RAY_ADDRESS, else http://127.0.0.1:8265)"


@jobs_app.command("list")
def jobs_list(address: Optional[str] = typer.Option(None, help=_ADDRESS_HELP)):
    """All jobs of the cluster with their status."""
    from .jobs.client import _call, job_client
    try:
        jobs = _call("listing jobs", job_client(address).list_jobs)
    except AutoUnfoldError as err:
        _fail(err)
    rows = [{"id": j.submission_id or j.job_id, "status": str(j.status).split(".")[-1],
             "job": (j.metadata or {}).get("autounfold.job", ""), "entrypoint": j.entrypoint[:70]} for j in jobs]
    console.print(_table("Ray jobs", rows, [("id", "id", "{}"), ("status", "status", "{}"), ("job", "job", "{}"),
                                            ("entrypoint", "entrypoint", "{}")]))


@jobs_app.command("status")
def jobs_status(job_id: str, address: Optional[str] = typer.Option(None, help=_ADDRESS_HELP)):
    """Status of one job (exit 1 when it FAILED or was STOPPED)."""
    from .jobs.client import _call, job_client
    try:
        status = str(_call(f"job {job_id}", job_client(address).get_job_status, job_id)).split(".")[-1]
    except AutoUnfoldError as err:
        _fail(err)
    console.print(status)
    if status in ("FAILED", "STOPPED"):
        raise typer.Exit(1)


@jobs_app.command("logs")
def jobs_logs(job_id: str, address: Optional[str] = typer.Option(None, help=_ADDRESS_HELP)):
    """The job's driver output."""
    from .jobs.client import _call, job_client
    try:
        logs = _call(f"job {job_id}", job_client(address).get_job_logs, job_id)
    except AutoUnfoldError as err:
        _fail(err)
    console.print(logs, markup=False, highlight=False)


@jobs_app.command("stop")
def jobs_stop(job_id: str, address: Optional[str] = typer.Option(None, help=_ADDRESS_HELP)):
    """Ask the cluster to stop a job."""
    from .jobs.client import _call, job_client
    try:
        _call(f"job {job_id}", job_client(address).stop_job, job_id)
    except AutoUnfoldError as err:
        _fail(err)
    console.print(f"stop requested for {job_id}")


@app.command("search-benchmark")
def search_benchmark(out: Path = typer.Option(Path("results/search_benchmark"), help="directory for the searches and the tables"),
                     spec_path: Path = typer.Option(Path("search_spaces/auto_pgd.yaml"), "--spec", help="search-space YAML"),
                     seeds: str = typer.Option("0,1,2", help="comma-separated search seeds"),
                     trials: int = typer.Option(40, help="trials per search (TPE starts after the spec's n_initial_points)"),
                     tolerance: float = typer.Option(0.1, help="'within X% of the best known score'"),
                     parallel_trials: int = typer.Option(6, help="trials of the parallel-efficiency runs"),
                     parallel_steps: int = typer.Option(1500, help="training steps of those trials (about 30 s each here)")):
    """TPE vs random, warm vs cold re-search after a channel shift, parallel efficiency: JSON + Markdown.
    Finished searches in --out are reused, so an interrupted benchmark continues where it stopped."""
    from .search.benchmark import run_search_benchmark
    try:
        s = [int(v) for v in seeds.split(",") if v.strip()]
        if not s:
            raise AutoUnfoldError(f"--seeds needs at least one integer (got {seeds!r})")
        run_search_benchmark(out, spec_path, s, trials, tolerance, parallel_trials, parallel_steps, console=console)
    except ValueError as err:
        _fail(err)
    except AutoUnfoldError as err:
        _fail(err)
    console.print((out / "search_benchmark.md").read_text(), markup=False, highlight=False)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="result directory of the demo search"),
         trials: int = typer.Option(14, help="number of trials (TPE starts after 8 random ones)"),
         steps: int = typer.Option(200, help="training steps per trial"),
         tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default sqlite under ./mlruns)")):
    """A few-minute tour: a small TPE search of Auto-PGD on embedded Ray and a local MLflow store,
    the leaderboard, and the best model registered as models:/auto_pgd_demo@challenger."""
    import shutil
    from .search import run_search
    from .spaces import load_spec
    spec_file = Path(__file__).resolve().parent.parent / "search_spaces" / "auto_pgd.yaml"
    if not spec_file.is_file():
        spec_file = Path("search_spaces/auto_pgd.yaml")
    try:
        spec = load_spec(spec_file, [f"budget.num_samples={trials}", "budget.n_initial_points=8",
                                     "budget.max_concurrent=2", f"base.training.steps={steps}"])
        shutil.rmtree(out, ignore_errors=True)
        console.print(f"Searching {trials} Auto-PGD configurations ({steps} training steps each, 2 at a time) ...")
        outcome = run_search(spec, out, tracking_uri=tracking_uri, register="auto_pgd_demo", console=console)
    except AutoUnfoldError as err:
        _fail(err)
    _print_search(outcome, spec)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except AutoUnfoldError as err:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

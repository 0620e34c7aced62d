"""Command line: ``autounfold train | evaluate | benchmark | demo``. Every command has --help."""
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
def evaluate(model_dir: Path = typer.Argument(..., help="a directory written by `autounfold train`"),
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


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="where the benchmark files go"),
         steps: int = typer.Option(300, help="training steps per model")):
    """A few-minute tour on embedded defaults: Auto-PGD (3 and 5 layers) vs classical baselines."""
    from .evaluation.benchmark import run_benchmark
    console.print("Training Auto-PGD with 3 and 5 signed layers on the nominal scenario and comparing it with "
                  "the optimum, power iteration and PGD tuned by sweep ...")
    run_benchmark(out, steps=steps, depths=(3, 5), layers=("signed",), test_batch=2048, repeats=10,
                  lista_steps=0, robustness=True)
    console.print((out / "benchmark.md").read_text(), markup=False, highlight=False)
    console.print(f"JSON and plots in {out}/. Full benchmark: `make benchmark`.")


def main(argv: Optional[List[str]] = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except AutoUnfoldError as err:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

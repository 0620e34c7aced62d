"""The benchmark job: unfolded vs classical on a fixed test set, robustness, LISTA; JSON + Markdown + PNG.

Every number in the README comes from ``autounfold benchmark`` (this module).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

from ..algorithms import reference
from ..build import build_model, build_problem
from ..config import ExperimentConfig, ModelConfig, TrainingConfig
from ..problems.beamforming import BeamformingProblem
from ..problems.lasso import LassoConfig
from ..seeding import generator
from ..training import train
from . import baselines
from .evaluate import scenario_config, transfer
from .latency import measure_latency

NOMINAL = ExperimentConfig()


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cfg_for(layer: str, depth: int, steps: int, base: ExperimentConfig = NOMINAL) -> ExperimentConfig:
    step_init = "chebyshev" if layer == "signed" else 20.0
    return base.model_copy(update={
        "model": ModelConfig(num_layers=depth, layer=layer, step_init=step_init),
        "training": base.training.model_copy(update={"steps": steps})})


def beamforming_benchmark(out: Path, steps: int, depths: Sequence[int], layers: Sequence[str], test_batch: int,
                          latency_batch: int, repeats: int, seed: int, quiet: bool) -> dict:
    problem = build_problem(NOMINAL.problem)
    test = problem.sample(test_batch, generator(seed, "test"))
    ref = reference(problem, test)
    val = problem.sample(NOMINAL.training.validation_batch, generator(seed, "validation"))
    val_ref = reference(problem, val)
    lat_inst = test[:latency_batch]
    rows: List[dict] = []
    latency_fns: Dict[str, Callable] = {}

    def add(name, kind, depth, x, params, fn):
        s = problem.summarize(x, test, ref)
        rows.append({"name": name, "kind": kind, "depth": depth, "params": params, **s})
        latency_fns[name] = fn

    _log("classical baselines", quiet)
    with torch.no_grad():
        add("closed form (eigenvector, complex64)", "optimum", 0, problem.optimum_total_power(test, torch.complex64), 0,
            lambda: problem.optimum_total_power(lat_inst, torch.complex64))
        for T in (10, 50, 200):
            add(f"PGD-{T}, article step {baselines.ARTICLE_STEP:g}, random start", "classical", T,
                baselines.article_pgd(problem, test, T), 0, lambda T=T: baselines.article_pgd(problem, lat_inst, T))
        tuned = {}
        for K in depths:
            add(f"power iteration-{K}", "classical", K, baselines.power_iteration(problem, test, K), 0,
                lambda K=K: baselines.power_iteration(problem, lat_inst, K))
            params, _ = baselines.tune_fixed_step(problem, val, val_ref, K)
            params_m, _ = baselines.tune_fixed_step(problem, val, val_ref, K, momentum_grid=baselines.PGD_MOMENTA)
            tuned[K] = {"step_only": params, "with_momentum": params_m}
            add(f"PGD-{K}, best fixed step {params['step']:.3g}", "classical", K,
                baselines.run_tuned(problem, test, params, K), 0,
                lambda K=K, p=params: baselines.run_tuned(problem, lat_inst, p, K))
            add(f"PGD-{K}, best fixed step {params_m['step']:.3g} + momentum {params_m['momentum']:.2g}", "classical", K,
                baselines.run_tuned(problem, test, params_m, K), 0,
                lambda K=K, p=params_m: baselines.run_tuned(problem, lat_inst, p, K))

    models, learned = {}, {}
    for layer in layers:
        for K in depths:
            cfg = _cfg_for(layer, K, steps)
            _log(f"training Auto-PGD {layer} K={K} ({steps} steps)", quiet)
            model = build_model(cfg, problem)
            res = train(model, cfg.training, seed=seed, progress=not quiet)
            models[(layer, K)] = (cfg, model)
            learned[f"{layer}-{K}"] = {"params": model.scalar_parameters(), "train_seconds": res.seconds,
                                       "val_score": res.best_score}
            with torch.no_grad():
                add(f"Auto-PGD-{K} ({layer})", f"unfolded:{layer}", K, model.run(test), model.num_parameters(),
                    lambda m=model: m.run(lat_inst))

    _log(f"latency: {len(latency_fns)} methods x {repeats} interleaved repeats, batch {latency_batch}", quiet)
    lat = measure_latency(latency_fns, repeats=repeats)
    pgd200 = next(r for r in rows if r["name"].startswith("PGD-200"))
    for r in rows:
        r["pct_of_pgd200"] = 100.0 * r["se_mean"] / pgd200["se_mean"]
        r["latency_median_ms"] = lat[r["name"]]["median_ms"]
        r["latency_iqr_ms"] = lat[r["name"]]["iqr_ms"]
        r["relative_compute"] = r["depth"] / 200.0 if r["kind"] != "optimum" else None
    speed = {"threads": torch.get_num_threads(), "batch": latency_batch, "repeats": repeats}

    # Per-iteration curves for the plot: classical trajectories and unfolded intermediate iterates.
    curves = {}
    with torch.no_grad():
        sub = test[:512]
        sub_ref = ref[:512]
        def pct(x):
            return problem.summarize(x, sub, sub_ref)["pct_of_optimum"]
        curves["power iteration"] = [pct(problem.init(sub))] + [pct(x) for x in baselines.solve(
            problem, sub, baselines.ProximalGradient(normalize=problem.default_scaling), {"step": baselines.POWER_ITERATION_STEP},
            max(depths), trajectory=True).trajectory]
        Kmax = max(depths)
        for layer in layers:
            cfg, model = models[(layer, Kmax)]
            curves[f"Auto-PGD-{Kmax} ({layer})"] = [pct(problem.init(sub))] + [pct(x) for x in model.run(sub, return_all=True)]
        curves["PGD, article step (random start)"] = [pct(x) for x in baselines.solve(
            problem, sub, baselines.ProximalGradient(normalize=None), {"step": baselines.ARTICLE_STEP}, 200,
            trajectory=True, x0=problem.init(sub, "random", seed=7)).trajectory]
    return {"rows": rows, "latency_setup": speed, "tuned_classical": {str(k): v for k, v in tuned.items()},
            "learned": learned, "curves": curves, "models": models}


def robustness_benchmark(models: dict, tuned: dict, seed: int, test_batch: int, depth: int, quiet: bool) -> List[dict]:
    """The nominal models (same learned parameters) on other channel scenarios."""
    out = []
    for key, (name, _) in BeamformingProblem.scenarios.items():
        _log(f"robustness: {name}", quiet)
        pcfg = scenario_config(NOMINAL, key).problem
        ch = pcfg.channel
        problem = build_problem(pcfg)
        test = problem.sample(test_batch, generator(seed, "robustness", key))
        ref = reference(problem, test)
        row = {"scenario": name}
        with torch.no_grad():
            row["power iteration"] = problem.summarize(baselines.power_iteration(problem, test, depth), test, ref)
            p = tuned[str(depth)]["with_momentum"]
            row["PGD tuned (nominal step)"] = problem.summarize(baselines.run_tuned(problem, test, p, depth), test, ref)
            for (layer, K), (cfg, model) in models.items():
                if K != depth or layer == "hybrid" and ch.n_tx != NOMINAL.problem.channel.n_tx:
                    continue
                moved = transfer(model, cfg.model_copy(update={"problem": pcfg}))
                row[f"Auto-PGD-{K} ({layer})"] = problem.summarize(moved.run(test), test, ref)
        out.append(row)
    return out


def lista_benchmark(steps: int, seed: int, quiet: bool, large: bool) -> List[dict]:
    """LISTA family vs ISTA / FISTA: ISTA iterations needed to reach each network's NMSE."""
    settings = [("textbook N=50, M=25, s=5, 20 dB", LassoConfig(name="lasso", n=50, m=25, sparsity=5, snr_db=20.0, lam=0.05), 8)]
    if large:
        settings.append(("classic N=500, M=250, p=0.1, 40 dB", LassoConfig(name="lasso", n=500, m=250, sparsity=0.1,
                                                                          snr_db=40.0, lam=0.01), 16))
    out = []
    for title, pcfg, K in settings:
        problem = build_problem(pcfg)
        test = problem.sample(2000, generator(seed, "test"))
        with torch.no_grad():
            ista_traj = [problem.summarize(x, test, test.x_true)["nmse_db"] for x in baselines.ista(problem, test, 2000, True).trajectory]
            fista_traj = [problem.summarize(x, test, test.x_true)["nmse_db"] for x in baselines.fista(problem, test, 2000, True).trajectory]

        def needed(traj, target):
            return next((i + 1 for i, v in enumerate(traj) if v <= target), None)

        entry = {"setting": title, "layers": K, "ista_best_nmse_db": min(ista_traj), "fista_best_nmse_db": min(fista_traj),
                 "ista_nmse_at": {str(t): ista_traj[t - 1] for t in (K, 50, 100, 500, 2000)},
                 "networks": []}
        layers = ("ista", "lista_cp", "lista") if pcfg.n <= 100 else ("ista", "lista_cp")
        for layer in layers:
            lr = 0.01 if layer == "ista" else 5e-4
            cfg = ExperimentConfig(problem=pcfg, seed=seed, model=ModelConfig(num_layers=K, layer=layer, step_init=1.0),
                                   training=TrainingConfig(steps=steps, lr=lr, target="supervised", batch_size=256,
                                                           loss="multi_iteration", validation_batch=1000))
            _log(f"training {layer} K={K} on {title} ({steps} steps)", quiet)
            model = build_model(cfg, problem)
            train(model, cfg.training, seed=seed, progress=not quiet)
            with torch.no_grad():
                nmse = problem.summarize(model.run(test), test, test.x_true)["nmse_db"]
            entry["networks"].append({"layer": layer, "nmse_db": nmse, "params": model.num_parameters(),
                                      "ista_iterations_needed": needed(ista_traj, nmse),
                                      "fista_iterations_needed": needed(fista_traj, nmse)})
        out.append(entry)
    return out


def _fmt(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(result: dict) -> str:
    bf = result["beamforming"]
    s = bf["latency_setup"]
    lines = ["# autounfold benchmark", "",
             f"Nominal: n_tx 64, n_rx 16, one stream, total power, correlated Rayleigh 15 deg, SNR U[0, 30] dB. "
             f"Test set {result['setup']['test_batch']} channels (seed {result['setup']['seed']}); "
             f"latency: batch {s['batch']}, median (IQR) of {s['repeats']} interleaved repeats, {s['threads']} threads, CPU. "
             f"Training: {result['setup']['steps']} steps per model.", "",
             "| configuration | SE % of optimum | % of PGD-200 (article) | p5 % | latency ms (IQR) | parameters | relative compute |",
             "|---|---|---|---|---|---|---|"]
    for r in bf["rows"]:
        lines.append(f"| {r['name']} | {r['pct_of_optimum']:.3f} | {r['pct_of_pgd200']:.1f} | {r['p5_pct']:.3f} | "
                     f"{r['latency_median_ms']:.3f} ({r['latency_iqr_ms']:.3f}) | {r['params']} | "
                     f"{_fmt(r['relative_compute'], '.3f')} |")
    rob = result.get("robustness") or []
    if rob:
        methods = [k for k in rob[0] if k != "scenario"]
        lines += ["", "## Robustness (models trained on the nominal scenario, SE % of optimum / p5 %)", "",
                  "| scenario | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for row in rob:
            cells = [f"{row[m]['pct_of_optimum']:.3f} / {row[m]['p5_pct']:.2f}" if m in row else "—" for m in methods]
            lines.append(f"| {row['scenario']} | " + " | ".join(cells) + " |")
    for entry in result.get("lista") or []:
        lines += ["", f"## LISTA: {entry['setting']} ({entry['layers']} layers)", "",
                  f"ISTA NMSE (dB) after {', '.join(f'{k} it: {v:.2f}' for k, v in entry['ista_nmse_at'].items())}; "
                  f"best ISTA {entry['ista_best_nmse_db']:.2f} dB, best FISTA {entry['fista_best_nmse_db']:.2f} dB "
                  f"(2000 iterations).", "",
                  "| network | NMSE dB | ISTA iterations to match | FISTA iterations to match | parameters |", "|---|---|---|---|---|"]
        for n in entry["networks"]:
            lines.append(f"| {n['layer']} | {n['nmse_db']:.2f} | {_fmt(n['ista_iterations_needed'], 'd') if n['ista_iterations_needed'] else '> 2000'} | "
                         f"{_fmt(n['fista_iterations_needed'], 'd') if n['fista_iterations_needed'] else '> 2000'} | {n['params']} |")
    return "\n".join(lines) + "\n"


def run_benchmark(out_dir, steps: int = 400, depths: Sequence[int] = (3, 5, 8, 12),
                  layers: Sequence[str] = ("step", "signed", "momentum", "hybrid"), test_batch: int = 2048,
                  latency_batch: int = 256, repeats: int = 20, seed: int = 0, lista_steps: int = 1500,
                  lista_large: bool = True, robustness: bool = True, quiet: bool = False) -> dict:
    """Run everything and write benchmark.json, benchmark.md and the plots into ``out_dir``."""
    from ..errors import ConfigError
    from ..plugins import LAYERS
    fits = LAYERS.select(lambda d: d.applies_to("beamforming"))
    bad = [v for v in layers if v not in fits]
    if bad or not layers or not depths or min(depths) < 1:
        raise ConfigError(f"benchmark: layers must be among {', '.join(fits)} (got {list(layers)}); "
                          f"depths positive integers (got {list(depths)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bf = beamforming_benchmark(out, steps, depths, layers, test_batch, latency_batch, repeats, seed, quiet)
    models = bf.pop("models")
    result = {"setup": {"steps": steps, "depths": list(depths), "layers": list(layers), "test_batch": test_batch,
                        "seed": seed, "torch": torch.__version__}, "beamforming": bf}
    if robustness:
        depth = 5 if 5 in depths else depths[0]
        result["robustness"] = robustness_benchmark(models, bf["tuned_classical"], seed, min(test_batch, 1024), depth, quiet)
    if lista_steps > 0:
        result["lista"] = lista_benchmark(lista_steps, seed, quiet, lista_large)
    result["setup"]["seconds"] = time.perf_counter() - t0
    from .plots import write_plots
    result["plots"] = write_plots(result, out)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    (out / "benchmark.md").write_text(markdown(result))
    return result

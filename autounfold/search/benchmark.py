"""Search benchmarks (numbers in files, never in tests):

1. TPE vs random search: same spec, budget and seeds; trials needed to come within a tolerance
   of the best score known for the scenario (the best over every search run here).
2. Warm-started re-search after a channel shift (angular spread 15 -> 40 deg): a cold TPE search
   on the shifted channel vs a TPE search warm-started from the 15 deg search of the same seed;
   trials the warm search needs to reach the cold search's best.
3. Parallel efficiency: the same random-search trials with 1 and with 2 concurrent trials
   (trials/hour) and Ray's per-trial overhead (search wall time not spent inside trials).

Every search runs through ``run_search`` (the product path) without MLflow, on one Ray.
Writes ``search_benchmark.json`` and ``search_benchmark.md`` in ``out``.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import pandas as pd

from ..spaces.spec import load_spec

BENCH_OVERRIDES = [
    # a cheaper trial than the shipped spec (150 steps, batch 128) so that 12 searches of 40 trials
    # fit in well under an hour on 2 cores; the depth penalty gives the objective a real optimum
    "base.training.steps=150", "base.training.batch_size=128", "base.training.validation_batch=512",
    "base.training.validate_every=50", "objective.depth_penalty=0.02", "objective.measure_latency=false",
]


def _order(table: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they finished."""
    return table.sort_values("finished_at", kind="stable").reset_index(drop=True)


def trials_to_reach(table: pd.DataFrame, target: float) -> Optional[int]:
    """1-based number of finished trials until one scores >= target (None: never)."""
    ordered = _order(table)
    hits = ordered.index[(ordered.status == "ok") & (ordered.objective >= target)]
    return int(hits[0]) + 1 if len(hits) else None


def best_after(table: pd.DataFrame, n: int) -> float:
    ordered = _order(table).head(n)
    ok = ordered[ordered.status == "ok"]
    return float(ok.objective.max()) if len(ok) else float("nan")


def _search(spec_path, overrides, out, warm_start=None):
    from .history import read_history
    from .runner import run_search
    spec = load_spec(spec_path, overrides)
    return run_search(spec, out, history=read_history(warm_start) if warm_start else None, warm_start=warm_start)


def _stats(values: Sequence[Optional[float]], cap: int) -> dict:
    """Mean / min / max with a never-reached search counted as ``cap`` (and flagged)."""
    filled = [cap if v is None else v for v in values]
    return {"values": list(values), "mean": statistics.fmean(filled), "min": min(filled), "max": max(filled),
            "never_reached": sum(v is None for v in values)}


def run_search_benchmark(out: "str | Path", spec_path: "str | Path" = "search_spaces/auto_pgd.yaml",
                         seeds: Sequence[int] = (0, 1, 2), trials: int = 40, tolerance_pct: float = 0.1,
                         parallel_trials: int = 6, parallel_steps: int = 1500, console=None) -> dict:
    from .cluster import connect
    import ray

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = console.print if console is not None else (lambda *a, **k: None)
    started = connect(None)
    t0 = time.perf_counter()
    try:
        runs: Dict[str, Dict[int, pd.DataFrame]] = {"tpe_as15": {}, "random_as15": {}, "cold_as40": {}, "warm_as40": {}}
        base = BENCH_OVERRIDES + [f"budget.num_samples={trials}"]
        for seed in seeds:
            s = [f"seed={seed}"]
            for name, extra, warm in [
                ("tpe_as15", [], None),
                ("random_as15", ["budget.algorithm=random"], None),
                ("cold_as40", ["base.problem.channel.angular_spread_deg=40.0"], None),
                ("warm_as40", ["base.problem.channel.angular_spread_deg=40.0"], out / f"tpe_as15_seed{seed}"),
            ]:
                d = out / f"{name}_seed{seed}"
                if (d / "trials.parquet").is_file():        # a finished search from an earlier run of the benchmark
                    runs[name][seed] = pd.read_parquet(d / "trials.parquet")
                    continue
                say(f"[{time.perf_counter() - t0:6.0f} s] {name} seed {seed} ...", highlight=False)
                o = _search(spec_path, base + s + extra, d, warm_start=str(warm) if warm else None)
                runs[name][seed] = o.table

        # 1. TPE vs random on the nominal channel
        best_known = max(float(t[t.status == "ok"].objective.max()) for n in ("tpe_as15", "random_as15")
                         for t in runs[n].values())
        target = best_known - abs(best_known) * tolerance_pct / 100.0
        tight = best_known - abs(best_known) * tolerance_pct / 1000.0
        tpe_random = {}
        for n in ("tpe_as15", "random_as15"):
            tpe_random[n] = {
                "trials_to_within_tol": _stats([trials_to_reach(runs[n][s], target) for s in seeds], trials),
                "trials_to_within_tol_over_10": _stats([trials_to_reach(runs[n][s], tight) for s in seeds], trials),
                "best_after_10": [best_after(runs[n][s], 10) for s in seeds],
                "best_after_20": [best_after(runs[n][s], 20) for s in seeds],
                "best_after_all": [best_after(runs[n][s], trials) for s in seeds],
            }

        # 2. warm vs cold after the shift
        warm_cold = []
        for s in seeds:
            cold_best = best_after(runs["cold_as40"][s], trials)
            warm_cold.append({"seed": s, "cold_best": cold_best,
                              "cold_trials_to_best": trials_to_reach(runs["cold_as40"][s], cold_best),
                              "warm_trials_to_cold_best": trials_to_reach(runs["warm_as40"][s], cold_best),
                              "warm_trials_to_cold_best_minus_0.01": trials_to_reach(runs["warm_as40"][s], cold_best - 0.01),
                              "warm_best": best_after(runs["warm_as40"][s], trials)})
        ratios = [(w["warm_trials_to_cold_best"] or trials) / max(w["cold_trials_to_best"] or trials, 1) for w in warm_cold]

        # 3. parallel efficiency and Ray overhead: the same random-search trials, 1 then 2 at a time
        par = {}
        for c in (1, 2):
            d = out / f"parallel_c{c}"
            if (d / "summary.json").is_file():
                summary = json.loads((d / "summary.json").read_text())
                table = pd.read_parquet(d / "trials.parquet")
            else:
                say(f"[{time.perf_counter() - t0:6.0f} s] parallel efficiency, {c} concurrent ...", highlight=False)
                o = _search(spec_path, [f"budget.num_samples={parallel_trials}", "budget.algorithm=random",
                                        f"budget.max_concurrent={c}", f"base.training.steps={parallel_steps}",
                                        "base.training.validate_every=500", "objective.measure_latency=false",
                                        "seed=7"], d)
                summary, table = o.summary, o.table
            in_trials = float(table.trial_seconds.sum())
            par[c] = {"wall_s": summary["seconds"], "trials": len(table),
                      "trials_per_hour": 3600.0 * len(table) / summary["seconds"],
                      "mean_trial_s": float(table.trial_seconds.mean()),
                      "ray_overhead_per_trial_s": (summary["seconds"] - in_trials) / len(table) if c == 1 else None}
        par["speedup"] = par[2]["trials_per_hour"] / par[1]["trials_per_hour"]
        par["overhead_fraction"] = par[1]["ray_overhead_per_trial_s"] / par[1]["mean_trial_s"]

        result = {"seeds": list(seeds), "trials": trials, "tolerance_pct": tolerance_pct,
                  "overrides": BENCH_OVERRIDES, "best_known_as15": best_known, "target": target, "tight_target": tight,
                  "tpe_vs_random": tpe_random, "warm_vs_cold": warm_cold,
                  "warm_over_cold_trials_ratio": _stats(ratios, trials), "parallel": par,
                  "seconds": time.perf_counter() - t0}
        (out / "search_benchmark.json").write_text(json.dumps(result, indent=2, default=str))
        (out / "search_benchmark.md").write_text(markdown(result))
        return result
    finally:
        if started:
            ray.shutdown()


def _fmt_stats(st: dict) -> str:
    vals = ", ".join("never" if v is None else str(v) for v in st["values"])
    return f"{st['mean']:.1f} (min {st['min']}, max {st['max']}; per seed: {vals})"


def markdown(r: dict) -> str:
    t, w, p = r["tpe_vs_random"], r["warm_vs_cold"], r["parallel"]
    lines = [f"# Search benchmark ({len(r['seeds'])} seeds, {r['trials']} trials per search)", "",
             f"Objective: % of optimum on the validation set minus 0.02 per layer; trials of 150 steps "
             f"(overrides: `{' '.join(r['overrides'])}`).", "",
             f"## TPE vs random search (angular spread 15 deg); best known objective {r['best_known_as15']:.4f}", "",
             f"| search | trials to within {r['tolerance_pct']}% of best known | trials to within {r['tolerance_pct'] / 10}% | "
             "best after 10 | best after 20 | best after all |", "|---|---|---|---|---|---|"]
    for n, label in (("tpe_as15", "TPE"), ("random_as15", "random")):
        x = t[n]
        lines.append(f"| {label} | {_fmt_stats(x['trials_to_within_tol'])} | {_fmt_stats(x['trials_to_within_tol_over_10'])} | "
                     + " | ".join(f"{statistics.fmean(v):.4f}" for v in (x["best_after_10"], x["best_after_20"], x["best_after_all"])) + " |")
    lines += ["", "## Warm-started re-search after the shift to 40 deg angular spread", "",
              "| seed | cold best | cold: trials to its best | warm: trials to cold best | warm: to cold best - 0.01 | warm best |",
              "|---|---|---|---|---|---|"]
    for x in w:
        f = lambda v: "never" if v is None else str(v)
        lines.append(f"| {x['seed']} | {x['cold_best']:.4f} | {f(x['cold_trials_to_best'])} | {f(x['warm_trials_to_cold_best'])} | "
                     f"{f(x['warm_trials_to_cold_best_minus_0.01'])} | {x['warm_best']:.4f} |")
    ratio = r["warm_over_cold_trials_ratio"]
    lines += ["", f"warm / cold trials ratio: mean {ratio['mean']:.2f} (min {ratio['min']:.2f}, max {ratio['max']:.2f})", "",
              "## Parallel efficiency (same random-search trials)", "",
              "| concurrent | wall s | trials/hour | mean trial s |", "|---|---|---|---|"]
    for c in (1, 2):
        lines.append(f"| {c} | {p[c]['wall_s']:.1f} | {p[c]['trials_per_hour']:.1f} | {p[c]['mean_trial_s']:.1f} |")
    lines += ["", f"speed-up 2 vs 1: {p['speedup']:.2f}x; Ray overhead per trial (1 concurrent): "
              f"{p[1]['ray_overhead_per_trial_s']:.2f} s = {100 * p['overhead_fraction']:.1f}% of a "
              f"{p[1]['mean_trial_s']:.1f} s trial", ""]
    return "\n".join(lines)

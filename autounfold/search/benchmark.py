"""The search benchmark (``autounfold search-benchmark``, ``make search-benchmark``): numbers in files,
never in tests.

1. **Tables** (``tabular``): every configuration of the discrete benchmark spaces in
   ``search_spaces/tabular/`` trained once with the real trainer through Ray (flagship Auto-PGD with
   K <= 5 at 15 and at 40 deg angular spread, the LISTA family), plus replicate trials for the
   re-training noise; cached to Parquet keyed by the spec's sha256.
2. **Searchers** against the tables, ``seeds`` paired seeds each: hyperopt TPE, random search (paired:
   the same seed gives the same random start-up), Optuna TPE. Trials to within 0.05 and 0.01 of the
   table's best (median, quartiles, share of seeds), paired sign and Wilcoxon tests, best-after-n
   curves (PNG).
3. **Concurrency**: 1, 2, 4, 8 trials in flight on the table's clock, for each treatment of running
   trials (``budget.constant_liar``) and backend: trials and simulated hours to the target.
4. **Warm start** after the 15 -> 40 deg shift: cold TPE vs each ``budget.transfer`` method, the
   earlier search being TPE's 40 trials on the 15 deg table at the same seed; and a control shift
   whose ranking is reversed (the 40 deg table upside down), where a warm start can only mislead.
5. **Live check**: a few real searches (``run_search``) of the 15 deg spec; their trials compared
   with the table (same configuration) and their trials-to-target with the simulation's.
6. **Nodes**: the same random-search trials on a multi-node Ray cluster on this machine
   (``ray.cluster_utils.Cluster``) with 1, 2 and 4 worker nodes of one CPU: trials/hour.

Simulations are cached in ``out/sims/`` (keyed by table sha256, budget and seed) and live searches in
their directories, so an interrupted benchmark continues where it stopped. Writes
``search_benchmark.json``, ``SEARCH_RESULTS.md`` and PNGs in ``out``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..spaces.spec import load_spec
from .history import History
from .simulate import SimRun, simulate, trials_to, with_budget
from .tabular import Table, build_table, table_sha256

TABLES = {
    "auto_pgd_k5_as15": ("search_spaces/tabular/auto_pgd_k5.yaml", []),
    "auto_pgd_k5_as40": ("search_spaces/tabular/auto_pgd_k5.yaml", ["base.problem.channel.angular_spread_deg=40.0"]),
    "lista_k16": ("search_spaces/tabular/lista_k16.yaml", []),
}
UNITS = {"auto_pgd_k5_as15": "points (% of optimum)", "auto_pgd_k5_as40": "points (% of optimum)",
         "lista_k16": "dB (-NMSE)"}
TOLERANCES = (0.05, 0.01)
SECTIONS = ("tables", "searchers", "concurrency", "warm", "live", "nodes")
NODE_TRIAL_STEPS = 600
STARTUPS = (3, 5, 10, 20)
SOURCE_TRIALS = 40          # the earlier search a warm start reads: TPE's first 40 trials on the 15 deg table


def _spec(label: str, root: Path, extra: Sequence[str] = ()):
    path, overrides = TABLES[label]
    return load_spec(root / path, [*overrides, *extra])


@functools.lru_cache(maxsize=None)
def _worker_table(root: str, label: str, table_path: str) -> Table:
    """A table as a simulation worker sees it, read once per process (not once per simulation)."""
    from .tabular import load_table
    return load_table(table_path, _spec(label, Path(root)))


# ---------------------------------------------------------------------------------------------
# statistics

def quartiles(values: Sequence[float]) -> dict:
    xs = sorted(values)
    if not xs:
        return {"q1": None, "median": None, "q3": None}
    def q(p):
        k = (len(xs) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
    return {"q1": q(0.25), "median": q(0.5), "q3": q(0.75)}


def censored(values: Sequence[Optional[int]], cap: int) -> List[int]:
    """Trials-to-target with 'never' counted as ``cap + 1`` (worse than any reached value)."""
    return [cap + 1 if v is None else v for v in values]


def summarize(values: Sequence[Optional[int]], cap: int) -> dict:
    reached = [v for v in values if v is not None]
    return {"values": list(values), **quartiles(censored(values, cap)), "reached": len(reached),
            "seeds": len(values), "share_reached": len(reached) / len(values) if values else 0.0}


def sign_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Exact two-sided sign test of paired samples (ties dropped): how often a < b, and its p-value."""
    wins = sum(x < y for x, y in zip(a, b))
    losses = sum(x > y for x, y in zip(a, b))
    n = wins + losses
    if n == 0:
        return {"a_better": 0, "b_better": 0, "ties": len(a), "p": 1.0}
    k = min(wins, losses)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"a_better": wins, "b_better": losses, "ties": len(a) - n, "p": p}


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (None when all pairs tie)."""
    from scipy.stats import wilcoxon as w
    diffs = [x - y for x, y in zip(a, b)]
    if not any(diffs):
        return None
    return float(w(a, b, zero_method="wilcox").pvalue)


def paired(a_vals, b_vals, cap) -> dict:
    a, b = censored(a_vals, cap), censored(b_vals, cap)
    return {**sign_test(a, b), "wilcoxon_p": wilcoxon(a, b)}


# ---------------------------------------------------------------------------------------------
# simulations (cached, run in a process pool)

REPORT_FORMAT = 2
SIM_VERSION = 3            # bump when the searchers or the simulator change what a simulation returns


def _sim_key(label: str, spec_sha: str, table_sha: str, n: int, concurrency: int, history, transform) -> str:
    """Everything that decides a simulation: the spec with its budget (seed included), the table's
    bytes, trials, concurrency, the warm-start points, the table transform, the simulator's version."""
    text = json.dumps([SIM_VERSION, label, spec_sha, table_sha, n, concurrency, history, transform], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _file_sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _sim_job(args):
    """One simulation (in a worker process): returns (values, params, finish_s, decision)."""
    root, label, table_path, budget, n, concurrency, history_points, transform = args
    table = _worker_table(root, label, table_path)
    spec = table.spec
    if transform == "reversed":
        table = reversed_table(table)
    spec = with_budget(spec, **budget)
    hist = History([(p, v) for p, v in history_points], "benchmark") if history_points is not None else None
    r = simulate(spec, table, n, concurrency, hist)
    return r.values, r.params, r.finish_s, r.decision


def reversed_table(table: Table) -> Table:
    """The control task whose ranking is the opposite of ``table``'s (best and worst swapped)."""
    ok = [float(r["objective"]) for r in table.rows if r.get("status", "ok") == "ok"]
    lo, hi = min(ok), max(ok)
    rows = [{**r, "objective": lo + hi - float(r["objective"])} if r.get("status", "ok") == "ok" else r
            for r in table.rows]                    # a failed configuration stays the worst
    return Table(table.spec, rows, table.path)


class Sims:
    """Runs batches of simulations in a process pool, caching each result as JSON in ``out/sims``."""

    def __init__(self, root: Path, out: Path, tables: Dict[str, Table], workers: int, say):
        self.root, self.dir, self.tables, self.workers, self.say = root, out / "sims", tables, workers, say
        self.dir.mkdir(parents=True, exist_ok=True)
        self.table_sha = {label: _file_sha(t.path) for label, t in tables.items()}

    def run(self, jobs: List[dict]) -> List[SimRun]:
        """jobs: dicts with label, budget (incl. seed), n, concurrency=1, history=None (points),
        history_tag='', transform=None. Results in the same order."""
        results: List[Optional[SimRun]] = [None] * len(jobs)
        todo = []
        for i, j in enumerate(jobs):
            label = j["label"]
            spec_sha = with_budget(self.tables[label].spec, **j["budget"]).sha256
            key = _sim_key(label, spec_sha, self.table_sha[label], j["n"], j.get("concurrency", 1), j.get("history"),
                           j.get("transform"))
            path = self.dir / f"{key}.json"
            if path.is_file():
                d = json.loads(path.read_text())
                results[i] = SimRun(d["values"], d["params"], d["finish_s"], d["decision"])
            else:
                todo.append((i, path, (str(self.root), label, str(self.tables[label].path), j["budget"], j["n"],
                                       j.get("concurrency", 1), j.get("history"), j.get("transform"))))
        if todo:
            t0 = time.perf_counter()
            self.say(f"  {len(todo)} simulations ({len(jobs) - len(todo)} cached) on {self.workers} processes ...")
            if self.workers > 1:
                with ProcessPoolExecutor(self.workers) as pool:
                    outs = list(pool.map(_sim_job, [a for _, _, a in todo], chunksize=1))
            else:
                outs = [_sim_job(a) for _, _, a in todo]
            for (i, path, _), (values, params, finish_s, decision) in zip(todo, outs):
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"values": values, "params": params, "finish_s": finish_s, "decision": decision}))
                os.replace(tmp, path)
                results[i] = SimRun(values, params, finish_s, decision)
            self.say(f"  ... {time.perf_counter() - t0:.0f} s")
        return results


# ---------------------------------------------------------------------------------------------
# sections

def section_tables(root: Path, tables_dir: Path, replicates: int, say) -> Dict[str, Table]:
    from .cluster import connect
    import ray

    tables, info = {}, {}
    started = False
    try:
        for label in TABLES:
            spec = _spec(label, root)
            path = tables_dir / f"{label}.parquet"
            t0 = time.perf_counter()
            if not path.is_file():
                if not started:
                    started = connect(None)
                say(f"table {label}: training every configuration through Ray ...")

                def on_row(row, done, total, _label=label):
                    if done % 25 == 0 or done == total:
                        say(f"  {_label}: {done}/{total} trials ({time.perf_counter() - t0:.0f} s)")
            else:
                on_row = None
            tables[label] = build_table(spec, path, replicates=replicates, on_row=on_row)
    finally:
        if started:
            ray.shutdown()
    for label, t in tables.items():
        if t.spec.objective.mode != "max":      # targets below are best - tolerance
            raise ValueError(f"{label}: the search benchmark's tables maximise their objective")
        secs = [float(r["trial_seconds"]) for r in t.rows]
        failed = sum(r["status"] != "ok" for r in t.rows if r["replicate"] == 0)
        info[label] = {"configurations": len(t.objective), "best": t.best, "worst": min(t.objective.values()),
                       "failed": failed, "units": UNITS[label],
                       "share_within": {str(tol): t.fraction_within(tol) for tol in TOLERANCES},
                       "noise": t.noise(), "trial_seconds_total": sum(secs), "sha256": table_sha256(t.spec)}
    return tables, info


def _curves(runs: List[SimRun], best: float, n: int) -> dict:
    """Median and quartiles over seeds of the gap to the best known after 1..n trials."""
    gaps = [quartiles([best - max(r.values[:k]) for r in runs]) for k in range(1, n + 1)]
    return {q: [g[q] for g in gaps] for q in ("q1", "median", "q3")}


def section_searchers(sims: Sims, tables, seeds, trials, say) -> dict:
    out = {}
    for label in ("auto_pgd_k5_as15", "lista_k16"):
        t = tables[label]
        say(f"searchers on {label}: TPE, random, Optuna TPE x {len(seeds)} seeds x {trials} trials")
        res = {}
        for alg in ("tpe", "random", "optuna_tpe"):
            runs = sims.run([{"label": label, "budget": {"algorithm": alg, "searcher_seed": s, "num_samples": trials}, "n": trials}
                             for s in seeds])
            res[alg] = {"runs": runs}
        entry = {"best_known": t.best, "searchers": {}, "paired": {}}
        for alg, r in res.items():
            e = {"curve": _curves(r["runs"], t.best, trials)}
            for tol in TOLERANCES:
                e[f"to_{tol}"] = summarize([trials_to(x.values, t.best - tol) for x in r["runs"]], trials)
            for n in (10, 20, 40, trials):
                e[f"gap_after_{n}"] = quartiles([t.best - x.best_after(n) for x in r["runs"]])
            entry["searchers"][alg] = e
        # the random start-up's length (budget.n_initial_points; 10 in the shipped specs)
        entry["startup"] = {}
        for alg in ("tpe", "optuna_tpe"):
            for n0 in [n for n in STARTUPS if n < trials]:
                runs = res[alg]["runs"] if n0 == 10 else sims.run(
                    [{"label": label, "budget": {"algorithm": alg, "searcher_seed": s, "num_samples": trials, "n_initial_points": n0},
                      "n": trials} for s in seeds])
                entry["startup"][f"{alg}|{n0}"] = {
                    "algorithm": alg, "n_initial_points": n0,
                    **{f"to_{tol}": summarize([trials_to(x.values, t.best - tol) for x in runs], trials) for tol in TOLERANCES}}
        for a, b in (("tpe", "random"), ("optuna_tpe", "random"), ("tpe", "optuna_tpe")):
            entry["paired"][f"{a}_vs_{b}"] = {str(tol): paired(entry["searchers"][a][f"to_{tol}"]["values"],
                                                               entry["searchers"][b][f"to_{tol}"]["values"], trials)
                                             for tol in TOLERANCES}
        out[label] = entry
        out[label]["_runs"] = res          # dropped before writing JSON; used by the warm-start section
    return out


CONCURRENCY_VARIANTS = [("tpe", "worst"), ("tpe", "mean"), ("tpe", "none"), ("optuna_tpe", "worst"),
                        ("optuna_tpe", "none"), ("random", "worst")]


def section_concurrency(sims: Sims, tables, seeds, trials, say, label="auto_pgd_k5_as15") -> dict:
    t = tables[label]
    tol = TOLERANCES[0]
    say(f"concurrency on {label}: 1, 2, 4, 8 in flight x {len(CONCURRENCY_VARIANTS)} variants x {len(seeds)} seeds")
    jobs, index = [], []
    for alg, liar in CONCURRENCY_VARIANTS:
        for c in (1, 2, 4, 8):
            for s in seeds:
                jobs.append({"label": label, "budget": {"algorithm": alg, "constant_liar": liar, "searcher_seed": s,
                                                        "num_samples": trials}, "n": trials, "concurrency": c})
                index.append((alg, liar, c))
    runs = sims.run(jobs)
    out = {}
    for (alg, liar, c) in dict.fromkeys(index):
        rs = [r for r, k in zip(runs, index) if k == (alg, liar, c)]
        hits = [trials_to(r.values, t.best - tol) for r in rs]
        # a search that never reached the target counts with its whole duration (a lower bound)
        hours = [(r.finish_s[-1] if h is None else r.finish_s[h - 1]) / 3600.0 for r, h in zip(rs, hits)]
        out[f"{alg}|{liar}|{c}"] = {"algorithm": alg, "constant_liar": liar, "concurrency": c,
                                    "to_target": summarize(hits, trials),
                                    "hours_to_target": quartiles(hours),
                                    "gap_after_30": quartiles([t.best - r.best_after(30) for r in rs])}
    return {"label": label, "tolerance": tol, "variants": out}


TRANSFER_METHODS = ("history", "replay", "gated")


def section_warm(sims: Sims, tables, seeds, trials, source_runs: Dict[str, List[SimRun]], say) -> dict:
    """For each backend: cold search on the shifted table vs each transfer method, the earlier search
    being that backend's first SOURCE_TRIALS trials on the 15 deg table at the same seed."""
    tol = TOLERANCES[0]
    out = {}
    label = "auto_pgd_k5_as40"
    for shift, transform in (("as15_to_as40", None), ("as15_to_reversed_as40", "reversed")):
        t = tables[label] if transform is None else reversed_table(tables[label])
        out[shift] = {"best_known": t.best, "backends": {}}
        for alg, sources in source_runs.items():
            say(f"warm start, {shift}, {alg}: cold vs {', '.join(TRANSFER_METHODS)} x {len(seeds)} seeds")
            cold = sims.run([{"label": label, "budget": {"algorithm": alg, "searcher_seed": s, "num_samples": trials}, "n": trials,
                              "transform": transform} for s in seeds])
            entry = {"cold": summarize([trials_to(r.values, t.best - tol) for r in cold], trials), "methods": {}}
            cold_hits = censored(entry["cold"]["values"], trials)
            for method in TRANSFER_METHODS:
                jobs = []
                for s, src in zip(seeds, sources):
                    pts = [[p, v] for p, v in zip(src.params[:SOURCE_TRIALS], src.values[:SOURCE_TRIALS])]
                    jobs.append({"label": label, "budget": {"algorithm": alg, "searcher_seed": s, "num_samples": trials,
                                                            "transfer": method},
                                 "n": trials, "history": pts, "history_tag": f"{alg}_as15_seed{s}_first{SOURCE_TRIALS}",
                                 "transform": transform})
                runs = sims.run(jobs)
                hits = [trials_to(r.values, t.best - tol) for r in runs]
                warm_c = censored(hits, trials)
                ratios = [w / c for w, c in zip(warm_c, cold_hits)]
                entry["methods"][method] = {
                    "to_target": summarize(hits, trials), "ratio_warm_over_cold": ratios,
                    "mean_ratio": statistics.fmean(ratios),
                    "worse_than_cold": sum(w > c for w, c in zip(warm_c, cold_hits)),
                    "paired_vs_cold": paired(hits, entry["cold"]["values"], trials),
                    "gates_open": sum(r.decision.get("gate") == "open" for r in runs) if method == "gated" else None}
            out[shift]["backends"][alg] = entry
    return {"tolerance": tol, "source_trials": SOURCE_TRIALS, "shifts": out}


def section_live(root: Path, out: Path, tables, seeds: Sequence[int], trials: int, say) -> dict:
    """Real searches through ``run_search`` on the 15 deg spec; trials compared with the table."""
    from .runner import run_search
    import pandas as pd

    label = "auto_pgd_k5_as15"
    t = tables[label]
    spec0 = _spec(label, root)
    rows, searches = [], []
    for s in seeds:
        d = out / "live" / f"tpe_searcher_seed{s}"
        spec = with_budget(spec0, algorithm="tpe", searcher_seed=s, num_samples=trials, max_concurrent=2)
        if (d / "trials.parquet").is_file():
            table = pd.read_parquet(d / "trials.parquet")
        else:
            say(f"live search, TPE seed {s}, {trials} trials, 2 at a time ...")
            table = run_search(spec, d).table
        ordered = table.sort_values("finished_at", kind="stable")
        values = []
        for _, r in ordered.iterrows():
            params = json.loads(r.params)
            tab = t.lookup(params)
            live = float(r.objective)
            rows.append({"seed": s, "live": live, "table": tab})
            values.append(live)
        sim = simulate(spec, t, trials, concurrency=2)
        seed_diffs = [abs(r["live"] - r["table"]) for r in rows if r["seed"] == s]
        searches.append({"seed": s, "mean_abs_diff": statistics.fmean(seed_diffs), "max_abs_diff": max(seed_diffs),
                         "live_to_target": trials_to(values, t.best - TOLERANCES[0]),
                         "simulated_to_target": trials_to(sim.values, t.best - TOLERANCES[0]),
                         "live_best": max(values), "simulated_best": max(sim.values)})
    diffs = [r["live"] - r["table"] for r in rows]
    lv, tv = [r["live"] for r in rows], [r["table"] for r in rows]
    from .searchers import spearman
    return {"trials": len(rows), "table_seed": t.spec.seed, "mean_abs_diff": statistics.fmean(abs(d) for d in diffs),
            "median_abs_diff": quartiles([abs(d) for d in diffs])["median"], "mean_diff": statistics.fmean(diffs),
            "rank_correlation": spearman(lv, tv), "searches": searches}


def section_nodes(root: Path, out: Path, say, node_counts=(1, 2, 4), n_trials: int = 8) -> dict:
    """Trials/hour of the same random-search trials on a Ray cluster of 1, 2, 4 one-CPU worker nodes."""
    from .nodes import local_cluster
    from .runner import run_search
    import ray

    # trials of 600 steps (about 10 s alone here) so that Ray's per-trial overhead does not dominate
    spec0 = with_budget(_spec("auto_pgd_k5_as15", root, [f"base.training.steps={NODE_TRIAL_STEPS}"]),
                        algorithm="random", num_samples=n_trials, seed=7)
    res = {}
    for n in node_counts:
        d = out / "nodes" / f"n{n}_steps{NODE_TRIAL_STEPS}_trials{n_trials}"
        if (d / "summary.json").is_file():
            summary = json.loads((d / "summary.json").read_text())
        else:
            say(f"nodes: {n} worker node(s) of 1 CPU, {n_trials} trials ...")
            with local_cluster(n) as cluster:
                ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
                try:
                    summary = run_search(spec0, d, address=cluster.address).summary
                finally:
                    ray.shutdown()
        res[str(n)] = {"wall_s": summary["seconds"], "trials": summary["num_trials"],
                       "trials_per_hour": 3600.0 * summary["num_trials"] / summary["seconds"],
                       "nodes_used": summary.get("nodes_used")}
    return {"trials": n_trials, "steps": NODE_TRIAL_STEPS, "cpus_per_node": 1, "machine_cores": os.cpu_count(),
            "by_nodes": res}


# ---------------------------------------------------------------------------------------------

def run_search_benchmark(out: "str | Path", seeds: int = 50, trials: int = 60, replicates: int = 24,
                         workers: int = 2, sections: Sequence[str] = SECTIONS, live_seeds: int = 3,
                         live_trials: int = 30, root: "str | Path" = ".", tables_dir: "str | Path | None" = None,
                         report_dir: "str | Path | None" = None, console=None) -> dict:
    """Run ``sections``; working files (simulations, live searches, node runs) in ``out``, the tables in
    ``tables_dir`` (default ``out/tables``), the report (JSON, Markdown, PNG) in ``report_dir``
    (default ``out``)."""
    out, root = Path(out), Path(root)
    out.mkdir(parents=True, exist_ok=True)
    report = Path(report_dir) if report_dir else out
    report.mkdir(parents=True, exist_ok=True)
    say = (lambda m: console.print(m, highlight=False, markup=False)) if console is not None else (lambda m: None)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown sections: {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    t0 = time.perf_counter()
    result_path = report / "search_benchmark.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if result.get("format") != REPORT_FORMAT:        # an older benchmark's report: nothing of it is kept
        result = {"format": REPORT_FORMAT}
    seed_list = list(range(seeds))
    tables, info = section_tables(root, Path(tables_dir) if tables_dir else out / "tables", replicates, say)
    result.update(seeds=seeds, trials=trials, tolerances=list(TOLERANCES), tables=info)
    sims = Sims(root, out, tables, workers, say)
    searchers = None
    if "searchers" in sections or "warm" in sections:
        searchers = section_searchers(sims, tables, seed_list, trials, say)
        if "searchers" in sections:
            result["searchers"] = {k: {kk: vv for kk, vv in v.items() if kk != "_runs"} for k, v in searchers.items()}
    if "concurrency" in sections:
        result["concurrency"] = section_concurrency(sims, tables, seed_list, trials, say)
    if "warm" in sections:
        runs = searchers["auto_pgd_k5_as15"]["_runs"]
        result["warm"] = section_warm(sims, tables, seed_list, trials,
                                      {alg: runs[alg]["runs"] for alg in ("tpe", "optuna_tpe")}, say)
    if "live" in sections:
        result["live"] = section_live(root, out, tables, seed_list[:live_seeds], live_trials, say)
    if "nodes" in sections:
        result["nodes"] = section_nodes(root, out, say)
    result["seconds_last_run"] = time.perf_counter() - t0
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, result_path)
    if "searchers" in result:
        plot_curves(result, report)
    (report / "SEARCH_RESULTS.md").write_text(markdown(result))
    return result


def plot_curves(result: dict, out: Path) -> List[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for label, entry in result["searchers"].items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for alg, style in (("tpe", "-"), ("random", "--"), ("optuna_tpe", ":")):
            c = entry["searchers"][alg]["curve"]
            n = range(1, len(c["median"]) + 1)
            ax.plot(n, c["median"], style, label=alg)
            ax.fill_between(n, c["q1"], c["q3"], alpha=0.15)
        for tol in TOLERANCES:
            ax.axhline(tol, color="grey", lw=0.6)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)                      # a gap to the best known is never negative
        ax.set_xlabel("trials")
        ax.set_ylabel(f"gap to best known ({UNITS[label]})")
        ax.set_title(f"{label}: best after n trials, median and quartiles over {result['seeds']} seeds", fontsize=9)
        ax.legend()
        fig.tight_layout()
        p = out / f"search_best_after_n_{label}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _q(x: dict, fmt="{:.0f}") -> str:
    if x.get("median") is None:
        return "-"
    return f"{fmt.format(x['median'])} [{fmt.format(x['q1'])}, {fmt.format(x['q3'])}]"


def _never(s: dict) -> str:
    return f"{s['reached']}/{s['seeds']}"


def markdown(r: dict) -> str:
    cap = r["trials"]
    L = [f"# Search benchmark: tabular, {r['seeds']} paired seeds, {cap} trials per search", "",
         "Command: `make search-benchmark` (= `autounfold search-benchmark --out results/search_benchmark --tables "
         "benchmarks/search_tables --report benchmarks`). Trials-to-target: "
         f"finished trials until one is within the tolerance of the table's best; a search that never gets "
         f"there counts as {cap + 1} in medians and paired tests. Quartiles in brackets.", "",
         "## Tables (every configuration trained once through Ray, cached to Parquet with the spec's sha256)", "",
         "| table | configurations | best | worst | share within 0.05 | share within 0.01 | re-training noise sd (replicates) | CPU s |",
         "|---|---|---|---|---|---|---|---|"]
    for label, t in r["tables"].items():
        nz = t["noise"]
        noise = f"{nz['sd']:.4f} ({nz['replicates']})" if nz.get("replicates") else "-"
        L.append(f"| {label} | {t['configurations']} | {t['best']:.4f} | {t['worst']:.3f} | {100 * t['share_within']['0.05']:.1f}% | "
                 f"{100 * t['share_within']['0.01']:.1f}% | {noise} | {t['trial_seconds_total']:.0f} |")
    if "searchers" in r:
        for label, e in r["searchers"].items():
            L += ["", f"## Searchers on {label} (best known {e['best_known']:.4f}, {UNITS[label]})", "",
                  "| searcher | to within 0.05: median [q1, q3] | reached | to within 0.01 | reached | gap after 10 | after 20 | after 40 |",
                  "|---|---|---|---|---|---|---|---|"]
            for alg, s in e["searchers"].items():
                L.append(f"| {alg} | {_q(s['to_0.05'])} | {_never(s['to_0.05'])} | {_q(s['to_0.01'])} | {_never(s['to_0.01'])} | "
                         f"{s['gap_after_10']['median']:.4f} | {s['gap_after_20']['median']:.4f} | {s['gap_after_40']['median']:.4f} |")
            L += ["", "| paired comparison | tolerance | first better / second better / ties | sign test p | Wilcoxon p |",
                  "|---|---|---|---|---|"]
            for name, by_tol in e["paired"].items():
                for tol, p in by_tol.items():
                    w = "-" if p["wilcoxon_p"] is None else f"{p['wilcoxon_p']:.3g}"
                    L.append(f"| {name.replace('_vs_', ' vs ')} | {tol} | {p['a_better']} / {p['b_better']} / {p['ties']} | {p['p']:.3g} | {w} |")
            L += ["", "| random start-up (n_initial_points) | searcher | to within 0.05 | reached | to within 0.01 | reached |",
                  "|---|---|---|---|---|---|"]
            for x in e.get("startup", {}).values():
                L.append(f"| {x['n_initial_points']} | {x['algorithm']} | {_q(x['to_0.05'])} | {_never(x['to_0.05'])} | "
                         f"{_q(x['to_0.01'])} | {_never(x['to_0.01'])} |")
            L += ["", f"![best after n](search_best_after_n_{label}.png)"]
    if "concurrency" in r:
        c = r["concurrency"]
        L += ["", f"## Concurrency ({c['label']}, to within {c['tolerance']}; trials finish on the table's clock)", "",
              "| searcher | running trials count as | in flight | trials to target | reached | simulated hours to target (never: the whole search) | gap after 30 |",
              "|---|---|---|---|---|---|---|"]
        for v in c["variants"].values():
            liar = "-" if v["algorithm"] == "random" else v["constant_liar"]
            L.append(f"| {v['algorithm']} | {liar} | {v['concurrency']} | {_q(v['to_target'])} | "
                     f"{_never(v['to_target'])} | {_q(v['hours_to_target'], '{:.3f}')} | {v['gap_after_30']['median']:.4f} |")
    if "warm" in r:
        w = r["warm"]
        for shift, e in w["shifts"].items():
            L += ["", f"## Warm start, {shift.replace('_', ' ')} (earlier search: the same backend's first {w['source_trials']} "
                  f"trials at 15 deg, same seed; target within {w['tolerance']} of {e['best_known']:.4f})", "",
                  "| backend | method | trials to target | reached | mean warm/cold | seeds worse than cold | warm better / cold better / ties | sign p | gates open |",
                  "|---|---|---|---|---|---|---|---|---|"]
            for alg, b in e["backends"].items():
                L.append(f"| {alg} | cold | {_q(b['cold'])} | {_never(b['cold'])} | 1 | - | - | - | - |")
                for m, x in b["methods"].items():
                    p = x["paired_vs_cold"]
                    gates = "-" if x["gates_open"] is None else f"{x['gates_open']}/{x['to_target']['seeds']}"
                    L.append(f"| {alg} | {m} | {_q(x['to_target'])} | {_never(x['to_target'])} | {x['mean_ratio']:.2f} | "
                             f"{x['worse_than_cold']} | {p['a_better']} / {p['b_better']} / {p['ties']} | {p['p']:.3g} | {gates} |")
    if "live" in r:
        v = r["live"]
        L += ["", "## Does the table predict live searches? (`run_search` through Ray, TPE, 2 trials at a time)", "",
              f"{v['trials']} live trials: |live - table| mean {v['mean_abs_diff']:.4f}, median {v['median_abs_diff']:.4f}, "
              f"mean live - table {v['mean_diff']:+.4f}; rank correlation {v['rank_correlation']:.3f}.", "",
              f"The searches differ in their searcher seed (`budget.searcher_seed`) and keep the table's data seed "
              f"({v.get('table_seed', 0)}: validation set and training shards); a live trial trains on its own shard.", "",
              "| searcher seed | mean / max abs(live - table) | live trials to within 0.05 | simulated | live best | simulated best |",
              "|---|---|---|---|---|---|"]
        for s in v["searches"]:
            f = lambda x: "never" if x is None else str(x)
            L.append(f"| {s['seed']} | {s['mean_abs_diff']:.4f} / {s['max_abs_diff']:.4f} | {f(s['live_to_target'])} | "
                     f"{f(s['simulated_to_target'])} | {s['live_best']:.4f} | {s['simulated_best']:.4f} |")
    if "nodes" in r:
        n = r["nodes"]
        L += ["", f"## Multi-node Ray cluster on this machine ({n['machine_cores']} cores; worker nodes of {n['cpus_per_node']} CPU; "
              f"{n['trials']} random-search trials of {n.get('steps', '?')} steps)", "", "| worker nodes | wall s | trials/hour | nodes that ran trials |", "|---|---|---|---|"]
        for k, x in n["by_nodes"].items():
            L.append(f"| {k} | {x['wall_s']:.1f} | {x['trials_per_hour']:.0f} | {x.get('nodes_used') or '-'} |")
    return "\n".join(L) + "\n"

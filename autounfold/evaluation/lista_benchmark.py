"""The sparse-recovery benchmark job: the LISTA family (ALISTA, LISTA-CPSS, TiLISTA, the ISTA-step
layer) against ISTA and FISTA with the LASSO weight tuned on a validation set for each iteration
count, the converged LASSO and the oracle-support bound; how many ISTA / FISTA iterations each
network matches; training time and latency; JSON + Markdown + a NMSE-per-layer plot (``autounfold
benchmark-lista``, ``make benchmark-lista``).

Every network is trained with the preset recipe (``preset:lista``: stagewise training, the
checkpoint with the best validation NMSE) at the setting's size. The classical solvers' lambda is
chosen on the validation draw the trainer validates on (``generator(seed, "validation")``); every
number in the tables is on a separate test draw (``generator(seed, "test")``).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..algorithms.proximal_gradient import ProximalGradient, fista_momentum
from ..algorithms.tuning import lasso_solve, tune_lasso
from ..build import build_model, build_problem
from ..config import load_config
from ..errors import ConfigError
from ..seeding import generator
from ..training import train
from .latency import measure_latency
from .report import bars_markdown

SETTINGS = {
    "textbook": {"title": "textbook: N=50, M=25, s=5 (exact), 20 dB",
                 "problem": {"n": 50, "m": 25, "sparsity": 5, "snr_db": 20.0, "lam": 0.05}},
    "classic": {"title": "classic: N=500, M=250, Bernoulli p=0.1, 40 dB",
                "problem": {"n": 500, "m": 250, "sparsity": 0.1, "snr_db": 40.0, "lam": 0.01}},
}
ITERATIONS = (8, 16, 50, 100, 1000)               # ISTA / FISTA rows (lambda tuned for each)
CURVE_LENGTH = 2000                               # iterations searched for "ISTA iterations to match"
CURVE_FACTORS = torch.logspace(-1, 1, 9).tolist()  # lambda multiples whose curves make the envelope
# conditions the networks were not trained on (same matrix A; the learned parameters applied unchanged)
ROBUSTNESS = {
    "textbook": (("SNR 10 dB", {"snr_db": 10.0}), ("SNR 30 dB", {"snr_db": 30.0}), ("SNR 40 dB", {"snr_db": 40.0}),
                 ("s = 3", {"sparsity": 3}), ("s = 8", {"sparsity": 8})),
    "classic": (("SNR 30 dB", {"snr_db": 30.0}), ("SNR 50 dB", {"snr_db": 50.0}), ("p = 0.05", {"sparsity": 0.05}),
                ("p = 0.15", {"sparsity": 0.15})),
}
LABELS = {"alista": "ALISTA", "lista_cpss": "LISTA-CPSS", "tilista": "TiLISTA", "ista": "ISTA steps + thresholds",
          "lista_cp": "LISTA-CP", "lista": "LISTA"}


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[lista benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _nmse_db(x: torch.Tensor, x_true: torch.Tensor) -> float:
    err = float((x - x_true).double().square().sum())
    return 10.0 * math.log10(max(err, 1e-30) / max(float(x_true.double().square().sum()), 1e-30))


@torch.no_grad()
def nmse_curve(problem, inst, lam: float, iterations: int, method: str) -> List[float]:
    """NMSE (dB, against ``inst.x_true``) after each of ``iterations`` ISTA / FISTA steps with LASSO
    weight ``lam``, computed on the fly (no trajectory kept)."""
    algo = ProximalGradient(extrapolation="nesterov" if method == "fista" else "heavy_ball", normalize="lipschitz")
    state = algo.init_state(problem.init(inst))
    out = []
    for k in range(iterations):
        p = {"step": 1.0, "threshold": lam / problem.lipschitz}
        if method == "fista":
            p["momentum"] = fista_momentum(k)
        state = algo.step(problem, inst, state, p)
        out.append(_nmse_db(state.x, inst.x_true))
    return out


def iterations_to_match(curves: Dict[float, List[float]], target: float) -> Optional[int]:
    """The fewest iterations, over the lambdas of ``curves``, whose NMSE is <= ``target``; None if none does."""
    hits = [next((k + 1 for k, v in enumerate(c) if v <= target), None) for c in curves.values()]
    hits = [h for h in hits if h is not None]
    return min(hits) if hits else None


def _train(setting: str, layer: str, K: int, steps: Optional[int], seed: int, quiet: bool, device="cpu"):
    overrides = [f"problem.{k}={v}" for k, v in SETTINGS[setting]["problem"].items()]
    overrides += [f"model.layer={layer}", f"model.num_layers={K}", f"seed={seed}"]
    if steps is not None:
        overrides.append(f"training.steps={steps}")
    cfg = load_config("preset:lista", overrides)
    model = build_model(cfg)
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False, device=device)
    secs = time.perf_counter() - t0
    _log(f"trained {layer} K={K} on {setting}: validation NMSE {-res.best_score:.2f} dB in {secs:.0f} s "
         f"({cfg.training.steps} steps)", quiet)
    return model.eval().cpu(), cfg, secs


def robustness(setting: str, problem, networks: Dict[str, object], nominal_lams: Dict[int, float], test_batch: int,
               val_batch: int, seed: int, quiet: bool) -> List[dict]:
    """Each trained network on the setting's off-nominal conditions (``ROBUSTNESS``) beside FISTA at
    the network's depth, with the lambda tuned at the nominal condition (applied unchanged, as the
    network is) and with lambda re-tuned on the condition's own validation draw (a classical solver
    that knows the condition changed). One row per (condition, network)."""
    from ..problems.lasso import LassoProblem
    rows = []
    conditions = (("nominal", {}),) + ROBUSTNESS[setting]
    for label, change in conditions:
        q = LassoProblem(**{**problem.settings(), **change})
        test = q.sample(test_batch, generator(seed, "robust-test", label))
        val = q.sample(val_batch, generator(seed, "robust-validation", label))
        fista = {}
        for K in sorted({m.num_layers for m in networks.values()}):
            lam, _ = tune_lasso(q, val, val.x_true, K, "fista")
            fista[K] = {"nominal_lambda": _nmse_db(lasso_solve(q, test, K, nominal_lams[K], "fista").x, test.x_true),
                        "retuned": _nmse_db(lasso_solve(q, test, K, lam, "fista").x, test.x_true), "lambda": lam}
        oracle = _nmse_db(q.oracle(test), test.x_true)
        for name, model in networks.items():
            K = model.num_layers
            with torch.no_grad():
                nmse = _nmse_db(model(test.y), test.x_true)
            rows.append({"condition": label, "network": name, "layers": K, "nmse_db": nmse,
                         "fista_nominal_lambda_db": fista[K]["nominal_lambda"], "fista_retuned_db": fista[K]["retuned"],
                         "fista_retuned_lambda": fista[K]["lambda"], "oracle_nmse_db": oracle})
        _log(f"robustness {setting}, {label}: " + ", ".join(f"{r['network']} {r['nmse_db']:.2f}" for r in rows[-len(networks):])
             + " (FISTA retuned: " + ", ".join(f"K={K} {v['retuned']:.2f}" for K, v in fista.items()) + ")", quiet)
    return rows


def robustness_summary(rows: List[dict]) -> List[dict]:
    """Per network: the worst NMSE off nominal and the worst margin over FISTA at the same depth
    (network minus FISTA, dB; negative means the network is better) with either lambda."""
    out = []
    for name in dict.fromkeys(r["network"] for r in rows):
        off = [r for r in rows if r["network"] == name and r["condition"] != "nominal"]
        if not off:
            continue
        worst = max(off, key=lambda r: r["nmse_db"] - r["oracle_nmse_db"])
        m_nom = max(off, key=lambda r: r["nmse_db"] - r["fista_nominal_lambda_db"])
        m_ret = max(off, key=lambda r: r["nmse_db"] - r["fista_retuned_db"])
        out.append({"network": name, "worst_gap_to_oracle_db": worst["nmse_db"] - worst["oracle_nmse_db"],
                    "worst_gap_condition": worst["condition"],
                    "worst_margin_vs_fista_nominal_db": m_nom["nmse_db"] - m_nom["fista_nominal_lambda_db"],
                    "worst_margin_vs_fista_nominal_condition": m_nom["condition"],
                    "worst_margin_vs_fista_retuned_db": m_ret["nmse_db"] - m_ret["fista_retuned_db"],
                    "worst_margin_vs_fista_retuned_condition": m_ret["condition"]})
    return out


def setting_benchmark(setting: str, depths: Sequence[int], layers: Sequence[str], steps: Optional[int],
                      test_batch: int, curve_batch: int, latency_batch: int, repeats: int, seed: int,
                      quiet: bool) -> dict:
    """One setting: tuned ISTA / FISTA rows, bounds, the networks and their ISTA / FISTA equivalents."""
    cfg = load_config("preset:lista", [f"problem.{k}={v}" for k, v in SETTINGS[setting]["problem"].items()])
    problem = build_problem(cfg.problem)
    val = problem.sample(cfg.training.validation_batch, generator(seed, "validation"))
    test = problem.sample(test_batch, generator(seed, "test"))
    sub = problem.sample(curve_batch, generator(seed, "test-curves"))
    t0 = time.perf_counter()
    classical = []
    for method in ("ista", "fista"):
        for T in sorted(set(ITERATIONS) | set(depths)):
            lam, _ = tune_lasso(problem, val, val.x_true, T, method)
            x = lasso_solve(problem, test, T, lam, method).x
            classical.append({"method": method.upper(), "iterations": T, "lambda": lam, "nmse_db": _nmse_db(x, test.x_true)})
            _log(f"{method.upper()}-{T}: lambda {lam:.4g}, NMSE {classical[-1]['nmse_db']:.2f} dB", quiet)
    converged = min((r for r in classical if r["iterations"] == max(ITERATIONS)), key=lambda r: r["nmse_db"])
    oracle = _nmse_db(problem.oracle(test), test.x_true)
    curves = {m: {f: nmse_curve(problem, sub, problem.lam * f, CURVE_LENGTH, m) for f in CURVE_FACTORS}
              for m in ("ista", "fista")}
    _log(f"classical baselines and curves in {time.perf_counter() - t0:.0f} s; oracle {oracle:.2f} dB", quiet)

    networks, per_layer = [], {}
    lat_inputs = problem.sample(latency_batch, generator(seed, "latency")).y
    lat_fns, trained = {}, {}
    for K in depths:
        for layer in layers:
            model, mcfg, secs = _train(setting, layer, K, steps, seed, quiet)
            with torch.no_grad():
                nmse = _nmse_db(model(test.y), test.x_true)
                nmse_sub = _nmse_db(model(sub.y), sub.x_true)
                per_layer[f"{LABELS.get(layer, layer)} K={K}"] = [_nmse_db(x, test.x_true) for x in model.run(test, return_all=True)]
            name = f"{LABELS.get(layer, layer)}-{K}"
            lat_fns[name] = (lambda m: (lambda: m(lat_inputs)))(model)
            trained[name] = model
            networks.append({"name": name, "layer": layer, "layers": K, "nmse_db": nmse, "params": model.num_parameters(),
                             "train_seconds": secs, "train_steps": mcfg.training.steps,
                             "ista_iterations_to_match": iterations_to_match(curves["ista"], nmse_sub),
                             "fista_iterations_to_match": iterations_to_match(curves["fista"], nmse_sub),
                             "learned": model.scalar_parameters()})
    for T in sorted(set(depths) | {100}):
        for method in ("ista", "fista"):
            lam = next(r["lambda"] for r in classical if r["method"] == method.upper() and r["iterations"] == T)
            lat_fns[f"{method.upper()}-{T}"] = (lambda t, l, mm: (lambda: lasso_solve(problem, problem.instance(lat_inputs), t, l, mm).x))(T, lam, method)
    fista_lams = {T: next(r["lambda"] for r in classical if r["method"] == "FISTA" and r["iterations"] == T) for T in depths}
    robust = robustness(setting, problem, trained, fista_lams, min(test_batch, 1000), 500, seed, quiet)
    latency = measure_latency(lat_fns, repeats=repeats)
    for row in networks + classical:
        key = row.get("name") or f"{row['method']}-{row['iterations']}"
        if key in latency:
            row["latency_ms"] = latency[key]["median_ms"]
    return {"setting": setting, "title": SETTINGS[setting]["title"], "problem": SETTINGS[setting]["problem"],
            "depths": list(depths), "classical": classical, "converged_lasso": converged, "oracle_nmse_db": oracle,
            "networks": networks, "nmse_per_layer": per_layer, "robustness": robust,
            "robustness_summary": robustness_summary(robust),
            "ista_best_nmse_db": min(min(c) for c in curves["ista"].values()),
            "fista_best_nmse_db": min(min(c) for c in curves["fista"].values()),
            "latency_batch": latency_batch}


def _fmt_it(v) -> str:
    return f"> {CURVE_LENGTH}" if v is None else str(v)


def markdown(result: dict) -> str:
    s = result["setup"]
    lines = ["# Sparse recovery: the LISTA family against tuned ISTA / FISTA", "",
             f"`autounfold benchmark-lista` (seed {s['seed']}, torch {s['torch']}, {s['threads']} threads, CPU; "
             f"{s['seconds'] / 60:.1f} min in all). Networks trained with `preset:lista` (stagewise, best validation "
             f"checkpoint) at each setting's size; every NMSE on a test draw of {s['test_batch']} signals. ISTA / FISTA: "
             "step 1/L, lambda tuned on the validation draw for each iteration count. \"Iterations to match\": the fewest "
             f"ISTA (FISTA) iterations, over {len(CURVE_FACTORS)} lambdas from lam/10 to 10 lam, that reach the network's "
             f"NMSE on a draw of {s['curve_batch']} signals (searched up to {CURVE_LENGTH}).", ""]
    for e in result["settings"]:
        conv = e["converged_lasso"]
        lines += [f"## {e['title']}", "",
                  f"Bounds: converged LASSO ({conv['method']}-{conv['iterations']}, tuned lambda {conv['lambda']:.3g}) "
                  f"{conv['nmse_db']:.2f} dB; oracle support (least squares on the true support) {e['oracle_nmse_db']:.2f} dB. "
                  f"Best NMSE on any ISTA curve {e['ista_best_nmse_db']:.2f} dB, FISTA {e['fista_best_nmse_db']:.2f} dB.", "",
                  "| network | NMSE dB | ISTA its to match | FISTA its to match | parameters | training | latency ms (batch "
                  f"{e['latency_batch']}) |", "|---|---|---|---|---|---|---|"]
        for n in e["networks"]:
            lat = f"{n['latency_ms']:.2f}" if "latency_ms" in n else "—"
            lines.append(f"| {n['name']} | {n['nmse_db']:.2f} | {_fmt_it(n['ista_iterations_to_match'])} | "
                         f"{_fmt_it(n['fista_iterations_to_match'])} | {n['params']} | {n['train_seconds']:.0f} s "
                         f"({n['train_steps']} steps) | {lat} |")
        lines += ["", "| classical (lambda tuned per count) | iterations | lambda | NMSE dB | latency ms |", "|---|---|---|---|---|"]
        for r in e["classical"]:
            lat = f"{r['latency_ms']:.2f}" if "latency_ms" in r else "—"
            lines.append(f"| {r['method']} | {r['iterations']} | {r['lambda']:.4g} | {r['nmse_db']:.2f} | {lat} |")
        lines.append("")
        if e.get("robustness"):
            lines += _robustness_markdown(e)
    lines += bars_markdown(result.get("bars") or [])
    return "\n".join(lines) + "\n"


def _robustness_markdown(e: dict) -> List[str]:
    lines = ["### Off the training conditions", "",
             "The networks above applied unchanged (same matrix A) to conditions they were not trained on, beside "
             "FISTA at the same depth with the nominal lambda (also applied unchanged) and with lambda re-tuned on the "
             "condition's own validation draw; oracle-support bound for scale. NMSE in dB on a test draw per condition.", "",
             "| condition | network | NMSE dB | FISTA, nominal lambda | FISTA, re-tuned lambda | oracle |",
             "|---|---|---|---|---|---|"]
    for r in e["robustness"]:
        lines.append(f"| {r['condition']} | {r['network']} | {r['nmse_db']:.2f} | {r['fista_nominal_lambda_db']:.2f} | "
                     f"{r['fista_retuned_db']:.2f} | {r['oracle_nmse_db']:.2f} |")
    lines += ["", "Worst case off nominal (margin = network minus FISTA at the same depth; negative: the network is better):", "",
              "| network | worst gap to oracle dB (condition) | worst margin vs FISTA, nominal lambda | worst margin vs "
              "FISTA, re-tuned lambda |", "|---|---|---|---|"]
    for r in e.get("robustness_summary", []):
        lines.append(f"| {r['network']} | {r['worst_gap_to_oracle_db']:.2f} ({r['worst_gap_condition']}) | "
                     f"{r['worst_margin_vs_fista_nominal_db']:+.2f} ({r['worst_margin_vs_fista_nominal_condition']}) | "
                     f"{r['worst_margin_vs_fista_retuned_db']:+.2f} ({r['worst_margin_vs_fista_retuned_condition']}) |")
    return lines + [""]


BARS = (("textbook", "alista", 8, -17.5), ("textbook", "lista_cpss", 8, -17.5), ("textbook", "lista_cpss", 16, -18.9),
        ("classic", "alista", 16, -37.0), ("classic", "lista_cpss", 16, -38.0))


def _bars(settings: List[dict]) -> List[dict]:
    out = []
    for setting, layer, K, bar in BARS:
        e = next((e for e in settings if e["setting"] == setting), None)
        n = next((n for n in (e or {}).get("networks", []) if n["layer"] == layer and n["layers"] == K), None)
        if n is not None:
            out.append({"bar": f"{setting} {LABELS[layer]} K={K} <= {bar} dB", "measured": n["nmse_db"],
                        "met": n["nmse_db"] <= bar})
    return out


def run_lista_benchmark(out_dir, settings: Sequence[str] = ("textbook", "classic"),
                        layers: Sequence[str] = ("alista", "lista_cpss"), steps: Optional[int] = None,
                        depths: Optional[Dict[str, Sequence[int]]] = None, test_batch: int = 2000,
                        curve_batch: int = 500, latency_batch: int = 256, repeats: int = 20, seed: int = 0,
                        quiet: bool = False) -> dict:
    """Run the benchmark and write lista_benchmark.json / LISTA_RESULTS.md / lista_nmse_per_layer.png
    into ``out_dir``. ``steps``: training steps per model (default: the preset's)."""
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise ConfigError(f"benchmark-lista: settings must be among {', '.join(SETTINGS)} (got {list(settings)})")
    depths = depths or {"textbook": (8, 16), "classic": (16,)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = [setting_benchmark(s, depths[s], layers, steps, test_batch, curve_batch, latency_batch, repeats, seed, quiet)
               for s in settings]
    result = {"setup": {"seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "test_batch": test_batch, "curve_batch": curve_batch, "steps": steps,
                        "seconds": time.perf_counter() - t0},
              "settings": results, "bars": _bars(results)}
    from .plots import line_curves
    series = {f"{e['setting']}: {name}": vals for e in results for name, vals in e["nmse_per_layer"].items()}
    result["plots"] = [line_curves({k: (list(range(1, len(v) + 1)), v) for k, v in series.items()}, "layer",
                                   "test NMSE (dB)", out / "lista_nmse_per_layer.png", "NMSE after each layer")]
    (out / "lista_benchmark.json").write_text(json.dumps(result, indent=2))
    (out / "LISTA_RESULTS.md").write_text(markdown(result))
    return result

"""The hybrid precoding benchmark job: unfolded PGA against classical PGA (steps tuned per depth),
PE-AltMin, the two-stage design and the subspace design, as % of the fully-digital bound; transfer to other antenna and
band counts; conditions not trained on; latency; JSON + Markdown + PNG (``autounfold
benchmark-hybrid``, ``make benchmark-hybrid``).

Every unfolded model is trained with the preset recipe (``preset:hybrid``: 12 antennas, 10 RF chains,
8 bands, 6 users, clustered multipath, SNR U[0, 20] dB, log-det rate, ``step_init: tuned``) and then
tested unchanged. Classical PGA is the same update rule (``algorithms.hybrid_pga``) with fixed analog
and digital steps and heavy-ball momentum, chosen by a coordinate search on a validation draw of its own (never
the test draw) at each depth (``_tuned_steps``, ``algorithms.tuning.tune_hybrid_pga``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..algorithms import reference
from ..algorithms.hybrid_pga import HybridPGA, rate_trajectory
from ..algorithms.tuning import HYBRID_MOMENTA, HYBRID_STEPS, tune_hybrid_pga
from ..build import build_model
from ..config import ExperimentConfig, load_config
from ..seeding import generator
from ..training import train
from . import baselines
from .evaluate import scenario_config, transfer, with_problem_change
from .latency import measure_latency

LABELS = {"hybrid_pga": "unfolded PGA", "hybrid_pga_band": "unfolded PGA, step per band",
          "hybrid_pga_momentum": "unfolded PGA + momentum"}
PGA_DEPTHS = (1, 2, 3, 5, 10, 30, 100)
CONVERGED = 1000                                  # iterations of "PGA to convergence"
ROBUSTNESS = ("iid", "snr0", "snr10", "snr20", "snr30", "as30", "delay16", "umi")   # umi: 3GPP UMi bands (Sionna)
ANTENNAS = (8, 16, 32)
PGA_STRIDE_100 = 2                                # classical PGA-100's first sweep takes one step in this many
PGA_REACH = 2                                     # the coordinate search's step neighbourhood, in grid places
STARTS = {"svd": "SVD-phase analog + best digital (two-stage)",
          "subspace": "subspace analog (alternating projections) + best digital",
          "random": "random-phase analog + best digital"}
BANDS = (4, 16)


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[hybrid benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _rf_for(M: int, L: int, N: int) -> int:
    """RF chains at another antenna count: the preset's L where it fits (L < M), else max(N, M - 2)."""
    return L if L < M else max(N, M - 2)


def _train(overrides: Sequence[str], steps: int, seed: int, quiet: bool, what: str):
    cfg = load_config("preset:hybrid", list(overrides) + [f"training.steps={steps}", f"seed={seed}"])
    t0 = time.perf_counter()
    model = build_model(cfg)
    res = train(model, cfg.training, seed=cfg.seed, progress=False)
    secs = time.perf_counter() - t0
    _log(f"trained {what}: validation {res.best_score:.3f}% in {secs:.0f} s", quiet)
    return model.eval(), model.config, secs


def _tuned_steps(p, depth: int, val, vref, stride: int = 1, safeguard: bool = False) -> dict:
    """Classical PGA's analog and digital steps and heavy-ball momentum, best on the validation draw
    (``tune_hybrid_pga``'s coordinate search over HYBRID_STEPS x HYBRID_STEPS x HYBRID_MOMENTA;
    ``safeguard``: of the safeguarded iteration, tuned as it runs)."""
    best, _ = tune_hybrid_pga(p, val, vref, depth, steps=HYBRID_STEPS, momenta=HYBRID_MOMENTA, stride=stride,
                              reach=PGA_REACH, safeguard=safeguard)
    return best


@torch.no_grad()
def _unseen_row(networks: Dict[str, tuple], steps: Dict[int, dict], scenario: str, n: int, gen,
                guarded_steps: Optional[Dict[int, dict]] = None):
    """One row of a table of conditions not trained on: each network (label -> (model, config, ...), the
    first one's moved problem drawing the channels) and classical PGA with each depth's nominal steps (and,
    with ``guarded_steps``, safeguarded classical PGA with its own nominal steps), all unchanged, on ``n``
    channels of ``scenario`` drawn with ``gen``. Returns (row, problem, channels, reference) for the
    caller's closed-form columns."""
    row, q, first = {"scenario": scenario}, None, None
    for label, (model, cfg, *_) in networks.items():
        moved_cfg = scenario_config(cfg, scenario)
        # the first network's moved problem serves every network with the same problem section (building one
        # again per network meant, for 3GPP scenarios, another Sionna channel pool)
        shared = q if q is not None and moved_cfg.problem == first.problem else None
        moved = transfer(model, moved_cfg, shared)
        if q is None:
            first = moved_cfg
            q = moved.problem
            row["label"] = q.scenarios[scenario][0]
            t = q.sample(n, gen)
            r = reference(q, t)
        row[label] = q.summarize(moved.run(t), t, r)
    for T, st in steps.items():
        row[f"PGA-{T} (nominal steps)"] = q.summarize(baselines.hybrid_pga(q, t, T, st), t, r)
    for T, st in (guarded_steps or {}).items():
        row[f"PGA-{T}, safeguarded (nominal steps)"] = q.summarize(baselines.hybrid_pga(q, t, T, st, safeguard=True), t, r)
    return row, q, t, r


def safeguarded(model, cfg: ExperimentConfig):
    """The trained network with ``model.safeguard`` switched on (same learned parameters; per channel the
    best iterate so far), for deploying a network trained without it."""
    data = cfg.model_dump(mode="json")
    data["model"]["safeguard"] = True
    guarded = ExperimentConfig.model_validate(data)
    return transfer(model, guarded, model.problem), guarded


def run_hybrid_benchmark(out: Path, steps: int = 300, depth: int = 5,
                         layers: Sequence[str] = ("hybrid_pga", "hybrid_pga_band", "hybrid_pga_momentum"),
                         test_batch: int = 1024, val_batch: int = 256, latency_batch: int = 256, repeats: int = 20,
                         seed: int = 0, antennas: Sequence[int] = ANTENNAS, bands: Sequence[int] = BANDS,
                         sum_rate: bool = True, quiet: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    result: Dict[str, object] = {"settings": {"steps": steps, "depth": depth, "layers": list(layers),
                                              "test_batch": test_batch, "val_batch": val_batch,
                                              "latency_batch": latency_batch, "repeats": repeats, "seed": seed,
                                              "threads": torch.get_num_threads(), "torch": torch.__version__,
                                              "converged_iterations": CONVERGED, "objective": "logdet (eq. 11)",
                                              "pga_grid": {"steps": [HYBRID_STEPS[0], HYBRID_STEPS[-1], len(HYBRID_STEPS)],
                                                           "momenta": list(HYBRID_MOMENTA), "stride_at_100": PGA_STRIDE_100,
                                                           "reach": PGA_REACH}}}
    models = {layer: _train([f"model.layer={layer}", f"model.num_layers={depth}"], steps, seed, quiet, f"{layer}-{depth}")
              for layer in layers}
    main, main_cfg, _ = models[layers[0]]
    p = main.problem
    result["settings"]["problem"] = p.describe()
    val = p.sample(val_batch, generator(seed, "hybrid-benchmark", "validation"))
    vref = reference(p, val)
    test = p.sample(test_batch, generator(seed, "hybrid-benchmark", "test"))
    ref = reference(p, test)

    # ---- quality at the preset's setting ---------------------------------------------------------------
    tuned = {}
    depths = sorted(set(PGA_DEPTHS) | {depth, 30, 100})
    for T in depths:
        t0 = time.perf_counter()
        # at 100 iterations the first sweep takes every other step (a decade apart) to bound its cost; the
        # coordinate search then refines around its pick on the full grid
        tuned[T] = _tuned_steps(p, T, val, vref, stride=PGA_STRIDE_100 if T >= 100 else 1)
        _log(f"PGA-{T} steps {tuned[T]} in {time.perf_counter() - t0:.0f} s", quiet)
    rows: List[dict] = []
    with torch.no_grad():
        for layer in layers:
            m = models[layer][0]
            rows.append({"method": f"{LABELS.get(layer, layer)}-{depth}", "kind": "unfolded", "iterations": depth,
                         **p.summarize(m.run(test), test, ref)})
        for T in depths:
            rows.append({"method": f"PGA-{T}, tuned steps", "kind": "classical", "iterations": T,
                         "steps": tuned[T], **p.summarize(baselines.hybrid_pga(p, test, T, tuned[T]), test, ref)})
        rows.append({"method": f"PGA-{CONVERGED} (PGA-100's steps, to convergence)", "kind": "classical",
                     "iterations": CONVERGED, **p.summarize(baselines.hybrid_pga(p, test, CONVERGED, tuned[100]), test, ref)})
        for T in (depth, 30):
            rows.append({"method": f"PE-AltMin-{T} + best digital", "kind": "classical", "iterations": T,
                         **p.summarize(baselines.altmin(p, test, T), test, ref)})
        for init in ("svd", "subspace"):
            shared = " (the shared start)" if init == p.init_method else ""
            rows.append({"method": STARTS[init] + shared, "kind": "closed form", "iterations": 0,
                         **p.summarize(p.init(test, init), test, ref)})
    result["quality"] = {"bound_rate": float(p.objective(ref, test).mean()), "rows": rows}
    _log("quality table done", quiet)

    # ---- rate against iteration --------------------------------------------------------------------------
    curve_T = 30
    traj = {f"PGA, PGA-{T}'s steps": rate_trajectory(p, test, HybridPGA(), tuned[T], curve_T).tolist() for T in (depth, 30)}
    bound = float(p.objective(ref, test).mean())
    with torch.no_grad():
        for layer in layers:
            its = models[layer][0].run(test, return_all=True)
            traj[f"{LABELS.get(layer, layer)}-{depth}"] = [float(p.objective(p.init(test), test).mean())] + \
                [float(p.objective(x, test).mean()) for x in its]
    result["rate_vs_iteration"] = {"bound_rate": bound, "curves": {k: [100 * v / bound for v in vs] for k, vs in traj.items()}}

    # ---- conditions not trained on (the nominal model and the nominal-tuned classical steps, unchanged) ----
    robust = []
    for sc in ROBUSTNESS:
        row, q, t, r = _unseen_row({f"{LABELS.get(la, la)}-{depth}": models[la] for la in layers},
                                   {T: tuned[T] for T in (depth, 30)}, sc, test_batch // 2, generator(seed, "hybrid-benchmark", sc))
        with torch.no_grad():
            row["two-stage"] = q.summarize(baselines.two_stage(q, t, 0), t, r)
            row["subspace"] = q.summarize(baselines.subspace(q, t, 0), t, r)
        robust.append(row)
    result["robustness"] = robust
    _log("robustness done", quiet)

    # ---- scalability: the nominal model at other sizes against a model trained there --------------------
    L, N = p.n_rf, p.n_users
    scale = []
    sizes = [{"n_antennas": M, "n_rf": _rf_for(M, L, N)} for M in antennas] + [{"n_bands": b} for b in bands]
    for change in sizes:
        what = ", ".join(f"{k}={v}" for k, v in change.items())
        native, native_cfg, _ = _train([f"problem.{k}={v}" for k, v in change.items()]
                                       + [f"model.layer={layers[0]}", f"model.num_layers={depth}"], steps, seed, quiet,
                                       f"{layers[0]}-{depth} at {what}")
        moved = transfer(main, with_problem_change(main_cfg, change, "benchmark"))
        q = native.problem
        t = q.sample(test_batch // 2, generator(seed, "hybrid-benchmark", "scale", what))
        r = reference(q, t)
        qv = q.sample(val_batch, generator(seed, "hybrid-benchmark", "scale-val", what))
        qvr = reference(q, qv)
        local = _tuned_steps(q, depth, qv, qvr)
        local30 = _tuned_steps(q, 30, qv, qvr)
        with torch.no_grad():
            s_moved, s_native = q.summarize(moved.run(t), t, r), q.summarize(native.run(t), t, r)
            scale.append({"change": change, "label": what, "transferred": s_moved, "trained_here": s_native,
                          "ratio_pct": 100.0 * s_moved["rate_mean"] / s_native["rate_mean"],
                          f"PGA-{depth} (tuned here)": q.summarize(baselines.hybrid_pga(q, t, depth, local), t, r),
                          f"PGA-{depth} (nominal steps)": q.summarize(baselines.hybrid_pga(q, t, depth, tuned[depth]), t, r),
                          "PGA-30 (tuned here)": q.summarize(baselines.hybrid_pga(q, t, 30, local30), t, r),
                          "start (closed form)": q.summarize(q.init(t), t, r)})
    result["scalability"] = scale
    _log("scalability done", quiet)

    # ---- latency -------------------------------------------------------------------------------------------
    lat_inst = test[:latency_batch]
    fns = {f"{LABELS.get(layer, layer)}-{depth}": (lambda m=models[layer][0]: m.run(lat_inst)) for layer in layers}
    fns.update({f"PGA-{depth}": lambda: baselines.hybrid_pga(p, lat_inst, depth, tuned[depth]),
                "PGA-30": lambda: baselines.hybrid_pga(p, lat_inst, 30, tuned[30]),
                f"PE-AltMin-{depth}": lambda: baselines.altmin(p, lat_inst, depth),
                "PE-AltMin-30": lambda: baselines.altmin(p, lat_inst, 30),
                "two-stage": lambda: baselines.two_stage(p, lat_inst, 0),
                "subspace": lambda: baselines.subspace(p, lat_inst, 0)})
    lat = measure_latency(fns, repeats=repeats)
    with torch.no_grad():
        pct = {name: p.summarize(fn(), lat_inst, ref[:latency_batch])["pct_of_bound"] for name, fn in fns.items()}
    fd = measure_latency({"fully digital (water-filling, not hybrid)": lambda: p.fully_digital(lat_inst)}, repeats=repeats)
    result["latency"] = {"batch": latency_batch,
                         "rows": [{"method": k, **v, "pct_of_bound": pct[k],
                                   "speedup_vs_pga30": lat["PGA-30"]["median_ms"] / v["median_ms"]} for k, v in lat.items()],
                         "fully_digital_ms": next(iter(fd.values()))["median_ms"]}
    result["learned_steps"] = {layer: models[layer][0].scalar_parameters() for layer in layers}
    _log("latency done", quiet)

    # ---- the per-user sum-rate objective -------------------------------------------------------------------
    if sum_rate:
        # the plain network and, where the run has it, the momentum one (momentum is what classical PGA tunes here)
        sr_layers = [layers[0]] + [la for la in layers[1:] if la == "hybrid_pga_momentum"]
        srs = {la: _train(["problem.objective=sum_rate", f"model.layer={la}", f"model.num_layers={depth}"],
                          steps, seed, quiet, f"{la}-{depth}, sum_rate objective") for la in sr_layers}
        q = next(iter(srs.values()))[0].problem
        qv = q.sample(val_batch, generator(seed, "hybrid-benchmark", "sr-val"))
        qvr = reference(q, qv)
        t = q.sample(test_batch // 2, generator(seed, "hybrid-benchmark", "sr-test"))
        t0 = time.perf_counter()
        r = reference(q, t)
        ref_s = time.perf_counter() - t0
        sr_tuned, sr_guarded = {}, {}
        for T in (depth, 30):
            t0 = time.perf_counter()
            sr_tuned[T] = _tuned_steps(q, T, qv, qvr)
            _log(f"sum rate: PGA-{T} steps {sr_tuned[T]} in {time.perf_counter() - t0:.0f} s", quiet)
            t0 = time.perf_counter()           # the safeguarded solver tuned as it runs (its best steps may be larger)
            sr_guarded[T] = _tuned_steps(q, T, qv, qvr, safeguard=True)
            _log(f"sum rate: PGA-{T}, safeguarded, steps {sr_guarded[T]} in {time.perf_counter() - t0:.0f} s", quiet)
        # each sum-rate network also deployed with model.safeguard on (trained without it)
        sr_nets = {}
        for la, (sr, cfg, *_) in srs.items():
            sr_nets[f"{LABELS.get(la, la)}-{depth}"] = (sr, cfg)
            sr_nets[f"{LABELS.get(la, la)}-{depth}, safeguard at inference"] = safeguarded(sr, cfg)
        srows = []
        with torch.no_grad():
            for label, (net, _) in sr_nets.items():
                srows.append({"method": label, **q.summarize(net.run(t), t, r)})
            for T in (depth, 30):
                srows.append({"method": f"PGA-{T}, tuned steps", "steps": sr_tuned[T],
                              **q.summarize(baselines.hybrid_pga(q, t, T, sr_tuned[T]), t, r)})
                srows.append({"method": f"PGA-{T}, safeguarded, tuned steps", "steps": sr_guarded[T],
                              **q.summarize(baselines.hybrid_pga(q, t, T, sr_guarded[T], safeguard=True), t, r)})
            srows.append({"method": f"{STARTS[q.init_method].replace('best digital', 'RZF digital')} (the shared start)",
                          **q.summarize(q.init(t), t, r)})
        # the sum-rate networks and classical steps, unchanged, on the conditions not trained on
        sr_robust = []
        for sc in ROBUSTNESS:
            row, q_sc, t_sc, r_sc = _unseen_row(sr_nets, sr_tuned, sc, test_batch // 4,
                                                generator(seed, "hybrid-benchmark", "sr", sc), guarded_steps=sr_guarded)
            with torch.no_grad():
                row["start"] = q_sc.summarize(q_sc.init(t_sc), t_sc, r_sc)
            sr_robust.append(row)
        result["sum_rate"] = {"bound": "fully-digital WMMSE per band from RZF, per channel to a relative change "
                                       "< 1e-6 (at most 1000 iterations)", "reference_seconds": ref_s, "rows": srows,
                              "robustness": sr_robust, "robustness_batch": test_batch // 4}
        _log("sum-rate objective done", quiet)

    result["seconds"] = time.perf_counter() - t_start
    (out / "hybrid_benchmark.json").write_text(json.dumps(result, indent=1))
    (out / "hybrid_benchmark.md").write_text(markdown(result))
    plots(result, out)
    return result


def _grid_text(settings: dict) -> str:
    """How classical PGA was tuned, from the run's settings."""
    g = settings.get("pga_grid")
    if g is None:                                   # runs before the grid was recorded (2026-12-06)
        return ("Classical PGA's analog and digital steps (1e-4 .. 1e2 of a block's norm), then a heavy-ball momentum "
                "(0 .. 0.9), are swept on a validation draw at each depth and objective (at 100 iterations only steps "
                ">= 0.3, to bound the sweep's cost)")
    lo, hi, n = g["steps"]
    return (f"Classical PGA's analog and digital steps ({n} values, {lo:.0e} .. {hi:.0e} of a block's norm, half a decade "
            f"apart) and heavy-ball momentum ({', '.join(f'{m:g}' for m in g['momenta'])}) are chosen on a validation "
            "draw at each depth and objective by a coordinate search: every step pair without momentum, then every "
            f"momentum at the best pair, then the pairs within {g.get('reach', 2)} grid places of it at that momentum, "
            "repeated until the pick "
            f"stays (at 100 iterations the first sweep takes one step in {g['stride_at_100']})")


def _robust_table(rows: List[dict]) -> List[str]:
    """Markdown rows of a robustness table (one row per scenario, % of bound and p5 per method) and its worst case."""
    listed = [k for k in rows[0] if k not in ("scenario", "label")]
    methods = []                       # each safeguarded classical column beside its plain one
    for m in listed:
        if ", safeguarded (nominal steps)" in m:
            continue
        methods.append(m)
        guarded = m.replace(" (nominal steps)", ", safeguarded (nominal steps)")
        if m.endswith(" (nominal steps)") and guarded in listed:
            methods.append(guarded)
    methods += [m for m in listed if m not in methods]
    lines = ["| scenario | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for row in rows:
        lines.append(f"| {row['label']} | " + " | ".join(f"{row[m]['pct_of_bound']:.3f} ({row[m]['p5_pct']:.2f})"
                                                      for m in methods) + " |")
    worst = {m: min(row[m]["pct_of_bound"] for row in rows) for m in methods}
    lines.append("| **worst** | " + " | ".join(f"**{worst[m]:.3f}**" for m in methods) + " |")
    return lines


def markdown(result: dict) -> str:
    s = result["settings"]
    pr = s["problem"]
    d = s["depth"]
    lines = ["# Wideband hybrid precoding: unfolded PGA against the classical hybrid designs", "",
             f"`autounfold benchmark-hybrid` (training steps {s['steps']}, depth {d}, test batch {s['test_batch']}, "
             f"validation batch {s['val_batch']}, {s['threads']} threads, torch {s['torch']}, seed {s['seed']}). "
             f"Setting: M = {pr['n_antennas']} antennas, L = {pr['n_rf']} RF chains, B = {pr['n_bands']} bands, "
             f"N = {pr['n_users']} users, channel {pr['channel']['model']}, SNR U{pr['channel']['snr_db']} dB, "
             f"objective {s['objective']}. % = 100 x mean rate / mean rate of the fully-digital bound (per band the "
             "best precoder with M chains: right singular vectors with water-filling); p5 / min over channels of "
             f"the per-channel %. {_grid_text(s)}; classical and unfolded PGA start from the "
             f"same point, the {STARTS[pr.get('init', 'svd')]} "
             "(svd: phases of the top-L eigenvectors of sum_b H_b^H H_b; subspace: from there, alternating "
             "projections onto their span and onto unit modulus); PE-AltMin starts from the SVD phases.", ""]
    q = result["quality"]
    lines += [f"## Rate at the preset's setting (bound {q['bound_rate']:.3f} bit/s/Hz)", "",
              "| method | kind | iterations | % of bound | p5 % | min % | rate |", "|---|---|---|---|---|---|---|"]
    for r in q["rows"]:
        lines.append(f"| {r['method']} | {r['kind']} | {r['iterations']} | {r['pct_of_bound']:.3f} | {r['p5_pct']:.2f} | "
                     f"{r['min_pct']:.2f} | {r['rate_mean']:.3f} |")
    rv = result["rate_vs_iteration"]["curves"]
    lines += ["", "## % of bound after each iteration (0 = the start)", "",
              "| method | " + " | ".join(f"k={k}" for k in (0, 1, 2, 3, 5, 10, 30)) + " |", "|---|" + "---|" * 7]
    for name, vals in rv.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[k]:.3f}" if k < len(vals) else "-" for k in (0, 1, 2, 3, 5, 10, 30)) + " |")
    lines += ["", "## Not trained on (nominal model and nominal classical steps, unchanged): % of bound (p5)", ""]
    lines += _robust_table(result["robustness"])
    sc = result["scalability"]
    if sc:
        keys = [k for k in sc[0] if k.startswith("PGA-") or k.startswith("start")]
        lines += ["", "## Scalability: the nominal model applied unchanged at other sizes, against a model trained there", "",
                  "| change | transferred % of bound | trained-here % of bound | transferred / trained-here rate | "
                  + " | ".join(keys) + " |", "|---|---|---|---|" + "---|" * len(keys)]
        for r in sc:
            lines.append(f"| {r['label']} | {r['transferred']['pct_of_bound']:.3f} | {r['trained_here']['pct_of_bound']:.3f} | "
                         f"{r['ratio_pct']:.2f}% | " + " | ".join(f"{r[k]['pct_of_bound']:.3f}" for k in keys) + " |")
    la = result["latency"]
    lines += ["", f"## Latency (batch {la['batch']}, one process, interleaved, median and IQR)", "",
              "| method | median ms | IQR ms | speed-up vs PGA-30 | % of bound |", "|---|---|---|---|---|"]
    for r in la["rows"]:
        lines.append(f"| {r['method']} | {r['median_ms']:.2f} | {r['iqr_ms']:.2f} | {r['speedup_vs_pga30']:.1f}x | "
                     f"{r['pct_of_bound']:.3f} |")
    lines.append(f"\nThe fully-digital bound itself (water-filling, M chains, not a hybrid precoder): "
                 f"{la['fully_digital_ms']:.2f} ms.")
    ls = result["learned_steps"]
    lines += ["", "## Learned steps per layer", "", "| model | parameter | " + " | ".join(f"layer {k + 1}" for k in range(d)) + " |",
              "|---|---|" + "---|" * d]
    for layer, params in ls.items():
        for name, vals in params.items():
            lines.append(f"| {LABELS.get(layer, layer)} | {name} | " + " | ".join(f"{v:.3g}" for v in vals) + " |")
    if "sum_rate" in result:
        srr = result["sum_rate"]
        lines += ["", f"## Per-user sum rate with interference (bound: {srr['bound']})", "",
                  "| method | % of bound | p5 % | min % | rate | tuned analog / digital step, momentum |",
                  "|---|---|---|---|---|---|"]
        for r in srr["rows"]:
            st = r.get("steps")
            knobs = f"{st['step_analog']:.3g} / {st['step_digital']:.3g}, {st.get('momentum', 0.0):.2g}" if st else ""
            lines.append(f"| {r['method']} | {r['pct_of_bound']:.3f} | {r['p5_pct']:.2f} | {r['min_pct']:.2f} | "
                         f"{r['rate_mean']:.3f} | {knobs} |")
        if srr.get("robustness"):
            guard = any("safeguard" in k for k in srr["robustness"][0])
            lines += ["", f"Sum rate, not trained on (the sum-rate networks and the sum-rate classical steps, unchanged; "
                          f"{srr['robustness_batch']} channels each): % of bound (p5)"
                      + (". \"safeguard at inference\": the same network with `model.safeguard` on (each layer outputs "
                         "per channel the best iterate so far); safeguarded PGA: the same iteration with that output, its "
                         "steps tuned with it on" if guard else ""), ""]
            lines += _robust_table(srr["robustness"])
    lines += ["", f"Total time {result['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def plots(result: dict, out: Path) -> None:
    from .plots import latency_scatter, line_curves, plt
    ylabel = "% of the fully-digital bound"
    rv = result["rate_vs_iteration"]["curves"]
    line_curves({k: (range(len(v)), v) for k, v in rv.items()}, "iteration / layer", ylabel,
                out / "hybrid_rate_vs_iteration.png")
    la = result["latency"]
    latency_scatter(la["rows"], "pct_of_bound", la["batch"], ylabel, out / "hybrid_rate_vs_latency.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for layer, params in result["learned_steps"].items():
        for ax, name in zip(axes, ("step_analog", "step_digital")):
            if name in params:
                ax.plot(range(1, len(params[name]) + 1), params[name], marker="o", label=LABELS.get(layer, layer))
            else:                                     # one digital step per band: the bands' spread
                band = [v for k, v in params.items() if k.startswith(name + ".")]
                if band:
                    t = torch.tensor(band)
                    k = range(1, t.shape[1] + 1)
                    ax.plot(k, t.mean(0).tolist(), marker="s", label=f"{LABELS.get(layer, layer)} (mean over bands)")
                    ax.fill_between(k, t.min(0).values.tolist(), t.max(0).values.tolist(), alpha=0.2)
    for ax, name in zip(axes, ("analog step mu_a", "digital step mu_d")):
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hybrid_learned_steps.png", dpi=120)
    plt.close(fig)

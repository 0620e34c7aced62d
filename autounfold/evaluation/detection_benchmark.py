"""The MIMO detection benchmark: SER-vs-SNR curves of every detector on four cases, the SNR each
needs for SER 1e-2 read from the curves, latency, and the issue's bars (``autounfold
benchmark-detection``, ``make benchmark-detection``).

Cases (``CASES``): 4 x 4 QPSK and 8 x 8 16-QAM on i.i.d. Rayleigh; 8 x 8 16-QAM on the 3GPP UMi
channel (Sionna), with the networks trained on Rayleigh and applied unchanged, and trained on UMi;
4 x 4 QPSK behind 3-bit ADCs (a mismatch the model-based detectors do not know about).

Detectors: ZF, LMMSE, soft interference cancellation (SIC) with K iterations (the loop DeepSIC
unfolds) plain, with damping and noise inflation tuned at each SNR on a validation draw, and with
each user's strongest residual interferer kept exact (the mixture SIC, ``sic_mix``), Sionna's K-best
(K = 16) and EP (10 iterations), exhaustive ML where C^U <= 65536 (per-user MAP decisions, which are
at least as good as the joint ML vector in SER), DetNet's layer with its classical parameters at
DetNet's depth (SIC without damping, ``algorithms.detection.detnet_classical``), and the trained networks:
DeepSIC (trained sequentially, each iteration alone then end to end, and end to end only), DeepSIC
on the mixture SIC (layer ``deepsic_mix``, trained sequentially), DetNet
and SIC with a learned damping and two noise inflations per iteration (paradigm 1). Every network is trained with its
preset on the case's SNR range; every SER is on a fresh test draw per SNR point. For the UMi case the
test draws come from a different user pool (``pool_seed`` 1) than training (``pool_seed`` 0); to keep
the run affordable DeepSIC (sequential), DeepSIC on the mixture SIC, DetNet and the learned-damping
SIC are trained on UMi, and all five Rayleigh-trained networks are applied to it unchanged.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..algorithms import detection as D
from ..algorithms.tuning import tune_sic
from ..build import build_model, build_problem
from ..config import load_config
from ..curves import crossing_kind, snr_at
from ..errors import ConfigError
from ..seeding import generator
from ..training import train
from .latency import measure_latency
from .report import bars_markdown, fmt as _fmt

TARGET_SER = 1e-2
SIC_VALIDATION = 2000                 # symbol vectors on which the tuned SIC's knobs are chosen, per SNR
CASES = {
    "4x4_qpsk": {"title": "4 x 4 QPSK, i.i.d. Rayleigh", "sizes": (4, 4, "qpsk"), "channel": {},
                 "train_snr": (0.0, 16.0), "snrs": [0, 2, 4, 6, 8, 10, 12, 14, 16], "refine": {"snr": (6.0, 8.0)}},
    "8x8_16qam": {"title": "8 x 8 16-QAM, i.i.d. Rayleigh", "sizes": (8, 8, "16qam"), "channel": {},
                  "train_snr": (8.0, 28.0), "snrs": [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28],
                  "refine": {"snr": (13.0, 15.0), "batch": 8192}},
    "8x8_16qam_umi": {"title": "8 x 8 16-QAM, 3GPP UMi (Sionna), test users from another pool", "sizes": (8, 8, "16qam"),
                      "channel": {"model": "umi"}, "train_snr": (8.0, 28.0), "snrs": [8, 12, 16, 20, 24, 28],
                      "transfer_from": "8x8_16qam", "networks": ("deepsic", "deepsic_mix", "detnet", "sic_damped"),
                      "refine": {"snr": (15.0, 17.0), "batch": 8192}},
    "4x4_qpsk_adc3": {"title": "4 x 4 QPSK behind 3-bit ADCs (mismatch)", "sizes": (4, 4, "qpsk"), "channel": {},
                      "extra": {"adc_bits": 3}, "train_snr": (0.0, 28.0), "snrs": [0, 4, 8, 12, 16, 20, 24, 28],
                      "refine": {"snr": (8.0, 10.0)}},
}
"""Each case's problem, training SNR range, test SNR grid and ``refine``: where the draw of a network's
``training.refine`` lies (every network ends its training with one, scored by the SER), around the SNR
where SIC-5 and the networks cross SER 1e-2 here, and its size where the preset's is slow (8 x 8 16-QAM)."""
SCALAR_REFINE = ["training.refine.offsets=[-2,-1,-0.5,-0.25,0.25,0.5,1,2]", "training.refine.batch=16384"]
"""DeepSIC's and the learned SIC's gradient steps are followed by ``training.refine`` over all their per-layer
scalars (DeepSIC: its two noise inflations; the learned SIC: also its damping), scored by the SER at the
case's band (``CASES[...]["refine"]``), as DetNet's preset does with its step and temperature: behind 3-bit
ADCs it took DeepSIC (sequential) from 10.20 to 9.48 dB at SER 1e-2 (benchmarks/experiments/deepsic_recipes.py)."""
NETWORKS = {"deepsic": ("preset:deepsic", [*SCALAR_REFINE]),
            "deepsic_e2e": ("preset:deepsic", ["training.loss=end_to_end", *SCALAR_REFINE]),
            "deepsic_mix": ("preset:deepsic", ["model.layer=deepsic_mix", *SCALAR_REFINE]),
            "detnet": ("preset:detnet", []), "sic_damped": ("preset:deepsic", ["model.layer=sic_damped", *SCALAR_REFINE])}
LABELS = {"deepsic": "DeepSIC (sequential)", "deepsic_e2e": "DeepSIC (end to end)",
          "deepsic_mix": "DeepSIC on the mixture SIC (sequential)", "detnet": "DetNet",
          "sic_damped": "SIC, learned damping + inflation"}


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[detection benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def case_test_pool(case: dict) -> int:
    """The user pool a case's test draws come from: 1 on a 3GPP channel (training uses pool 0, so the
    test users are unseen), 0 (unused) on the others."""
    return 1 if case["channel"].get("model") else 0


def _overrides(case: dict, snr, pool_seed: int = 0) -> List[str]:
    U, N, mod = case["sizes"]
    out = [f"problem.n_users={U}", f"problem.n_rx={N}", f"problem.modulation={mod}",
           f"problem.channel.snr_db=[{snr[0]},{snr[1]}]"]
    out += [f"problem.channel.{k}={v}" for k, v in case["channel"].items()]
    if case["channel"].get("model") in ("umi", "uma", "cdl", "tdl"):
        out.append(f"problem.channel.pool_seed={pool_seed}")
    out += [f"problem.{k}={v}" for k, v in case.get("extra", {}).items()]
    return out


def _train(case_name: str, case: dict, net: str, steps: Optional[int], seed: int, quiet: bool):
    preset, extra = NETWORKS[net]
    over = _overrides(case, case["train_snr"]) + extra + [f"seed={seed}"]
    if steps is not None:
        over.append(f"training.steps={steps}")
    cfg = load_config(preset, over + refine_overrides(case, load_config(preset, extra)))
    model = build_model(cfg)
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False)
    secs = time.perf_counter() - t0
    refined = None
    if res.refine:
        refined = {"band_db": list(case["refine"]["snr"]), "batch": cfg.training.refine.batch,
                   "params": res.refine["params"], "start": -res.refine["start"], "end": -res.refine["end"],
                   "seconds": res.refine["seconds"]}
    _log(f"{case_name}: trained {net} (K={model.num_layers}) in {secs:.0f} s, validation SER {-res.best_score:.4f}"
         + (f"; refine SER {refined['start']:.4f} -> {refined['end']:.4f} at {refined['band_db']} dB" if refined else ""), quiet)
    return model.eval(), secs, cfg.training.steps, refined


def refine_overrides(case: dict, cfg) -> List[str]:
    """Where a network (``cfg``: its preset with the network's own changes, before the case's) ends its
    training with ``training.refine``: that draw fixed at the case's band (``CASES[...]["refine"]``, in
    place of the presets' ``crossing``, so that every run refines where the benchmark says) and sized as
    the case says; nothing for a network without one."""
    if cfg.training.refine is None:
        return []
    band = case["refine"]
    out = [f"training.refine.problem.channel.snr_db=[{band['snr'][0]},{band['snr'][1]}]", "training.refine.crossing=null"]
    return out + ([f"training.refine.batch={band['batch']}"] if "batch" in band else [])


def _classical(problem, K: int, tuned_params, K_detnet: int, tuned_mix=None) -> Dict[str, object]:
    """The classical detectors on ``problem``; ``tuned_params`` (damping, inflation) of the tuned SIC
    and ``tuned_mix`` those of the tuned mixture SIC (each tuned at this SNR on its own validation draw;
    None: that row is left out); DetNet's classical layer at DetNet's depth ``K_detnet``."""
    out = {"ZF": lambda inst: D.zf(problem, inst), "LMMSE": lambda inst: D.lmmse(problem, inst),
           f"SIC-{K}": lambda inst: D.sic(problem, inst, K),
           f"SIC-{K}, tuned damping + inflation": lambda inst: D.sic(problem, inst, K, *tuned_params),
           f"SIC-{K}, strongest interferer exact": lambda inst: D.sic(problem, inst, K, exact_interferers=1),
           **({f"SIC-{K}, strongest interferer exact, tuned damping + inflation":
               lambda inst: D.sic(problem, inst, K, *tuned_mix, exact_interferers=1)} if tuned_mix else {}),
           f"SIC-{K_detnet} (DetNet's layer, classical)": lambda inst: D.detnet_classical(problem, inst, K_detnet),
           "K-best (K=16, Sionna)": lambda inst: D.kbest(problem, inst, 16),
           "EP-10 (Sionna)": lambda inst: D.ep(problem, inst, 10)}
    if problem.num_points ** problem.n_users <= D.ML_MAX_CANDIDATES:
        out["ML (exhaustive)"] = lambda inst: D.ml(problem, inst)
    return out


def case_benchmark(name: str, networks: Sequence[str], trained: dict, steps: Optional[int], test_size: int,
                   latency_batch: int, repeats: int, seed: int, quiet: bool) -> dict:
    case = CASES[name]
    K = load_config("preset:deepsic").model.num_layers
    K_detnet = load_config("preset:detnet").model.num_layers
    models, train_info, tuned_at, tuned_mix_at = {}, {}, {}, {}
    networks = [n for n in networks if n in case.get("networks", NETWORKS)]
    for net in networks:
        models[LABELS[net]], secs, n_steps, refined = _train(name, case, net, steps, seed, quiet)
        train_info[LABELS[net]] = {"seconds": secs, "steps": n_steps, "layers": models[LABELS[net]].num_layers,
                                   "params": models[LABELS[net]].num_parameters(), "refine": refined}
    if case.get("transfer_from") and case["transfer_from"] in trained:
        for label, m in trained[case["transfer_from"]].items():
            models[f"{label}, trained on Rayleigh"] = m
    curves: Dict[str, List[float]] = {}
    for snr in case["snrs"]:
        q = build_problem(load_config("preset:deepsic", _overrides(case, (snr, snr), case_test_pool(case))).problem)
        inst = q.sample(test_size, generator(seed, "test", name, snr))
        # the tuned SIC gets its two knobs chosen at this SNR, on a validation draw of its own
        val = q.sample(SIC_VALIDATION, generator(seed, "validation-sic", name, snr))
        tuned_at[snr] = tuned = tune_sic(q, val, K)
        tuned_mix_at[snr] = tuned_mix = tune_sic(q, val, K, exact_interferers=1)
        fns = dict(_classical(q, K, tuned, K_detnet, tuned_mix))
        for label, m in models.items():
            fns[label] = (lambda mm: (lambda i: mm.run(i)))(m)
        with torch.no_grad():
            for label, fn in fns.items():
                curves.setdefault(label, []).append(q.summarize(fn(inst), inst, inst.s)["ser"])
        _log(f"{name} at {snr} dB: " + ", ".join(f"{k} {v[-1]:.4g}" for k, v in curves.items()), quiet)
    floor = 0.5 / (test_size * case["sizes"][0])
    at_target = {label: snr_at(case["snrs"], c, floor=floor) for label, c in curves.items()}
    kinds = {label: crossing_kind(case["snrs"], c) for label, c in curves.items()}
    # latency at the middle SNR, batch latency_batch, same process
    q = build_problem(load_config("preset:deepsic", _overrides(case, (case["snrs"][len(case["snrs"]) // 2],) * 2,
                                                                   case_test_pool(case))).problem)
    lat_inst = q.sample(latency_batch, generator(seed, "latency", name))
    mid = case["snrs"][len(case["snrs"]) // 2]
    fns = {k: (lambda f: (lambda: f(lat_inst)))(f) for k, f in _classical(q, K, tuned_at[mid], K_detnet, tuned_mix_at[mid]).items()}
    for label, m in models.items():
        if "trained on Rayleigh" not in label:
            fns[label] = (lambda mm: (lambda: mm.run(lat_inst)))(m)
    latency = {k: v["median_ms"] for k, v in measure_latency(fns, repeats=repeats, warmup=2).items()}
    return {"case": name, "title": case["title"], "snrs": case["snrs"], "test_size": test_size, "depth": K,
            "sic_tuned": {str(k): {"damping": v[0], "inflation": v[1]} for k, v in tuned_at.items()},
            "sic_mix_tuned": {str(k): {"damping": v[0], "inflation": v[1]} for k, v in tuned_mix_at.items()}, "curves": curves,
            "snr_at_1e-2": at_target, "crossing": kinds,
            "latency_ms": latency, "latency_batch": latency_batch, "training": train_info,
            "_models": {LABELS[n]: models[LABELS[n]] for n in networks}}


def _gap(e: dict, a: str, b: str) -> Tuple[Optional[float], str]:
    """SNR(a) - SNR(b) at SER 1e-2 (dB; positive: a needs more) and whether it is exact ("exact"), a
    lower bound ("at least": a never reaches 1e-2 on the grid, so its SNR is above the last point, or
    b's first point is already below it) or unknown ("unknown": b never reaches it either)."""
    sa, sb = e["snr_at_1e-2"].get(a), e["snr_at_1e-2"].get(b)
    ka, kb = e.get("crossing", {}).get(a, "crossing"), e.get("crossing", {}).get(b, "crossing")
    if sb is None:
        return None, "unknown"
    if sa is None:
        return e["snrs"][-1] - sb, "at least"
    return sa - sb, "at least" if (kb == "below" and ka != "below") else "exact"


def _bars(cases: List[dict]) -> List[dict]:
    """The issue's bars from the curves; a bar whose detectors were not run is left out."""
    out = []
    by = {c["case"]: c for c in cases}

    def add(e, text, worse, better, need, at_most):
        """g = SNR(worse) - SNR(better) at 1e-2: met when g <= need (``at_most``: a gap that must be small,
        which a lower bound cannot show) or g >= need (a gain, which a lower bound can show)."""
        if worse not in e["curves"] or better not in e["curves"]:
            return
        g, kind = _gap(e, worse, better)
        met = g is not None and ((g <= need and kind == "exact") if at_most else g >= need)
        out.append({"bar": f"{text} ({kind})", "measured": g, "met": bool(met)})
    deepsic = ("DeepSIC (sequential)", "DeepSIC (end to end)", "DeepSIC on the mixture SIC (sequential)")
    if "4x4_qpsk" in by:
        for net in deepsic + ("DetNet",):
            add(by["4x4_qpsk"], f"4x4 QPSK: {net} within 0.5 dB of ML at SER 1e-2 (gap, dB)", net, "ML (exhaustive)",
                0.5, True)
    if "8x8_16qam" in by:
        for net in deepsic + ("DetNet",):
            add(by["8x8_16qam"], f"8x8 16-QAM: {net} at least 1 dB better than LMMSE at SER 1e-2 (gain, dB)", "LMMSE",
                net, 1.0, False)
    if "4x4_qpsk_adc3" in by:
        e = by["4x4_qpsk_adc3"]
        K = e["depth"]
        for net in deepsic:
            plain = f"the SIC-{K} it unfolds" if net != deepsic[-1] else f"plain SIC-{K}"
            add(e, f"3-bit ADCs: {net} at least 2 dB better than {plain} at SER 1e-2 (gain, dB)",
                f"SIC-{K}", net, 2.0, False)
            add(e, f"3-bit ADCs, stricter: {net} at least 2 dB better than SIC-{K} with damping and noise inflation "
                   "tuned at each SNR (gain, dB)", f"SIC-{K}, tuned damping + inflation", net, 2.0, False)
        net = deepsic[-1]
        add(e, f"3-bit ADCs, its own base: {net} at least 2 dB better than the mixture SIC-{K} it unfolds (gain, dB)",
            f"SIC-{K}, strongest interferer exact", net, 2.0, False)
        add(e, f"3-bit ADCs, stricter: {net} at least 2 dB better than the mixture SIC-{K} with damping and noise "
               "inflation tuned at each SNR (gain, dB)", f"SIC-{K}, strongest interferer exact, tuned damping + inflation",
            net, 2.0, False)
    return out


def _knobs(tuned: dict) -> str:
    """"snr dB: damping, inflation" per SNR point of a tuned SIC."""
    return ", ".join(f"{k} dB: {v['damping']:g}, {v['inflation']:g}" for k, v in tuned.items())


def markdown(result: dict) -> str:
    s = result["setup"]
    lines = ["# MIMO detection: DeepSIC and DetNet against the classical detectors", "",
             f"`autounfold benchmark-detection` (seed {s['seed']}, torch {s['torch']}, {s['threads']} threads, CPU; "
             f"{s['seconds'] / 60:.1f} min in all). y = H s + w, per-sample SNR = 1 / noise_var (Es/N0 per receive antenna, "
             "E|H_ij|^2 = 1). SER of the hard decisions (the most probable point per user) on a fresh test draw of "
             f"{s['test_size']} symbol vectors per SNR point; networks trained with their presets on each case's SNR range "
             "(`preset:deepsic`, `preset:detnet`), each training ending with `training.refine`, a coordinate search over "
             "the per-layer scalars scored by the SER on a draw at the case's crossing of 1e-2 (DetNet: step and "
             "temperature, its preset's; DeepSIC: its two noise inflations, the learned SIC also its damping: "
             f"`{SCALAR_REFINE[0]}`; the training table gives each). \"SNR at 1e-2\": log-linear interpolation on the curve's grid; — where the "
             "curve never gets down to 1e-2 on the grid. ML rows: per-user MAP decisions from the exact posteriors "
             "(at least as good as the joint ML vector in SER).", ""]
    for e in result["cases"]:
        lines += [f"## {e['title']}", "",
                  f"SIC-{e['depth']} tuned at each SNR on a validation draw of {SIC_VALIDATION} vectors (damping, noise "
                  "inflation): " + _knobs(e["sic_tuned"])
                  + (". The mixture SIC, tuned alike on the same draw: " + _knobs(e["sic_mix_tuned"])
                     if e.get("sic_mix_tuned") else "")
                  + f". Latency: batch {e['latency_batch']}, median ms, same process.", "",
                  "| detector | SNR at SER 1e-2 (dB) | " + " | ".join(f"{v} dB" for v in e["snrs"]) + " | latency ms |",
                  "|---|---|" + "---|" * len(e["snrs"]) + "---|"]
        order = sorted(e["curves"], key=lambda k: (e["snr_at_1e-2"][k] is None, e["snr_at_1e-2"][k] or 0.0))
        for k in order:
            lat = e["latency_ms"].get(k)
            lines.append(f"| {k} | {_fmt(e['snr_at_1e-2'][k])} | " + " | ".join(f"{v:.2e}" for v in e["curves"][k])
                         + f" | {_fmt(lat)} |")
        if e["training"]:
            lines += ["", "| network | layers | parameters | training | then `training.refine`: SER on its draw, start -> end |",
                      "|---|---|---|---|---|"]
            for k, t in e["training"].items():
                r = t.get("refine")
                refined = (f"{r['start']:.4f} -> {r['end']:.4f} ({', '.join(r['params'])}; {r['batch']} vectors at "
                           f"{r['band_db'][0]:g}-{r['band_db'][1]:g} dB; {r['seconds']:.0f} s)") if r else "—"
                steps_only = t["seconds"] - (r["seconds"] if r else 0.0)      # "seconds": all of train(), refine included
                lines.append(f"| {k} | {t['layers']} | {t['params']} | {steps_only:.0f} s ({t['steps']} steps) | {refined} |")
        lines += ["", f"![SER vs SNR, {e['title']}]({e['plot']})", ""]
    lines += bars_markdown(result.get("bars") or [])
    return "\n".join(lines) + "\n"


def run_detection_benchmark(out_dir, cases: Sequence[str] = tuple(CASES), networks: Sequence[str] = tuple(NETWORKS),
                            steps: Optional[int] = None, test_size: int = 20000, latency_batch: int = 1024,
                            repeats: int = 10, seed: int = 0, quiet: bool = False) -> dict:
    """Run the benchmark and write detection_benchmark.json, DETECTION_RESULTS.md and one SER-vs-SNR
    plot per case into ``out_dir``. ``steps``: training steps per network (default: the presets')."""
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        raise ConfigError(f"benchmark-detection: cases must be among {', '.join(CASES)} (got {list(cases)})")
    if [n for n in networks if n not in NETWORKS] or not networks:
        raise ConfigError(f"benchmark-detection: networks must be among {', '.join(NETWORKS)} (got {list(networks)})")
    if test_size < 100:
        raise ConfigError(f"benchmark-detection: test_size must be >= 100 (got {test_size})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results, trained = [], {}
    for c in cases:
        e = case_benchmark(c, networks, trained, steps, test_size, latency_batch, repeats, seed, quiet)
        trained[c] = e.pop("_models")
        e["plot"] = _ser_plot(e, out / f"detection_ser_{c}.png")
        results.append(e)
    result = {"setup": {"seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads(), "test_size": test_size,
                        "steps": steps, "seconds": time.perf_counter() - t0}, "cases": results, "bars": _bars(results)}
    (out / "detection_benchmark.json").write_text(json.dumps(result, indent=2, default=float, allow_nan=False))
    (out / "DETECTION_RESULTS.md").write_text(markdown(result))
    return result


def _ser_plot(e: dict, path: Path) -> str:
    from .plots import _save, plt
    # up to 20 distinct colours; classical detectors solid, networks dashed, networks applied to a
    # channel they were not trained on dotted; the legend beside the axes, not over the curves
    fig, ax = plt.subplots(figsize=(10, 5))
    colours = plt.get_cmap("tab20").colors
    networks = set(LABELS.values())
    for i, (k, v) in enumerate(e["curves"].items()):
        style = ":" if "trained on Rayleigh" in k else "--" if k in networks else "-"
        ax.semilogy(e["snrs"], [max(x, 1e-6) for x in v], marker="o", markersize=3, label=k, linestyle=style,
                    color=colours[i % len(colours)])
    ax.axhline(TARGET_SER, color="grey", linewidth=0.8)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("SER")
    ax.set_title(e["title"], fontsize=9)
    return _save(fig, ax, path, loc="center left", bbox_to_anchor=(1.01, 0.5))


__all__ = ["run_detection_benchmark", "markdown", "snr_at", "CASES", "NETWORKS"]

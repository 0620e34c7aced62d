"""The MU-MISO benchmark job: unfolded WMMSE / PGA against WMMSE, tuned WMMSE, tuned PGA and the
linear precoders, at equal depth and against latency; JSON + Markdown + PNG
(``autounfold benchmark-mu-miso``, ``make benchmark-mu-miso``).

Every model is trained with the preset recipe (``preset:mu_miso``: SNR uniform in [0, 30] dB,
i.i.d. Rayleigh, ``step_init: tuned``, 300 steps) on its antenna / user count and is then tested, unchanged, at fixed SNRs and on
correlated channels it never saw. The reference is the problem's declared one: WMMSE from RZF and
from MRT, per channel until the relative sum-rate change per iteration is below 1e-6 (at most 2000
iterations), the better of the two.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from ..algorithms import reference
from ..build import build_model
from ..config import load_config, parse_config
from ..seeding import generator
from ..training import train
from . import baselines
from .evaluate import transfer
from .latency import measure_latency

SIZES: Tuple[Tuple[int, int], ...] = ((8, 4), (16, 8), (64, 16))
SNRS = (10.0, 20.0)
SWEEP_SNRS = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
DEPTHS = (1, 2, 3, 5, 8)
LABELS = {"uwmmse": "UWMMSE (affine)", "uwmmse_gnn": "UWMMSE (per-user MLP)", "wmmse_relax": "WMMSE, learned relaxation",
          "momentum": "unfolded PGA"}


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[mu-miso benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _overrides(n_tx: int, K: int, layer: str, depth: int, steps: int, extra: Sequence[str] = ()) -> List[str]:
    # the preset's recipe: step_init tuned (the network starts as the classical solver it unrolls,
    # tuned at its depth on a validation draw)
    return [f"problem.n_users={K}", f"problem.channel.n_tx={n_tx}", f"model.layer={layer}",
            f"model.num_layers={depth}", f"training.steps={steps}"] + list(extra)


def _train(n_tx, K, layer, depth, steps, seed, quiet):
    cfg = load_config("preset:mu_miso", _overrides(n_tx, K, layer, depth, steps, [f"seed={seed}"]))
    model = build_model(cfg)
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False)
    _log(f"trained {layer}-{depth} on {n_tx}x{K}: validation {res.best_score:.3f}% in {time.perf_counter() - t0:.0f} s", quiet)
    return model.eval(), cfg, time.perf_counter() - t0


def _at(model, cfg, snr=None, channel_model=None):
    """The same learned parameters on the problem at a fixed SNR / another channel model."""
    changes = {}
    if snr is not None:
        changes["snr_db"] = [snr, snr]
    if channel_model is not None:
        changes["model"] = channel_model
    data = cfg.model_dump(mode="json")
    data["problem"]["channel"].update(changes)
    return transfer(model, parse_config(data, "benchmark"))


def run_mu_miso_benchmark(out: Path, steps: int = 300, depth: int = 5, layers: Sequence[str] = ("uwmmse", "uwmmse_gnn", "momentum"),
                          test_batch: int = 1024, latency_batch: int = 256, repeats: int = 20, seed: int = 0,
                          sizes: Sequence[Tuple[int, int]] = SIZES, depths: Sequence[int] = DEPTHS,
                          quiet: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    result: Dict[str, object] = {"settings": {"steps": steps, "depth": depth, "layers": list(layers), "test_batch": test_batch,
                                              "latency_batch": latency_batch, "repeats": repeats, "seed": seed,
                                              "threads": torch.get_num_threads(), "torch": torch.__version__,
                                              "sizes": [list(s) for s in sizes], "snrs_db": list(SNRS)}}
    models = {}
    for n_tx, K in sizes:
        for layer in layers:
            models[(n_tx, K, layer, depth)] = _train(n_tx, K, layer, depth, steps, seed, quiet)

    # ---- quality at equal depth, per size and SNR ------------------------------------------------
    cells = []
    for n_tx, K in sizes:
        for snr in SNRS:
            first = models[(n_tx, K, layers[0], depth)]
            probe = _at(*first[:2], snr=snr)
            p = probe.problem
            test = p.sample(test_batch, generator(seed, "test", n_tx, K, snr))
            t0 = time.perf_counter()
            ref = reference(p, test)
            _log(f"{n_tx}x{K} at {snr:.0f} dB: reference in {time.perf_counter() - t0:.0f} s", quiet)
            rows = []
            with torch.no_grad():
                for layer in layers:
                    m = _at(*models[(n_tx, K, layer, depth)][:2], snr=snr)
                    rows.append({"method": f"{LABELS.get(layer, layer)}-{depth}", "kind": "unfolded", **p.summarize(m.run(test), test, ref)})
                for name in ("wmmse", "wmmse_tuned", "pga_tuned"):
                    label, solver = baselines.CLASSICAL[name]
                    rows.append({"method": f"{label}-{depth}", "kind": "classical", **p.summarize(solver(p, test, depth), test, ref)})
                rows.append({"method": "WMMSE-100", "kind": "classical", **p.summarize(baselines.wmmse(p, test, 100), test, ref)})
                for name in ("rzf", "zf", "mrt"):
                    label, solver = baselines.CLASSICAL[name]
                    rows.append({"method": label, "kind": "closed form", **p.summarize(solver(p, test, depth), test, ref)})
            cells.append({"n_tx": n_tx, "n_users": K, "snr_db": snr, "reference_rate": float(p.objective(ref, test).mean()),
                          "rows": rows})
    result["quality"] = cells

    # ---- depth curve, per-SNR curve, robustness and latency on the middle size ---------------------
    n_tx, K = sizes[len(sizes) // 2]
    base_model, base_cfg, _ = models[(n_tx, K, layers[0], depth)]
    p = base_model.problem
    test = p.sample(test_batch, generator(seed, "test", "mixed"))
    ref = reference(p, test)
    curve = {"depths": list(depths), "WMMSE": [], "WMMSE, tuned relaxation": [], "PGA, tuned": []}
    with torch.no_grad():
        for d in depths:
            curve["WMMSE"].append(p.summarize(baselines.wmmse(p, test, d), test, ref)["pct_of_reference"])
            curve["WMMSE, tuned relaxation"].append(p.summarize(baselines.wmmse_tuned(p, test, d), test, ref)["pct_of_reference"])
            curve["PGA, tuned"].append(p.summarize(baselines.pga_tuned(p, test, d), test, ref)["pct_of_reference"])
    for layer in layers:
        vals = []
        for d in depths:
            key = (n_tx, K, layer, d)
            if key not in models:
                models[key] = _train(n_tx, K, layer, d, steps, seed, quiet)
            with torch.no_grad():
                vals.append(p.summarize(models[key][0].run(test), test, ref)["pct_of_reference"])
        curve[LABELS.get(layer, layer)] = vals
    result["depth_curve"] = {"n_tx": n_tx, "n_users": K, "snr_db": [0.0, 30.0], **curve}

    sweep = {"snr_db": list(SWEEP_SNRS)}
    for snr in SWEEP_SNRS:
        probe = _at(base_model, base_cfg, snr=snr)
        q = probe.problem
        t = q.sample(test_batch // 2, generator(seed, "snr", snr))
        r = reference(q, t)
        with torch.no_grad():
            for layer in layers:
                m = _at(*models[(n_tx, K, layer, depth)][:2], snr=snr)
                summary = q.summarize(m.run(t), t, r)
                sweep.setdefault(f"{LABELS.get(layer, layer)}-{depth}", []).append(summary["pct_of_reference"])
                sweep.setdefault(f"{LABELS.get(layer, layer)}-{depth} p5", []).append(summary["p5_pct"])
            sweep.setdefault(f"WMMSE-{depth}", []).append(q.summarize(baselines.wmmse(q, t, depth), t, r)["pct_of_reference"])
    result["snr_sweep"] = {"n_tx": n_tx, "n_users": K, **sweep}

    robust = []
    probe = _at(base_model, base_cfg, channel_model="correlated_rayleigh")
    q = probe.problem
    t = q.sample(test_batch // 2, generator(seed, "correlated"))
    r = reference(q, t)
    with torch.no_grad():
        for layer in layers:
            m = _at(*models[(n_tx, K, layer, depth)][:2], channel_model="correlated_rayleigh")
            robust.append({"method": f"{LABELS.get(layer, layer)}-{depth}", **q.summarize(m.run(t), t, r)})
        robust.append({"method": f"WMMSE-{depth}", **q.summarize(baselines.wmmse(q, t, depth), t, r)})
        robust.append({"method": f"WMMSE, tuned relaxation-{depth}", **q.summarize(baselines.wmmse_tuned(q, t, depth), t, r)})
    result["correlated"] = {"n_tx": n_tx, "n_users": K, "angular_spread_deg": 15.0, "rows": robust}

    lat_inst = test[:latency_batch]
    fns = {f"{LABELS.get(layer, layer)}-{depth}": (lambda m=models[(n_tx, K, layer, depth)][0]: m.run(lat_inst)) for layer in layers}
    fns.update({f"WMMSE-{depth}": lambda: baselines.wmmse(p, lat_inst, depth),
                "WMMSE-100": lambda: baselines.wmmse(p, lat_inst, 100),
                "RZF": lambda: p.init(lat_inst, "rzf")})
    lat = measure_latency(fns, repeats=repeats)
    with torch.no_grad():
        pct = {name: p.summarize(fn(), lat_inst, ref[:latency_batch])["pct_of_reference"] for name, fn in fns.items()}
    result["latency"] = {"n_tx": n_tx, "n_users": K, "batch": latency_batch,
                         "rows": [{"method": k, **v, "pct_of_reference": pct[k],
                                   "speedup_vs_wmmse100": lat["WMMSE-100"]["median_ms"] / v["median_ms"]} for k, v in lat.items()]}
    result["seconds"] = time.perf_counter() - t_start
    (out / "mu_miso_benchmark.json").write_text(json.dumps(result, indent=1))
    (out / "mu_miso_benchmark.md").write_text(markdown(result))
    plots(result, out)
    return result


def _fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["# MU-MISO sum rate: unfolded WMMSE and PGA against the classical solvers", "",
             f"`autounfold benchmark-mu-miso` (training steps {s['steps']}, depth {s['depth']}, test batch "
             f"{s['test_batch']}, {s['threads']} threads, torch {s['torch']}, seed {s['seed']}). Models trained on SNR "
             "U[0, 30] dB, i.i.d. Rayleigh, one per antenna / user count, tested unchanged. % = 100 x mean sum rate / "
             "mean sum rate of the reference (WMMSE from RZF and MRT to a relative change below 1e-6, the better per "
             "channel); p5 / min: percentiles over channels of the per-channel %. Tuned baselines pick their constants "
             "on a separate validation batch.", ""]
    for cell in result["quality"]:
        lines += [f"## {cell['n_tx']} x {cell['n_users']}, SNR {cell['snr_db']:.0f} dB "
                  f"(reference {cell['reference_rate']:.3f} bit/s/Hz)", "",
                  "| method | kind | % of reference | p5 % | min % | sum rate |", "|---|---|---|---|---|---|"]
        for r in cell["rows"]:
            lines.append(f"| {r['method']} | {r['kind']} | {r['pct_of_reference']:.3f} | {r['p5_pct']:.2f} | "
                         f"{r['min_pct']:.2f} | {r['rate_mean']:.3f} |")
        lines.append("")
    dc = result["depth_curve"]
    names = [k for k in dc if k not in ("depths", "n_tx", "n_users", "snr_db")]
    lines += [f"## % of reference against depth ({dc['n_tx']} x {dc['n_users']}, SNR U[0, 30] dB)", "",
              "| method | " + " | ".join(f"K={d}" for d in dc["depths"]) + " |",
              "|---|" + "---|" * len(dc["depths"])]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in dc[n]) + " |")
    sw = result["snr_sweep"]
    keys = [k for k in sw if k not in ("snr_db", "n_tx", "n_users")]
    lines += ["", f"## One model over SNR ({sw['n_tx']} x {sw['n_users']}, trained on U[0, 30] dB)", "",
              "| method | " + " | ".join(f"{v:.0f} dB" for v in sw["snr_db"]) + " | worst |",
              "|---|" + "---|" * (len(sw["snr_db"]) + 1)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{v:.2f}" for v in sw[k]) + f" | {min(sw[k]):.2f} |")
    cr = result["correlated"]
    lines += ["", f"## Not trained on: correlated Rayleigh, {cr['angular_spread_deg']:.0f} deg ({cr['n_tx']} x {cr['n_users']})", "",
              "| method | % of reference | p5 % | min % |", "|---|---|---|---|"]
    for r in cr["rows"]:
        lines.append(f"| {r['method']} | {r['pct_of_reference']:.3f} | {r['p5_pct']:.2f} | {r['min_pct']:.2f} |")
    la = result["latency"]
    lines += ["", f"## Latency ({la['n_tx']} x {la['n_users']}, batch {la['batch']}, one process, interleaved, "
              "median and IQR)", "", "| method | median ms | IQR ms | speed-up vs WMMSE-100 | % of reference |",
              "|---|---|---|---|---|"]
    for r in la["rows"]:
        lines.append(f"| {r['method']} | {r['median_ms']:.2f} | {r['iqr_ms']:.2f} | {r['speedup_vs_wmmse100']:.1f}x | "
                     f"{r['pct_of_reference']:.3f} |")
    lines += ["", f"Total time {result['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def plots(result: dict, out: Path) -> None:
    from .plots import latency_scatter, line_curves
    dc, sw = result["depth_curve"], result["snr_sweep"]
    ylabel = "% of reference sum rate"
    line_curves({k: (dc["depths"], v) for k, v in dc.items() if k not in ("depths", "n_tx", "n_users", "snr_db")},
                "depth (iterations / layers)", ylabel, out / "mu_miso_depth.png",
                f"{dc['n_tx']} x {dc['n_users']}, SNR U[0, 30] dB")
    line_curves({k: (sw["snr_db"], v) for k, v in sw.items() if k not in ("snr_db", "n_tx", "n_users") and not k.endswith("p5")},
                "SNR (dB)", ylabel, out / "mu_miso_snr.png")
    la = result["latency"]
    latency_scatter(la["rows"], "pct_of_reference", la["batch"], ylabel, out / "mu_miso_latency.png")

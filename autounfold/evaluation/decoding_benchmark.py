"""The channel-decoding benchmark: BER / BLER vs Eb/N0 of classical BP and neural (weighted) BP on the
5G NR LDPC codes (n, k) = (128, 64) and (512, 256), BPSK over AWGN (``autounfold benchmark-decoding``).

Rows: classical flooding BP with the exact boxplus update after 5, 10 and 20 iterations (one 20-iteration
run per block: flooding BP with fixed parameters passes through the 5- and 10-iteration outputs, so
every row is decoded on the same blocks), min-sum BP-10, Sionna's ``LDPC5GDecoder`` (boxplus, 10
iterations) on the first ``sionna_blocks`` blocks of each point as a check of our BP (its BLER and the
share of blocks whose decisions agree with ours), and three 5-iteration networks trained with
``preset:neural_bp`` (multi-iteration bit-wise cross-entropy, supervised): neural BP with per-edge weights
per iteration (``neural_bp``), the same weights tied across iterations (``neural_bp_tied``) and one
weight per iteration (``bp_scalar``), plus the untied network with the weights of its last training step
(the trainer returns the best-validated ones). Every network is trained on the code's Eb/N0 training range; the
test blocks are fresh seeded draws per Eb/N0 point (``generator(seed, "decoding-test", code, point)``),
the same blocks for every row.

Read from the curves: the Eb/N0 at BLER 1e-2 and 1e-3 (log-linear interpolation between grid points,
``detection_benchmark.snr_at``) and the gap of each network to BP-10 (negative: the network needs less).
Per iteration: the BLER after each iteration of BP and of the networks at one Eb/N0 (``per_iteration_ebno``),
and the learned weights per iteration. Latency: one batch of ``latency_batch`` blocks, neural BP-5 vs BP-10
(``measure_latency``, median of ``repeats``, CPU).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..algorithms.bp import bp_classical, sionna_bp
from ..build import build_model, build_problem
from ..config import load_config
from ..errors import ConfigError
from ..seeding import generator
from ..training import train
from .detection_benchmark import snr_at
from .latency import measure_latency
from .report import bars_markdown, fmt as _fmt

TARGETS = (1e-2, 1e-3)
CODES = {
    "n128": {"title": "5G LDPC (128, 64), rate 1/2, BPSK, AWGN", "n": 128, "k": 64, "train_ebno": (3.5, 5.5),
             "steps": 500, "test_blocks": 10000, "ebno": [2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5],
             "per_iteration_ebno": 4.0},
    "n512": {"title": "5G LDPC (512, 256), rate 1/2, BPSK, AWGN", "n": 512, "k": 256, "train_ebno": (3.5, 5.0),
             "steps": 200, "test_blocks": 5000, "ebno": [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0],
             "per_iteration_ebno": 4.0},
}
NETWORKS = {"neural_bp": "neural BP-5 (per-edge weights per iteration)",
            "neural_bp_tied": "neural BP-5 (per-edge weights, tied)",
            "bp_scalar": "BP-5, one learned scale per iteration"}
LAST = "neural_bp_last"
NETWORKS_ALL = {**NETWORKS, LAST: "neural BP-5 (per-edge weights per iteration), weights of the last training step"}
BP_ROWS = (5, 10, 20)
SIONNA_ITERATIONS = 10
SIONNA_ROW = f"Sionna LDPC5GDecoder-{SIONNA_ITERATIONS} (a subset: the first blocks of each point)"
MAX_BATCH = 2000                      # blocks decoded at once (memory: ~(E x batch) messages per tensor)


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[decoding benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _code_overrides(code: dict, ebno) -> List[str]:
    return [f"problem.n={code['n']}", f"problem.k={code['k']}", f"problem.ebno_db=[{ebno[0]},{ebno[1]}]"]


def _train(code_name: str, code: dict, layer: str, steps: int, seed: int, quiet: bool):
    over = _code_overrides(code, code["train_ebno"]) + [f"model.layer={layer}", f"seed={seed}", f"training.steps={steps}"]
    if steps < 4 * 250:
        over.append(f"training.validate_every={max(steps // 4, 1)}")
    cfg = load_config("preset:neural_bp", over)
    model = build_model(cfg)
    last = {}

    def keep_last(entry, snapshot):                  # the weights at the last validation (the trainer returns the best)
        last.update(state=snapshot()["model"], step=entry["step"], score=entry["val_score"])
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False, on_validation=keep_last)
    secs = time.perf_counter() - t0
    first = res.history[0]["val_score"] if res.history else float("nan")
    _log(f"{code_name}: trained {layer} in {secs:.0f} s, validation BLER {-first:.4f} (classical start) -> "
         f"{-res.best_score:.4f} (best, step {res.best_step}); {-last['score']:.4f} at the last step", quiet)
    final = build_model(cfg)
    final.load_state_dict(last["state"])
    return model.eval(), final.eval(), {"seconds": secs, "steps": steps, "params": model.num_parameters(),
                                        "validation_bler_start": -first, "validation_bler_best": -res.best_score,
                                        "best_step": res.best_step, "validation_bler_last": -last["score"],
                                        "config": cfg.model_dump(mode="json")}


def _weights(model) -> Dict[str, List[List[float]]]:
    """The learned weights per iteration: {name: K lists (one value per edge / column type)}."""
    out = {}
    with torch.no_grad():
        for k in range(model.num_layers):
            for name, v in model.layer_values(k).items():
                if name == "step":
                    continue
                out.setdefault(name, []).append([float(a) for a in torch.as_tensor(v).reshape(-1)])
    return out


def _decode_point(problem, models: dict, inst, sionna_blocks: int) -> dict:
    """Bit and block errors of every row on ``inst`` (decoded in chunks), and per-iteration block errors."""
    B = inst.batch_size
    acc: Dict[str, List[int]] = {}
    per_it: Dict[str, List[int]] = {}

    def add(name, x, bits):
        be, ble = problem.errors(x, bits)
        a = acc.setdefault(name, [0, 0, 0])
        a[0] += be
        a[1] += ble
        a[2] += x.shape[0]

    def add_it(name, xs, bits):
        cur = per_it.setdefault(name, [0] * len(xs))
        for i, x in enumerate(xs):
            cur[i] += problem.errors(x, bits)[1]

    agree = [0, 0]
    for s in range(0, B, MAX_BATCH):
        sub = inst[slice(s, min(s + MAX_BATCH, B))]
        with torch.no_grad():
            traj = bp_classical(problem, sub, max(BP_ROWS), trajectory=True)
            for K in BP_ROWS:
                add(f"BP-{K}", traj[K - 1], sub.bits)
            add_it("BP", traj, sub.bits)
            add("min-sum BP-10", bp_classical(problem, sub, 10, cn_update="minsum"), sub.bits)
            for name, model in models.items():
                xs = model.run(sub, return_all=True)
                add(NETWORKS_ALL[name], xs[-1], sub.bits)
                add_it(NETWORKS_ALL[name], xs, sub.bits)
            if s < sionna_blocks:
                n_s = min(sionna_blocks - s, sub.batch_size)
                ss = sub[slice(0, n_s)]
                xs = sionna_bp(problem, ss, SIONNA_ITERATIONS)
                add(SIONNA_ROW, xs, ss.bits)
                same = (problem.hard(xs[:, :problem.k]) == problem.hard(traj[SIONNA_ITERATIONS - 1][:n_s, :problem.k])).all(-1)
                agree[0] += int(same.sum())
                agree[1] += n_s
    rates = {k: {"ber": v[0] / (v[2] * problem.k), "bler": v[1] / v[2], "blocks": v[2], "block_errors": v[1]}
             for k, v in acc.items()}
    return {"rates": rates, "per_iteration": {k: [e / B for e in v] for k, v in per_it.items()},
            "sionna_agreement": agree[0] / max(agree[1], 1)}


def code_benchmark(code_name: str, layers: Sequence[str], steps: Optional[int], test_blocks: Optional[int],
                   sionna_blocks: int, latency_batch: int, repeats: int, seed: int, quiet: bool,
                   grid: Optional[Sequence[float]] = None) -> dict:
    code = CODES[code_name]
    n_steps = code["steps"] if steps is None else steps
    test_blocks = code["test_blocks"] if test_blocks is None else test_blocks
    models, training = {}, {}
    for layer in layers:
        models[layer], final, training[NETWORKS[layer]] = _train(code_name, code, layer, n_steps, seed, quiet)
        if layer == "neural_bp":
            models[LAST] = final
    problem = next(iter(models.values())).problem if models else None
    grid = list(code["ebno"] if grid is None else grid)
    curves: Dict[str, Dict[str, List[float]]] = {}
    blocks: Dict[str, List[int]] = {}
    agreement, per_iteration = [], None
    t0 = time.perf_counter()
    for i, eb in enumerate(grid):
        cfg = load_config("preset:neural_bp", _code_overrides(code, (eb, eb)))
        p = build_problem(cfg.problem)
        for m in models.values():
            m.problem = p
        inst = p.sample(test_blocks, generator(seed, "decoding-test", code_name, i))
        r = _decode_point(p, models, inst, sionna_blocks)
        for name, v in r["rates"].items():
            c = curves.setdefault(name, {"ber": [], "bler": []})
            c["ber"].append(v["ber"])
            c["bler"].append(v["bler"])
            blocks.setdefault(name, []).append(v["blocks"])
        agreement.append(r["sionna_agreement"])
        if eb == code["per_iteration_ebno"]:
            per_iteration = {"ebno_db": eb, "bler": r["per_iteration"]}
        _log(f"{code_name}: Eb/N0 {eb} dB: " + ", ".join(f"{k} {v['bler']:.2e}" for k, v in r["rates"].items()), quiet)
        problem = p
    eval_seconds = time.perf_counter() - t0
    at = {f"{t:g}": {k: snr_at(grid, c["bler"], t, floor=0.5 / test_blocks) for k, c in curves.items()} for t in TARGETS}
    gaps = {}
    for t in TARGETS:
        ref = at[f"{t:g}"].get("BP-10")
        gaps[f"{t:g}"] = {k: (None if v is None or ref is None else v - ref) for k, v in at[f"{t:g}"].items()}
    # latency: one batch at the per-iteration Eb/N0
    lat = {}
    if "neural_bp" in models:
        cfg = load_config("preset:neural_bp", _code_overrides(code, (code["per_iteration_ebno"],) * 2))
        p = build_problem(cfg.problem)
        model = models["neural_bp"]
        model.problem = p
        inst = p.sample(latency_batch, generator(seed, "decoding-latency", code_name))
        res = measure_latency({"neural BP-5": lambda: model.run(inst), "BP-5": lambda: bp_classical(p, inst, 5),
                               "BP-10": lambda: bp_classical(p, inst, 10)}, repeats=repeats, warmup=2)
        lat = {k: {"median_ms": v["median_ms"], "iqr_ms": v["iqr_ms"]} for k, v in res.items()}
    g = problem.graph if problem is not None else None
    return {"code": code_name, "title": code["title"], "n": code["n"], "k": code["k"], "ebno": grid,
            "graph": None if g is None else {"z": g.z, "variable_nodes": g.num_vns, "check_nodes": g.num_cns,
                                             "edges": g.num_edges, "edge_types": g.num_edge_types,
                                             "column_types": g.num_vn_types},
            "train_ebno": list(code["train_ebno"]), "test_blocks": test_blocks, "sionna_blocks": sionna_blocks,
            "curves": curves, "blocks": blocks, "ebno_at": at, "gap_to_bp10": gaps,
            "sionna_agreement": agreement, "per_iteration": per_iteration, "training": training,
            "weights": {NETWORKS_ALL[k]: _weights(m) for k, m in models.items()}, "latency_batch": latency_batch,
            "latency": lat, "eval_seconds": eval_seconds}


def _bars(codes: List[dict]) -> List[dict]:
    """Neural BP-5 (untied, tied) at least as good as BP-10 at BLER 1e-2 and 1e-3: the Eb/N0 gap <= 0. Not
    met when a curve does not reach the target on the grid, or when the test draw cannot resolve it (half an
    error, 0.5 / test_blocks, above a fifth of the target: a zero-error point would pass as the crossing)."""
    out = []
    for e in codes:
        for t in TARGETS:
            key = f"{t:g}"
            resolved = 0.5 / e["test_blocks"] <= t / 5
            for net in (NETWORKS["neural_bp"], NETWORKS["neural_bp_tied"]):
                if net not in e["curves"]:
                    continue
                g = e["gap_to_bp10"][key].get(net)
                note = "" if resolved else ", not resolved by the test blocks"
                out.append({"bar": f"{e['code']}: {net} at least as good as BP-10 at BLER {key} (Eb/N0 gap to BP-10, "
                                   f"dB; <= 0 passes{note})", "measured": g,
                            "met": bool(resolved and g is not None and g <= 1e-9)})
    return out


def markdown(result: dict) -> str:
    s = result["setup"]
    lines = ["# Channel decoding: neural (weighted) BP on 5G NR LDPC codes", "",
             f"`autounfold benchmark-decoding` (seed {s['seed']}, torch {s['torch']}, {s['threads']} thread(s), CPU, one run; "
             f"{s['seconds'] / 60:.1f} min in all{', QUICK settings' if s['quick'] else ''}). Sionna's 5G LDPC encoder and "
             "decoding graph (rate matching as `LDPC5GDecoder`: first 2Z systematic bits punctured, fillers known), BPSK over "
             "AWGN, Eb/N0 = Es / (R N0). BER / BLER over the k information bits on fresh test blocks per Eb/N0 point, the "
             "same blocks for every row. BP: flooding, exact boxplus check-node update, LLR clipping 20 (Sionna's). Networks: "
             "5 iterations, `preset:neural_bp` (multi-iteration bit-wise cross-entropy, supervised) with the layer named, all "
             "weights started at 1 (= BP-5), trained on the code's Eb/N0 range. \"Eb/N0 at BLER t\": log-linear "
             "interpolation of the curve on the grid (— : not reached on the grid). Gap: Eb/N0(row) - Eb/N0(BP-10).", ""]
    for e in result["codes"]:
        g = e["graph"] or {}
        lines += [f"## {e['title']}", "",
                  f"Decoding graph: Z = {g.get('z')}, {g.get('variable_nodes')} variable nodes, {g.get('check_nodes')} checks, "
                  f"{g.get('edges')} edges in {g.get('edge_types')} base-graph edge types; {e['test_blocks']} test blocks per "
                  f"point; trained on Eb/N0 {e['train_ebno'][0]}-{e['train_ebno'][1]} dB.", "",
                  "| decoder | Eb/N0 at BLER 1e-2 | gap to BP-10 | Eb/N0 at BLER 1e-3 | gap to BP-10 | "
                  + " | ".join(f"{v:g} dB" for v in e["ebno"]) + " |",
                  "|---|---|---|---|---|" + "---|" * len(e["ebno"])]
        order = sorted(e["curves"], key=lambda k: (e["ebno_at"]["0.01"][k] is None, e["ebno_at"]["0.01"][k] or 0.0))
        for k in order:
            c = e["curves"][k]
            lines.append(f"| {k} | {_fmt(e['ebno_at']['0.01'][k])} | {_fmt(e['gap_to_bp10']['0.01'][k])} | "
                         f"{_fmt(e['ebno_at']['0.001'][k])} | {_fmt(e['gap_to_bp10']['0.001'][k])} | "
                         + " | ".join(f"{b:.2e}" for b in c["bler"]) + " |")
        lines += ["", "BER:", "", "| decoder | " + " | ".join(f"{v:g} dB" for v in e["ebno"]) + " |",
                  "|---|" + "---|" * len(e["ebno"])]
        for k in order:
            lines.append(f"| {k} | " + " | ".join(f"{b:.2e}" for b in e["curves"][k]["ber"]) + " |")
        if SIONNA_ROW in e["curves"]:
            lines += ["", f"Check of our BP against Sionna's `LDPC5GDecoder` (boxplus, {SIONNA_ITERATIONS} iterations) on the "
                      f"first {e['sionna_blocks']} blocks of each point: identical information-bit decisions on "
                      + ", ".join(f"{100 * a:.2f} %" for a in e["sionna_agreement"]) + " of the blocks."]
        pi = e.get("per_iteration")
        if pi:
            its = max(len(v) for v in pi["bler"].values())
            lines += ["", f"BLER after each iteration at Eb/N0 {pi['ebno_db']:g} dB:", "",
                      "| decoder | " + " | ".join(str(i + 1) for i in range(its)) + " |", "|---|" + "---|" * its]
            for k, v in pi["bler"].items():
                lines.append(f"| {k} | " + " | ".join(f"{b:.2e}" for b in v) + " |" + " |" * (its - len(v)))
        if e["training"]:
            lines += ["", "Training (validation: the trainer's draw over the training Eb/N0 range; the trainer keeps the weights "
                      "of the best validation BLER, which is the start, i.e. BP-5, when no later step beats it):", "",
                      "| network | learned parameters | training | validation BLER: start (= BP-5) | best (step) | last step |",
                      "|---|---|---|---|---|---|"]
            for k, t in e["training"].items():
                lines.append(f"| {k} | {t['params']} | {t['seconds']:.0f} s ({t['steps']} steps) | "
                             f"{t['validation_bler_start']:.4f} | {t['validation_bler_best']:.4f} ({t['best_step']}) | "
                             f"{t['validation_bler_last']:.4f} |")
        if e["latency"]:
            lines += ["", f"Latency, batch of {e['latency_batch']} blocks, median (IQR) ms: "
                      + ", ".join(f"{k} {v['median_ms']:.1f} ({v['iqr_ms']:.1f})" for k, v in e["latency"].items()) + "."]
        lines += ["", f"![BER and BLER vs Eb/N0]({e['plots']['curves']})",
                  f"![BLER per iteration]({e['plots']['per_iteration']})",
                  f"![learned weights per iteration]({e['plots']['weights']})", ""]
    lines += bars_markdown(result.get("bars") or [])
    return "\n".join(lines) + "\n"


def run_decoding_benchmark(out_dir, codes: Sequence[str] = ("n128", "n512"), steps: Optional[int] = None,
                           test_blocks: Optional[int] = None, quick: bool = False, quiet: bool = False,
                           layers: Sequence[str] = tuple(NETWORKS), sionna_blocks: int = 1000,
                           latency_batch: int = 1000, repeats: int = 10, seed: int = 0, threads: Optional[int] = 1) -> dict:
    """Run the benchmark and write decoding_benchmark.json, DECODING_RESULTS.md and the PNGs
    decoding_ber_bler_<code>.png, decoding_per_iteration_<code>.png, decoding_weights_<code>.png into
    ``out_dir``. ``steps``: training steps per network (default per code: CODES, 500 / 200); ``test_blocks``:
    test blocks per Eb/N0 point (default per code: 10000 / 5000); ``sionna_blocks``: blocks per point also
    decoded by Sionna's LDPC5GDecoder (the check); ``quick``: 30 training steps, 500 test blocks, a 4-point grid (a smoke run);
    ``threads``: torch threads during the run (1: steadier on a shared machine; None: unchanged)."""
    bad = [c for c in codes if c not in CODES]
    if bad or not codes:
        raise ConfigError(f"benchmark-decoding: codes must be among {', '.join(CODES)} (got {list(codes)})")
    if [n for n in layers if n not in NETWORKS]:
        raise ConfigError(f"benchmark-decoding: layers must be among {', '.join(NETWORKS)} (got {list(layers)})")
    if test_blocks is not None and test_blocks < 100:
        raise ConfigError(f"benchmark-decoding: test_blocks must be >= 100 (got {test_blocks})")
    if steps is not None and steps < 1:
        raise ConfigError(f"benchmark-decoding: steps must be >= 1 (got {steps})")
    if quick:
        steps, test_blocks, sionna_blocks, repeats = steps or 30, min(test_blocks or 500, 500), min(sionna_blocks, 200), 3
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        results = []
        for c in codes:
            grid = None
            if quick:
                full = CODES[c]["ebno"]
                grid = sorted({full[0], CODES[c]["per_iteration_ebno"], full[len(full) // 2], full[-1]})
            results.append(code_benchmark(c, layers, steps, test_blocks, sionna_blocks, latency_batch, repeats, seed,
                                          quiet, grid))
        result = {"setup": {"seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
                            "test_blocks": {e["code"]: e["test_blocks"] for e in results},
                            "steps": {e["code"]: next(iter(e["training"].values()))["steps"] if e["training"] else None
                                      for e in results}, "quick": quick,
                            "seconds": time.perf_counter() - t0}, "codes": results, "bars": _bars(results)}
    finally:
        torch.set_num_threads(old_threads)
    write_plots(result, out)
    (out / "decoding_benchmark.json").write_text(json.dumps(result, indent=2, default=_json_default))
    (out / "DECODING_RESULTS.md").write_text(markdown(result))
    return result


def _json_default(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return float(v)


def _finish(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    from .plots import plt
    plt.close(fig)
    return path.name


def _nz(values):
    """Zero error rates (no error in the test draw) are left out of a log plot (NaN), not drawn at a floor."""
    return [v if v > 0 else float("nan") for v in values]


def _curve_plot(e: dict, path: Path) -> str:
    from .plots import plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for k, c in e["curves"].items():
        style = "--" if k.startswith(("BP-", "min-sum", "Sionna")) else "-"
        for ax, key in zip(axes, ("ber", "bler")):
            ax.semilogy(e["ebno"], _nz(c[key]), marker="o", markersize=3, linestyle=style, label=k)
    for ax, key in zip(axes, ("BER", "BLER")):
        ax.set_xlabel("Eb/N0 (dB)")
        ax.set_ylabel(key)
        ax.set_title(f"{e['title']} ({e['test_blocks']} blocks per point; zero errors not drawn)", fontsize=8)
        if key == "BLER":
            for t in TARGETS:
                ax.axhline(t, color="grey", linewidth=0.7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, loc="lower left")
    return _finish(fig, path)


def _per_iteration_plot(e: dict, path: Path) -> str:
    from .plots import plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pi = e.get("per_iteration") or {"bler": {}, "ebno_db": float("nan")}
    for k, v in pi["bler"].items():
        ax.semilogy(range(1, len(v) + 1), _nz(v), marker="o", markersize=3, linestyle="--" if k == "BP" else "-", label=k)
    ax.set_xlabel("iteration")
    ax.set_ylabel("BLER")
    ax.set_xticks(range(1, 21, 1) if pi["bler"] else [])
    ax.set_title(f"{e['title']}: BLER after each iteration, Eb/N0 {pi['ebno_db']:g} dB", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _finish(fig, path)


def _weights_plot(e: dict, path: Path) -> str:
    """Per network and weight group whose weights left 1: the mean over the edge / column types per iteration
    and the min-max band (networks whose returned weights are all still 1, i.e. BP-5, are listed in the title)."""
    from .plots import plt
    fig, ax = plt.subplots(figsize=(8, 5))
    still = []
    for net, groups in e["weights"].items():
        if all(abs(a - 1.0) < 1e-7 for per_it in groups.values() for v in per_it for a in v):
            still.append(net)
            continue
        for name, per_it in groups.items():
            its = range(1, len(per_it) + 1)
            mean = [sum(v) / len(v) for v in per_it]
            line, = ax.plot(its, mean, marker="o", markersize=3, label=f"{net}: {name}")
            if len(per_it[0]) > 1:
                ax.fill_between(its, [min(v) for v in per_it], [max(v) for v in per_it], alpha=0.12, color=line.get_color())
    ax.axhline(1.0, color="grey", linewidth=0.7)
    ax.set_xlabel("iteration")
    ax.set_xticks(range(1, 6))
    ax.set_ylabel("weight (mean over types; band: min-max)")
    title = f"{e['title']}: learned weights"
    if still:
        title += "\nstill all 1 (the trainer kept the start): " + "; ".join(still)
    ax.set_title(title, fontsize=7)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1)
    return _finish(fig, path)


def write_plots(result: dict, out_dir) -> None:
    """(Re)draw every PNG of a benchmark result (``decoding_benchmark.json``) into ``out_dir``."""
    out = Path(out_dir)
    for e in result["codes"]:
        c = e["code"]
        e["plots"] = {"curves": _curve_plot(e, out / f"decoding_ber_bler_{c}.png"),
                      "per_iteration": _per_iteration_plot(e, out / f"decoding_per_iteration_{c}.png"),
                      "weights": _weights_plot(e, out / f"decoding_weights_{c}.png")}


__all__ = ["run_decoding_benchmark", "markdown", "write_plots", "CODES", "NETWORKS"]

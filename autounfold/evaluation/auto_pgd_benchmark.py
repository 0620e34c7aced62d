"""The Auto-PGD deployment benchmark (``autounfold benchmark-auto-pgd``): is the flagship beamformer
safe to deploy? JSON + Markdown, every number of the README's Auto-PGD deployment section.

1. **Robustness.** The preset model (``preset:auto_pgd``, trained once on the nominal channel) is
   applied *unchanged* to every scenario the beamforming problem declares (channel model, transmit
   angular spread 0-60 deg, n_tx 16-256, n_rx 1-32, receive correlation, SNR -10..40 dB) and to
   conditions no list named while it was built (``UNLISTED``). Beside it, at the same depth: power
   iteration, Lanczos (Rayleigh-Ritz over the same mat-vecs), projected gradient with the step and
   momentum tuned on the nominal validation draw, the preset recipe without momentum (layer
   ``subspace``, the preset before 2026-12-05) and the unsafeguarded ``signed`` layer trained the
   same way (what the safeguard buys). Mean and p5 of % of the optimum per cell.
2. **Latency.** Batch 256, interleaved, medians with IQR/p10/p90: the closed form, the model as
   ``autounfold.load`` returns it (saved and loaded, called as ``model(H, noise_var)``), the same
   module class with 200 layers at a fixed step and momentum (PGD-200 through the same code path),
   the model without momentum and PGD-200 through its cheaper layer, power iteration, Lanczos, the
   signed layer and the article's PGD-200. Achieved GFLOP/s of the model against a matmul peak
   measured in the same process.
3. **Multi-stream.** The preset recipe with n_streams 2 and 4, % of the water-filling optimum.
4. **Per-antenna power.** The batched reference solve on 2048 channels: seconds, iterations,
   convergence; power iteration, tuned PGD and a trained signed model against it.
5. **3GPP channels.** The preset model trained on the nominal (Rayleigh) channel and applied
   unchanged, and the same recipe (same steps) trained on 3GPP UMi users from ``pool_seed`` 0, both
   tested on UMi, UMa and CDL-C users from ``pool_seed`` 1 (terminals the UMi model never saw) and on
   the nominal channel; beside power iteration, Lanczos and PGD tuned on the nominal and on the UMi
   training users, at the same depth; mean, p5 and min of % of the optimum (closed form).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..algorithms import reference
from ..algorithms.subspace import Subspace
from ..build import build_model, build_problem
from ..config import load_config
from ..errors import ConfigError
from ..problems.beamforming import BeamformingProblem
from ..seeding import generator
from ..training import train
from ..unfolding.unfolded import Unfolded
from . import baselines
from .evaluate import scenario_config, transfer, with_problem_change
from .latency import device_name, gflops, measure_latency, peak_report, resolve_device

PRESET = "preset:auto_pgd"
PLAIN_LAYER = "subspace"     # the preset recipe without the heavy-ball term (the preset before 2026-12-05)
TIE_POINTS = 1e-6


def lanczos_shallow(depth: int) -> List[int]:
    """The Lanczos depths below the model's that the equal-latency comparison times and scores."""
    return [k for k in (depth - 2, depth - 1) if k >= 1]

# conditions that no scenario list of the problem names (acceptance beyond the axes)
UNLISTED = {
    "nrx64": ("n_rx = 64 = n_tx (square)", {"channel": {"n_rx": 64}}),
    "ntx512": ("n_tx = 512", {"channel": {"n_tx": 512}}),
    "as90": ("angular spread 90 deg", {"channel": {"angular_spread_deg": 90.0}}),
    "as40rx9": ("40 deg and rho_rx = 0.9 together", {"channel": {"angular_spread_deg": 40.0, "rx_rho": 0.9}}),
    "iid256x2": ("i.i.d., 256 x 2", {"channel": {"model": "iid_rayleigh", "n_tx": 256, "n_rx": 2}}),
    "snr-20": ("SNR -20 dB", {"channel": {"snr_db": [-20.0, -20.0]}}),
    "spacing1": ("antenna spacing 1 wavelength", {"channel": {"antenna_spacing": 1.0}}),
}

# the 3GPP section: trained on GPP_TRAIN users of pool TRAIN_POOL, tested on users of pool TEST_POOL
GPP_TEST = ("umi", "uma", "cdl")      # scenario keys of the beamforming problem
GPP_TRAIN = "umi"
GPP_NAMES = {"umi": "UMi", "uma": "UMa", "cdl": "CDL", "tdl": "TDL"}
TRAIN_POOL, TEST_POOL = 0, 1


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[benchmark-auto-pgd {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _preset(steps: int, overrides: Sequence[str] = ()):
    return load_config(PRESET, [f"training.steps={steps}", *overrides])


def _train(cfg, seed: int, quiet: bool):
    model = build_model(cfg)
    res = train(model, cfg.training, seed=seed, progress=False)
    _log(f"trained {cfg.model.layer}-{cfg.model.num_layers} (S={cfg.problem.n_streams}, "
         f"{cfg.problem.constraint}) in {res.seconds:.1f} s", quiet)
    return model


def _cells(problem, test, ref, cands: Dict[str, torch.Tensor]) -> Dict[str, dict]:
    return {name: {k: v for k, v in problem.summarize(x, test, ref).items() if k in ("pct_of_optimum", "p5_pct", "min_pct")}
            for name, x in cands.items()}


def robustness(models: dict, tuned: dict, depth: int, test_batch: int, seed: int, quiet: bool) -> List[dict]:
    """One row per condition: the trained models unchanged and the classical solvers at ``depth``."""
    conditions = [(k, name, change, True) for k, (name, change) in BeamformingProblem.scenarios.items()]
    conditions += [(k, name, change, False) for k, (name, change) in UNLISTED.items()]
    rows = []
    for key, name, change, listed in conditions:
        def moved(model):        # the model's own config (its layer type) with this condition's problem
            return (scenario_config(model.config, key) if listed
                    else with_problem_change(model.config, change, f"benchmark-auto-pgd {key}"))
        cfg = moved(next(iter(models.values())))
        problem = build_problem(cfg.problem)
        if min(problem.n_tx, problem.n_rx) < problem.n_streams:
            continue
        test = problem.sample(test_batch, generator(seed, "auto-pgd-robustness", key))
        ref = reference(problem, test)
        with torch.no_grad():
            cands = {"power iteration": baselines.power_iteration(problem, test, depth),
                     "Lanczos": baselines.lanczos(problem, test, depth),
                     "PGD tuned (nominal)": baselines.run_tuned(problem, test, tuned, depth)}
            for label, model in models.items():
                cands[label] = transfer(model, moved(model)).run(test)
            # Lanczos at fewer iterations: the strongest classical solver at the model's latency (the
            # equal-latency line of the Markdown; not columns of the table)
            shallow = {f"Lanczos-{k}": baselines.lanczos(problem, test, k) for k in lanczos_shallow(depth)}
        rows.append({"key": key, "condition": name, "listed": listed, "cells": _cells(problem, test, ref, cands),
                     "lanczos_shallow": _cells(problem, test, ref, shallow)})
        _log(f"robustness {key}: " + ", ".join(f"{m} {c['pct_of_optimum']:.3f}" for m, c in rows[-1]["cells"].items()), quiet)
    return rows


def _gpp_test_config(cfg, key: str):
    """``cfg`` moved to the scenario ``key``; a 3GPP channel draws its users from the test pool."""
    moved = scenario_config(cfg, key)
    if moved.problem.channel.model in GPP_NAMES:
        moved = with_problem_change(moved, {"channel": {"pool_seed": TEST_POOL}}, f"benchmark-auto-pgd 3gpp {key}")
    return moved


def three_gpp(preset, tuned: dict, test_batch: int, seed: int, quiet: bool,
              channels: Sequence[str] = GPP_TEST) -> dict:
    """The preset model trained on Rayleigh (``preset``, applied unchanged) and the same recipe and
    steps (``preset.config``) trained on GPP_TRAIN users of pool TRAIN_POOL, tested on the nominal
    channel and on ``channels`` with users from pool TEST_POOL; power iteration, Lanczos, PGD tuned on
    the nominal validation draw (``tuned``) and PGD tuned on the GPP_TRAIN training pool, all at the
    preset's depth."""
    K = preset.num_layers
    cfg = with_problem_change(preset.config, {"channel": {"model": GPP_TRAIN, "pool_seed": TRAIN_POOL}},
                              "benchmark-auto-pgd 3gpp training")
    t0 = time.perf_counter()
    trained = _train(cfg, seed, quiet)
    train_seconds = time.perf_counter() - t0
    p_train = trained.problem
    val = p_train.sample(cfg.training.validation_batch, generator(seed, "validation"))
    tuned_gpp, _ = baselines.tune_fixed_step(p_train, val, reference(p_train, val), K,
                                             momentum_grid=baselines.PGD_MOMENTA)
    name = GPP_NAMES[GPP_TRAIN]
    labels = {"rayleigh": f"Auto-PGD-{K} trained on the nominal channel (preset)",
              "gpp": f"Auto-PGD-{K} trained on {name} (pool {TRAIN_POOL})"}
    models = {labels["rayleigh"]: preset, labels["gpp"]: trained}
    tuned_label = f"PGD tuned ({name}, pool {TRAIN_POOL})"
    rows = []
    for key in ("nominal", *channels):
        # both models have the preset's layers and depth: one test config (the nominal model's, moved)
        moved = _gpp_test_config(preset.config, key)
        problem = build_problem(moved.problem)
        test = problem.sample(test_batch, generator(seed, "auto-pgd-3gpp", key))
        ref = reference(problem, test)
        with torch.no_grad():
            cands = {"power iteration": baselines.power_iteration(problem, test, K),
                     "Lanczos": baselines.lanczos(problem, test, K),
                     "PGD tuned (nominal)": baselines.run_tuned(problem, test, tuned, K),
                     tuned_label: baselines.run_tuned(problem, test, tuned_gpp, K)}
            for label, m in models.items():
                cands[label] = transfer(m, moved).run(test)
        pool = getattr(problem.source, "pool", None)
        rows.append({"key": key, "condition": BeamformingProblem.scenarios[key][0],
                     "test_pool_seed": problem.source.pool_seed if pool is not None else None,
                     "test_pool_terminals": pool, "cells": _cells(problem, test, ref, cands)})
        _log(f"3gpp {key}: " + ", ".join(f"{m} {c['pct_of_optimum']:.3f}" for m, c in rows[-1]["cells"].items()), quiet)
    return {"train_channel": GPP_TRAIN, "train_pool_seed": p_train.source.pool_seed, "test_pool_seed": TEST_POOL,
            "steps": cfg.training.steps, "train_seconds": train_seconds,
            "train_pool_terminals": getattr(p_train.source, "pool", None),
            "learned_steps": trained.scalar_parameters()["step"],
            "learned_momenta": trained.scalar_parameters().get("momentum"), "tuned_pgd": tuned_gpp,
            "models": labels, "rows": rows}


def _layer_flops(n_rx: int, n_tx: int, batch: int, depth: int) -> float:
    """Real flops of the products of a depth-K subspace model (S = 1): 2K + 1 products with H or H^H
    (8 real flops per complex multiply-add); the O(B) scalars are left out."""
    return float(8 * n_rx * n_tx * batch * (2 * depth + 1))


def latency(model, signed, problem, batch: int, repeats: int, seed: int, quiet: bool, device="cpu", plain=None) -> dict:
    """Latency at ``batch`` of the loaded preset model against the closed form and PGD-200 through
    the same code path (the preset's layer at a fixed step and momentum), interleaved in one process,
    on ``device`` (on CUDA ``measure_latency`` synchronises around every call and warms the context
    up first). ``plain``: the same recipe without momentum, timed beside it with its own PGD-200
    (the cheaper layer's code path)."""
    from ..artifacts import load, save          # what autounfold.load / autounfold.save call
    dev = resolve_device(device)
    inst = problem.sample(batch, generator(seed, "auto-pgd-latency"), dev)
    H, nv = inst.H, inst.noise_var
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load(save(model, Path(tmp) / "m", model.config)).to(dev)
        loaded_plain = None if plain is None else load(save(plain, Path(tmp) / "mp", plain.config)).to(dev)
    signed = signed.to(dev)
    K = model.num_layers
    fixed = -1.0                      # any fixed signed step (and momentum): the work per layer does not depend on it
    same_path = {T: Unfolded(problem, Subspace(), T, model.layer, step_init=fixed, momentum_init=0.5).eval().to(dev)
                 for T in (K, 200)}
    model_key = f"Auto-PGD-{K} (autounfold.load, model(H, noise_var))"
    plain_key = f"Auto-PGD-{K} without momentum (autounfold.load, layer {getattr(plain, 'layer', PLAIN_LAYER)})"
    pgd_key = f"PGD-200, same code path (200 layers of {model.layer} at a fixed step)"
    plain_pgd_key = f"PGD-200 through layer {getattr(plain, 'layer', PLAIN_LAYER)} (cheaper per layer)"
    fns = {"closed form (eigenvector of the n_rx x n_rx dual)": lambda: problem.optimum_total_power(inst, torch.complex64),
           model_key: lambda: loaded(H, nv),
           f"same code path, {K} layers at a fixed step": lambda: same_path[K](H, nv),
           pgd_key: lambda: same_path[200](H, nv)}
    if plain is not None and plain.layer != model.layer:
        plain_200 = Unfolded(problem, Subspace(), 200, plain.layer, step_init=fixed).eval().to(dev)
        fns[plain_key] = lambda: loaded_plain(H, nv)
        fns[plain_pgd_key] = lambda: plain_200(H, nv)
    fns.update({f"power iteration-{K}": lambda: baselines.power_iteration(problem, inst, K),
                f"Lanczos-{K}": lambda: baselines.lanczos(problem, inst, K),
                **{f"Lanczos-{k}": (lambda k: lambda: baselines.lanczos(problem, inst, k))(k) for k in lanczos_shallow(K)},
                f"signed-{K} (unsafeguarded layer)": lambda: signed(H, nv),
                f"PGD-200, article step {baselines.ARTICLE_STEP:g} (previous code path)":
                    lambda: baselines.article_pgd(problem, inst, 200)})
    _log(f"latency: {len(fns)} methods x {repeats} interleaved repeats, batch {batch}", quiet)
    lat = measure_latency(fns, repeats=repeats, warmup=5, device=dev)
    peak = peak_report(dev, batched_shape=(batch, problem.n_rx, problem.n_tx, 1))
    ms = lat[model_key]["median_ms"]
    achieved = gflops(_layer_flops(problem.n_rx, problem.n_tx, batch, K), ms)
    closed = lat["closed form (eigenvector of the n_rx x n_rx dual)"]["median_ms"]
    pgd200 = lat[pgd_key]["median_ms"]
    extra = {}
    if plain_key in lat:
        plain_ms, plain_pgd = lat[plain_key]["median_ms"], lat[plain_pgd_key]["median_ms"]
        extra = {"plain_layer": plain.layer, "speedup_vs_pgd200_plain_path": plain_pgd / ms,
                 "plain_speedup_vs_closed_form": closed / plain_ms, "plain_speedup_vs_pgd200_plain_path": plain_pgd / plain_ms}
    return {**extra, "batch": batch, "threads": torch.get_num_threads(), "repeats": repeats, "device": str(dev),
            "device_name": device_name(dev), "layer": model.layer, "methods": lat,
            "speedup_vs_closed_form": closed / ms, "speedup_vs_pgd200_same_path": pgd200 / ms,
            "model_gflops": achieved, "peak": peak,
            "model_fraction_of_batched_peak": achieved / peak["batched_complex64_gflops"],
            "model_fraction_of_square_peak": achieved / peak["square_complex64_gflops"]}


def multi_stream(streams: Sequence[int], steps: int, test_batch: int, seed: int, quiet: bool) -> List[dict]:
    rows = []
    for S in streams:
        cfg = _preset(steps, [f"problem.n_streams={S}"])
        model = _train(cfg, seed, quiet)
        for key in ("nominal", "iid", "as40", "ntx128", "snr-10", "snr40"):
            c = scenario_config(cfg, key)
            problem = build_problem(c.problem)
            test = problem.sample(test_batch, generator(seed, "auto-pgd-streams", S, key))
            ref = reference(problem, test)
            with torch.no_grad():
                cands = {"power iteration": baselines.power_iteration(problem, test, cfg.model.num_layers),
                         "Lanczos": baselines.lanczos(problem, test, cfg.model.num_layers),
                         "Auto-PGD (preset recipe)": transfer(model, c).run(test)}
            rows.append({"streams": S, "key": key, "condition": BeamformingProblem.scenarios[key][0],
                         "cells": _cells(problem, test, ref, cands)})
    return rows


def per_antenna(steps: int, depth: int, batch: int, seed: int, quiet: bool) -> dict:
    cfg = _preset(steps, ["problem.constraint=per_antenna", "model.layer=signed"])
    problem = build_problem(cfg.problem)
    test = problem.sample(batch, generator(seed, "auto-pgd-per-antenna"))
    t0 = time.perf_counter()
    ref = reference(problem, test)
    seconds = time.perf_counter() - t0
    decl = problem.reference_solver
    _log(f"per-antenna reference: {batch} channels in {seconds:.1f} s", quiet)
    val = problem.sample(512, generator(seed, "validation"))
    val_ref = reference(problem, val)
    tuned, _ = baselines.tune_fixed_step(problem, val, val_ref, depth, momentum_grid=baselines.PGD_MOMENTA)
    model = _train(cfg, seed, quiet)
    with torch.no_grad():
        cands = {"power iteration (projected)": baselines.power_iteration(problem, test, depth),
                 "PGD tuned": baselines.run_tuned(problem, test, tuned, depth),
                 f"Auto-PGD-{depth} (signed)": model.run(test)}
        feasible = bool(problem.feasible(ref, test).all())
    return {"channels": batch, "reference_seconds": seconds, "reference_tol": decl.tol,
            "reference_max_iterations": decl.max_iterations, "reference_feasible": feasible,
            "reference_per_sample": decl.per_sample, "cells": _cells(problem, test, ref, cands)}


def run_auto_pgd_benchmark(out_dir, steps: int = 400, test_batch: int = 1024, latency_batch: int = 256,
                           repeats: int = 100, streams: Sequence[int] = (2, 4), seed: int = 0,
                           quiet: bool = False, device: str = "cpu") -> dict:
    """Everything above; writes auto_pgd_benchmark.json and auto_pgd_benchmark.md into ``out_dir``.
    ``device`` is where the latency table runs (training and the quality tables run on the CPU)."""
    resolve_device(device)                       # a one-line ConfigError before anything is trained
    if steps < 0 or test_batch < 16 or latency_batch < 1 or repeats < 1 or any(s < 1 for s in streams):
        raise ConfigError(f"benchmark-auto-pgd: steps >= 0, test_batch >= 16, latency_batch >= 1, repeats >= 1 and "
                          f"streams >= 1 (got {steps}, {test_batch}, {latency_batch}, {repeats}, {list(streams)})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    t0 = time.perf_counter()
    cfg = _preset(steps)
    K = cfg.model.num_layers
    preset = _train(cfg, seed, quiet)
    signed = _train(_preset(steps, ["model.layer=signed"]), seed, quiet)
    plain = _train(_preset(steps, [f"model.layer={PLAIN_LAYER}"]), seed, quiet)
    problem = preset.problem
    val = problem.sample(cfg.training.validation_batch, generator(seed, "validation"))
    tuned, _ = baselines.tune_fixed_step(problem, val, reference(problem, val), K,
                                         momentum_grid=baselines.PGD_MOMENTA)
    # the preset last: the summary lines read it from the last column
    models = {f"Auto-PGD-{K} signed (unsafeguarded)": signed, f"Auto-PGD-{K} {PLAIN_LAYER} (no momentum)": plain,
              f"Auto-PGD-{K} {preset.layer} (preset)": preset}
    result = {"setup": {"preset": PRESET, "steps": steps, "depth": K, "seed": seed, "test_batch": test_batch,
                        "torch": torch.__version__, "threads": torch.get_num_threads(), "layer": preset.layer,
                        "learned": preset.scalar_parameters(), "learned_steps": preset.scalar_parameters()["step"],
                        "tuned_pgd": tuned, "plain_model": plain.scalar_parameters()}}
    result["robustness"] = robustness(models, tuned, K, test_batch, seed, quiet)
    result["3gpp"] = three_gpp(preset, tuned, test_batch, seed, quiet)
    result["latency"] = latency(preset, signed, problem, latency_batch, repeats, seed, quiet, device, plain)
    result["multi_stream"] = multi_stream(streams, steps, test_batch, seed, quiet)
    result["per_antenna"] = per_antenna(steps, K, 2048, seed, quiet)
    result["setup"]["seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "auto_pgd_benchmark.json").write_text(json.dumps(result, indent=2))
    (out / "auto_pgd_benchmark.md").write_text(markdown(result))
    return result


def _cell(c: Optional[dict]) -> str:
    return "—" if c is None else f"{c['pct_of_optimum']:.3f} / {c['p5_pct']:.2f}"


def _cell3(c: Optional[dict]) -> str:
    return "—" if c is None else f"{c['pct_of_optimum']:.3f} / {c['p5_pct']:.2f} / {c['min_pct']:.2f}"


def gpp_markdown(g: dict, test_batch: int, depth: int) -> List[str]:
    """The 3GPP section's Markdown lines (``g``: the result of ``three_gpp``)."""
    rows, labels = g["rows"], g["models"]
    methods = list(rows[0]["cells"])
    name = GPP_NAMES.get(g["train_channel"], g["train_channel"])
    pools = sorted({r["test_pool_terminals"] for r in rows if r["test_pool_terminals"] is not None})
    lines = ["", f"## 3GPP channels: trained on the nominal channel and on {name} (% of the optimum, mean / p5 / min)", "",
             f"The preset model trained above, applied unchanged, and the same recipe ({g['steps']} steps, "
             f"{g['train_seconds']:.0f} s) trained on {name} users of pool_seed {g['train_pool_seed']} "
             f"({g['train_pool_terminals']} pooled terminals); learned steps "
             f"{', '.join(f'{v:.3g}' for v in g['learned_steps'])}"
             + (f", momenta {', '.join(f'{v:.3g}' for v in g['learned_momenta'])}" if g.get("learned_momenta") else "")
             + f". Test draws of {test_batch} channels per row; "
             f"the 3GPP rows draw their users from pool_seed {g['test_pool_seed']}, terminals no model saw in training "
             f"(each channel is one pooled terminal times a random phase, so a draw holds at most "
             f"{'/'.join(str(p) for p in pools) or '—'} distinct channels). Every solver at depth {depth}; "
             f"PGD tuned on the nominal validation draw and on the {name} training users.", "",
             "| test channel | test pool_seed | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for r in rows:
        pool = "—" if r["test_pool_seed"] is None else str(r["test_pool_seed"])
        lines.append(f"| {r['condition']} | {pool} | " + " | ".join(_cell3(r["cells"].get(m)) for m in methods) + " |")
    ray, gpp = labels["rayleigh"], labels["gpp"]
    gain = ", ".join(f"{r['key']} {r['cells'][gpp]['pct_of_optimum'] - r['cells'][ray]['pct_of_optimum']:+.3f}" for r in rows)
    over = ", ".join(f"{r['key']} {r['cells'][ray]['pct_of_optimum'] - r['cells']['power iteration']['pct_of_optimum']:+.3f}"
                     for r in rows)
    lines += ["", f"Trained on {name} minus trained on the nominal channel (mean, points): {gain}. "
              f"Nominal-trained minus power iteration (mean, points): {over}."]
    return lines


def _against_tuned(rob: List[dict], name: str) -> str:
    """One line: where the model ``name`` stands against PGD tuned on the nominal draw (the strongest
    classical solver of its cost) and power iteration, over the robustness rows."""
    tuned = "PGD tuned (nominal)"
    gaps = [r["cells"][name]["pct_of_optimum"] - r["cells"][tuned]["pct_of_optimum"] for r in rob]
    below = sum(g < -0.01 for g in gaps)
    under_pi = sum(r["cells"][name]["pct_of_optimum"] < r["cells"]["power iteration"]["pct_of_optimum"] - TIE_POINTS
                   for r in rob)
    worst = min(rob, key=lambda r: r["cells"][name]["pct_of_optimum"])
    return (f"- {name}: worst mean {worst['cells'][name]['pct_of_optimum']:.3f}% ({worst['condition']}); against tuned "
            f"PGD-5: above in {sum(g > 0.01 for g in gaps)}, within 0.01 points in {len(gaps) - below - sum(g > 0.01 for g in gaps)}, "
            f"below by more than 0.01 in {below} of {len(rob)} conditions"
            f"{f' (largest shortfall {-min(gaps):.3f} points)' if below else ''}; "
            f"below power iteration in {under_pi}.")


def _equal_latency(rob: List[dict], lat: dict, model: str, depth: int) -> List[str]:
    """The strongest classical solver at the model's latency: Lanczos at fewer iterations, timed in
    the latency table and scored on every robustness condition."""
    if not rob or "lanczos_shallow" not in rob[0]:
        return []
    model_key = f"Auto-PGD-{depth} (autounfold.load, model(H, noise_var))"
    t_model = lat["methods"][model_key]["median_ms"]
    mine = [r["cells"][model]["pct_of_optimum"] for r in rob]
    nominal = next((i for i, r in enumerate(rob) if r["key"] == "nominal"), 0)
    parts = []
    for name in rob[0]["lanczos_shallow"]:
        theirs = [r["lanczos_shallow"][name]["pct_of_optimum"] for r in rob]
        t = lat["methods"].get(name, {}).get("median_ms")
        above = sum(b > a + 0.01 for a, b in zip(mine, theirs))
        below = sum(b < a - 0.01 for a, b in zip(mine, theirs))
        parts.append(f"{name} takes {'—' if t is None else f'{t:.3f} ms ({t / t_model:.2f}x the model)'}, nominal "
                     f"{theirs[nominal]:.3f}%, worst {min(theirs):.3f}%; above the model by more than 0.01 points in "
                     f"{above} of {len(rob)} conditions, below in {below}")
    return ["", "Equal latency (the strongest classical solver at the model's cost: Lanczos at fewer iterations, the "
            f"same products): the model takes {t_model:.3f} ms, nominal {mine[nominal]:.3f}%, worst {min(mine):.3f}%. "
            + "; ".join(parts) + "."]


def markdown(result: dict) -> str:
    s = result["setup"]
    rob = result["robustness"]
    methods = list(rob[0]["cells"])
    preset_key = methods[-1]
    lines = ["# Auto-PGD deployment benchmark", "",
             f"`autounfold benchmark-auto-pgd` (`make benchmark-auto-pgd`): {s['preset']} ({s['depth']} layers, "
             f"{s['steps']} training steps, seed {s['seed']}), torch {s['torch']}, {s['threads']} threads, CPU, "
             f"{s['seconds'] / 60:.1f} min. Preset layer {s.get('layer', '?')}, learned steps "
             f"{', '.join(f'{v:.3g}' for v in s['learned_steps'])}"
             + ("" if "momentum" not in s.get("learned", {}) else
                f", momenta {', '.join(f'{v:.3g}' for v in s['learned']['momentum'])} (the first has no previous iterate)")
             + "." + ("" if "plain_model" not in s else
                      f" Without momentum (layer {PLAIN_LAYER}, the same recipe; the preset before 2026-12-05): steps "
                      f"{', '.join(f'{v:.3g}' for v in s['plain_model']['step'])}."), "",
             "## Robustness: the nominal model applied unchanged (% of the optimum, mean / p5)", "",
             f"Test sets of {s['test_batch']} channels per condition; every solver at depth {s['depth']} "
             "(2K + 1 products with H or H^H). Rows marked * were not in any list the model was built against.", "",
             "| condition | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for r in rob:
        lines.append(f"| {r['condition']}{'' if r['listed'] else ' *'} | " +
                     " | ".join(_cell(r["cells"].get(m)) for m in methods) + " |")
    worst = min(rob, key=lambda r: r["cells"][preset_key]["pct_of_optimum"])
    # below by more than float32 rounding of the SE (1e-6 points; rank-one channels tie at 99.9999995)
    below = [r["key"] for r in rob
             if r["cells"][preset_key]["pct_of_optimum"] < r["cells"]["power iteration"]["pct_of_optimum"] - TIE_POINTS]
    wins = sum(r["cells"][preset_key]["pct_of_optimum"] >= r["cells"]["Lanczos"]["pct_of_optimum"] for r in rob)
    lines += ["", f"Preset model: worst mean {worst['cells'][preset_key]['pct_of_optimum']:.3f}% ({worst['condition']}); "
              f"mean below power iteration (by more than {TIE_POINTS:g} points) in {len(below)} of {len(rob)} conditions"
              f"{': ' + ', '.join(below) if below else ''}; "
              f"at or above Lanczos in {wins} of {len(rob)}."]
    lines += [""] + [_against_tuned(rob, m) for m in methods if m.startswith("Auto-PGD") and "subspace" in m]
    if result.get("3gpp"):
        lines += gpp_markdown(result["3gpp"], s["test_batch"], s["depth"])
    lat = result["latency"]
    lines += ["", f"## Latency (batch {lat['batch']}, {lat.get('device_name', 'cpu')}, {lat['threads']} CPU threads, "
              f"{lat['repeats']} interleaved repeats, each round in its own random order)", "",
              "| method | median ms | IQR | p10 | p90 |", "|---|---|---|---|---|"]
    for name, m in lat["methods"].items():
        lines.append(f"| {name} | {m['median_ms']:.3f} | {m['iqr_ms']:.3f} | {m['p10_ms']:.3f} | {m['p90_ms']:.3f} |")
    p = lat["peak"]
    lines += ["", f"Auto-PGD-{s['depth']} is {lat['speedup_vs_closed_form']:.2f}x faster than the closed form and "
              f"{lat['speedup_vs_pgd200_same_path']:.1f}x faster than PGD-200 through the same code path"
              + (f" ({lat.get('layer', 'its layer')}; {lat['speedup_vs_pgd200_plain_path']:.1f}x against PGD-200 through "
                 f"the cheaper layer {lat['plain_layer']})" if "speedup_vs_pgd200_plain_path" in lat else "")
              + " (ceiling "
              f"{200 / s['depth']:.0f}x counted in layers, {(2 * 200 + 2) / (2 * s['depth'] + 2):.1f}x in passes over H: "
              "the input check and the first product read H once each, every layer twice). "
              f"Achieved {lat['model_gflops']:.2f} GFLOP/s (products only) against "
              f"{p['batched_complex64_gflops']:.2f} GFLOP/s for one batched complex64 product of the same shape "
              f"({100 * lat['model_fraction_of_batched_peak']:.0f}%) and {p['square_complex64_gflops']:.1f} GFLOP/s "
              f"for a {p['square_n']}^2 complex64 matmul ({100 * lat['model_fraction_of_square_peak']:.1f}%), "
              "measured in the same process."]
    if "plain_speedup_vs_closed_form" in lat:
        lines[-1] += (f" The model without momentum ({lat['plain_layer']}): "
                      f"{lat['plain_speedup_vs_closed_form']:.2f}x the closed form, "
                      f"{lat['plain_speedup_vs_pgd200_plain_path']:.1f}x PGD-200 through its own layer.")
    lines += _equal_latency(rob, lat, preset_key, s["depth"])
    ms = result["multi_stream"]
    if ms:
        mnames = list(ms[0]["cells"])
        lines += ["", "## Multi-stream (preset recipe with n_streams set; % of the water-filling optimum, mean / p5)", "",
                  "| streams | condition | " + " | ".join(mnames) + " |", "|---" * (len(mnames) + 2) + "|"]
        for r in ms:
            lines.append(f"| {r['streams']} | {r['condition']} | " + " | ".join(_cell(r["cells"][m]) for m in mnames) + " |")
    pa = result["per_antenna"]
    lines += ["", "## Per-antenna power", "",
              f"Reference: {pa['channels']} channels in {pa['reference_seconds']:.1f} s (batched, relative SE change "
              f"< {pa['reference_tol']:g}, at most {pa['reference_max_iterations']} iterations, "
              f"{'per-sample stop' if pa['reference_per_sample'] else 'whole-batch stop'}; feasible: {pa['reference_feasible']}).", "",
              "| method | % of reference, mean / p5 |", "|---|---|"]
    for name, c in pa["cells"].items():
        lines.append(f"| {name} | {_cell(c)} |")
    return "\n".join(lines) + "\n"

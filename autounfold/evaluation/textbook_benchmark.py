"""The textbook's remaining unfolded algorithms against their classical versions at equal and at twice
the iterations (``autounfold benchmark-textbook``, ``make benchmark-textbook``): ADMM-Net on the LASSO
and on MIMO detection, learned expectation propagation on 8 x 8 16-QAM.

Sections (``SECTIONS``):

- ``lasso``: the textbook sparse-recovery problem (``preset:admm_net``: N = 50, M = 25, s = 5, 20 dB). NMSE
  (dB, against the true signal) on a fresh test draw: ISTA-K, FISTA-K, classical ADMM with K, 2K and 4K
  iterations (penalty and over-relaxation tuned for each depth on a validation draw), the LASSO's own
  optimum (FISTA to a 1e-7 relative change: no LASSO solver does better against the truth), and the
  trained ADMM (learned rho_k, alpha_k) and ADMM-Net (also theta_k) with K layers. Also NMSE per
  iteration and latency.
- ``admm_detection``: 4 x 4 QPSK, i.i.d. Rayleigh (``preset:admm_detection``), the same test draws as the
  detection benchmark's 4x4_qpsk case (same seed, size and generator labels: the same symbols), so
  its DeepSIC, DetNet, EP and ML curves from ``benchmarks/detection_benchmark.json`` stand beside these
  (read from that file when it is there, marked as such). SER vs SNR for LMMSE, classical ADMM-K and
  ADMM-2K (penalty and relaxation tuned at each SNR on a validation draw), ADMM and ADMM-Net with K layers.
- ``ep``: 8 x 8 16-QAM, i.i.d. Rayleigh (``preset:learned_ep``), the detection benchmark's 8x8_16qam test
  draws up to 20 dB: EP with K, 2K and 4K iterations at Sionna's damping 0.9 and with the damping tuned
  at each SNR, learned EP with K iterations (the preset's layer, which adds a cavity-variance scale
  and the start's prior variance, and the two layers with less: without the start variance, and
  without the cavity scale either); then the
  same under a mismatched SNR (the receiver's noise variance off by up to 3 dB, ``noise_error_db: 3``;
  the classical damping tuned on mismatched validation draws, the network trained without mismatch).
  Then ``ep_depth``: the preset's recipe trained at the depths ``EP_DEPTHS`` below the preset's too, each
  against EP with the same and with twice its iterations (from which depth do K learned iterations
  match 2K classical ones?).

"SNR at SER 1e-2": log-linear interpolation on the curve (``detection_benchmark.snr_at``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..algorithms import detection as D
from ..algorithms.admm import admm, tune_admm
from ..algorithms.ep import DAMPING, expectation_propagation, tune_ep
from ..algorithms.reference import reference
from ..build import build_model, build_problem
from ..config import load_config, parse_config
from ..errors import ConfigError
from ..seeding import generator
from ..training import train
from .baselines import fista, ista
from ..curves import crossing_kind, snr_at
from .detection_benchmark import CASES, _gap, _overrides
from .evaluate import transfer, with_problem_change
from .latency import measure_latency
from .report import bars_markdown, fmt as _fmt

SECTIONS = ("lasso", "admm_detection", "ep")
VALIDATION = 2000                    # symbol vectors (detection) or signals (LASSO) the classical knobs are tuned on
EP_SNRS = [8, 10, 12, 14, 16, 18, 20]
EP_DEPTHS = (4, 5)                   # learned EP at these depths too (the preset's recipe), each against EP-K and EP-2K
MISMATCH_DB = 3.0
DETECTION_JSON = Path(__file__).resolve().parents[2] / "benchmarks" / "detection_benchmark.json"
FROM_DETECTION = {"4x4_qpsk": ("ML (exhaustive)", "EP-10 (Sionna)", "K-best (K=16, Sionna)", "DeepSIC (sequential)", "DetNet"),
                  "8x8_16qam": ("K-best (K=16, Sionna)", "DeepSIC (sequential)", "DeepSIC (end to end)", "DetNet")}


# ADMM-Net applied unchanged where it was not trained (the classical ADMM re-tuned there, and with its
# nominal knobs): problem changes of the LASSO, --set overrides of the 4 x 4 QPSK detection case
LASSO_UNSEEN = (("measurement SNR 10 dB", {"snr_db": 10.0}), ("measurement SNR 30 dB", {"snr_db": 30.0}),
                ("sparsity 3", {"sparsity": 3}), ("sparsity 8", {"sparsity": 8}),
                ("another matrix A (matrix_seed 1)", {"matrix_seed": 1}),
                ("N = 100, M = 50, s = 10 (another size and matrix)", {"n": 100, "m": 50, "sparsity": 10}))
DETECTION_UNSEEN = (("8 x 8 QPSK", ["problem.n_users=8", "problem.n_rx=8"]),
                    ("4 users, 8 receive antennas", ["problem.n_rx=8"]),
                    ("3GPP UMi (Sionna), users of pool_seed 1", ["problem.channel.model=umi", "problem.channel.pool_seed=1"]),
                    ("noise variance misestimated by up to 3 dB", ["problem.noise_error_db=3.0"]),
                    ("channel estimate with error variance 0.01", ["problem.csi_error=0.01"]))
UNSEEN_SNRS = list(range(0, 26, 2))  # past the nominal grid: a correlated (UMi) channel needs more SNR


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[textbook benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _train(preset: str, overrides: List[str], steps: Optional[int], seed: int, label: str, quiet: bool):
    over = list(overrides) + [f"seed={seed}"] + ([f"training.steps={steps}"] if steps is not None else [])
    cfg = load_config(preset, over)
    model = build_model(cfg)
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False)
    secs = time.perf_counter() - t0
    _log(f"trained {label} (K={model.num_layers}) in {secs:.0f} s, validation score {res.best_score:.4g} "
         f"(step {res.best_step})", quiet)
    start = next((h["val_score"] for h in res.history if h.get("step") == 0), None)
    info = {"seconds": secs, "steps": cfg.training.steps, "layers": model.num_layers, "params": model.num_parameters(),
            "learned": model.scalar_parameters(), "validation_start": start, "validation_best": res.best_score,
            "best_step": res.best_step, "refined": res.refine is not None}
    return model.eval(), info


def _train_all(preset: str, nets: Dict[str, List[str]], name: str, steps, seed: int, quiet: bool):
    """Each network of ``nets`` ({label: overrides}) trained from ``preset``: ({name: model} with name
    formatted from the label and depth K, {label: training info}, K)."""
    models, training = {}, {}
    for label, over in nets.items():
        m, training[label] = _train(preset, over, steps, seed, label, quiet)
        models[name.format(label=label, K=m.num_layers)] = m
    return models, training, next(iter(models.values())).num_layers


# ---- LASSO --------------------------------------------------------------------------------------
def lasso_section(steps: Optional[int], test_size: int, latency_batch: int, repeats: int, seed: int, quiet: bool) -> dict:
    nets = {"ADMM-Net (rho_k, alpha_k, theta_k)": [], "ADMM, learned rho_k and alpha_k": ["model.layer=admm"]}
    models, training, K = _train_all("preset:admm_net", nets, "{label}", steps, seed, quiet)
    problem = next(iter(models.values())).problem
    test = problem.sample(test_size, generator(seed, "test", "textbook-lasso"))
    val = problem.sample(VALIDATION, generator(seed, "validation-admm", "textbook-lasso"))
    truth = test.x_true

    def nmse(x):
        return problem.summarize(x, test, truth)["nmse_db"]
    tuned = {k: tune_admm(problem, val, k)[0] for k in (K, 2 * K, 4 * K)}
    fns = {f"ISTA-{K}": lambda inst: ista(problem, inst, K).x, f"FISTA-{K}": lambda inst: fista(problem, inst, K).x}
    for k, (rho, alpha) in tuned.items():
        fns[f"ADMM-{k}, tuned"] = (lambda kk, r, a: (lambda inst: admm(problem, inst, kk, r, a)))(k, rho, alpha)
    for label, m in models.items():
        fns[f"{label}, {K} layers"] = (lambda mm: (lambda inst: mm.run(inst)))(m)
    with torch.no_grad():
        rows = {label: nmse(fn(test)) for label, fn in fns.items()}
        rows["LASSO optimum (FISTA to 1e-7)"] = nmse(reference(problem, test))
        per_layer = {label: [nmse(x) for x in m.run(test, return_all=True)] for label, m in models.items()}
        rho, alpha = tuned[2 * K]
        from ..algorithms.admm import ADMM
        from ..algorithms.solver import solve
        traj = solve(problem, test, ADMM(), {"penalty": rho, "relaxation": alpha}, 2 * K, trajectory=True).trajectory
        per_layer[f"ADMM, tuned for {2 * K}"] = [nmse(x) for x in traj]
    lat_inst = problem.sample(latency_batch, generator(seed, "latency", "textbook-lasso"))
    lat_fns = {k: (lambda f: (lambda: f(lat_inst)))(f) for k, f in fns.items()}
    latency = {k: v["median_ms"] for k, v in measure_latency(lat_fns, repeats=repeats, warmup=2).items()}
    _log("lasso: " + ", ".join(f"{k} {v:.2f}" for k, v in rows.items()), quiet)
    unseen = _lasso_unseen(models, K, tuned[2 * K], test_size, seed, quiet)
    return {"unseen": unseen, "section": "lasso", "title": "LASSO (N = 50, M = 25, s = 5, 20 dB): NMSE in dB against the true signal",
            "depth": K, "test_size": test_size, "nmse_db": rows, "tuned": {str(k): {"penalty": v[0], "relaxation": v[1]}
                                                                          for k, v in tuned.items()},
            "per_layer_nmse_db": per_layer, "latency_ms": latency, "latency_batch": latency_batch, "training": training}


def _lasso_unseen(models: dict, K: int, nominal_knobs, test_size: int, seed: int, quiet: bool) -> List[dict]:
    """NMSE (dB) of the trained networks applied unchanged to each LASSO_UNSEEN problem, beside classical
    ADMM with K and 2K iterations tuned there (on a validation draw of that problem) and ADMM-2K with the
    nominal knobs, and that problem's LASSO optimum."""
    rows = []
    for name, change in LASSO_UNSEEN:
        moved = {label: transfer(m, with_problem_change(m.config, change, f"benchmark-textbook lasso: {name}"))
                 for label, m in models.items()}
        problem = next(iter(moved.values())).problem
        test = problem.sample(test_size, generator(seed, "test", "textbook-lasso-unseen", name))
        val = problem.sample(VALIDATION, generator(seed, "validation-admm", "textbook-lasso-unseen", name))
        here = {k: tune_admm(problem, val, k)[0] for k in (K, 2 * K)}
        fns = {f"ADMM-{k}, tuned here": (lambda kk, r, a: (lambda inst: admm(problem, inst, kk, r, a)))(k, *v)
               for k, v in here.items()}
        fns[f"ADMM-{2 * K}, nominal knobs"] = lambda inst: admm(problem, inst, 2 * K, *nominal_knobs)
        for label, m in moved.items():
            fns[f"{label}, {K} layers (unchanged)"] = (lambda mm: (lambda inst: mm.run(inst)))(m)
        with torch.no_grad():
            nmse = {label: problem.summarize(fn(test), test, test.x_true)["nmse_db"] for label, fn in fns.items()}
            nmse["LASSO optimum (FISTA to 1e-7)"] = problem.summarize(reference(problem, test), test, test.x_true)["nmse_db"]
        rows.append({"condition": name, "change": change, "nmse_db": nmse,
                     "tuned_here": {str(k): {"penalty": v[0], "relaxation": v[1]} for k, v in here.items()}})
        _log(f"lasso, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in nmse.items()), quiet)
    return rows


# ---- detection ------------------------------------------------------------------------------------
QUOTED = " (detection benchmark, same symbols)"
"""The suffix of the rows read from the detection benchmark's results."""


def _committed_curves(case: str, snrs: Sequence[float], test_size: int, seed: int,
                      source: Path = DETECTION_JSON) -> Dict[str, List[float]]:
    """The detection benchmark's curves of ``FROM_DETECTION[case]`` at ``snrs``, when its committed JSON
    (``source``) used the same test draws (same seed and test size); {} otherwise."""
    if not source.exists():
        return {}
    data = json.loads(source.read_text())
    if data["setup"]["seed"] != seed:
        return {}
    for e in data["cases"]:
        if e["case"] == case and e["test_size"] == test_size and all(s in e["snrs"] for s in snrs):
            idx = [e["snrs"].index(s) for s in snrs]
            return {f"{k}{QUOTED}": [e["curves"][k][i] for i in idx] for k in FROM_DETECTION[case] if k in e["curves"]}
    return {}


def _on_problem(model, problem_cfg, problem=None):
    """``model``'s learned parameters on the problem ``problem_cfg`` (its sizes, channel and mismatch)."""
    data = model.config.model_dump(mode="json")
    data["problem"] = problem_cfg.model_dump(mode="json")
    return transfer(model, parse_config(data, "benchmark-textbook: the network on a changed problem"), problem)


def _curves(case_name: str, snrs, classical, models: dict, test_size: int, seed: int, quiet: bool, extra=(),
            tune_label: str = "validation", move: bool = False) -> Dict[str, object]:
    """SER curves of ``classical(problem, val) -> {label: fn(inst)}`` (tuned per SNR) and ``models`` on
    the detection benchmark's test draws of ``case_name`` (``extra``: more problem overrides, e.g. a
    mismatch; then the test draws are the case's draws under that mismatch)."""
    case = CASES[case_name]
    curves: Dict[str, List[float]] = {}
    tuned_at = {}
    for snr in snrs:
        q_cfg = load_config("preset:deepsic", _overrides(case, (snr, snr)) + list(extra)).problem
        q = build_problem(q_cfg)
        inst = q.sample(test_size, generator(seed, "test", case_name, snr, *(extra if move else ())))
        val = q.sample(VALIDATION, generator(seed, tune_label, case_name, snr, *(extra if move else ())))
        fns, tuned_at[snr] = classical(q, val)
        for label, m in models.items():
            mm = _on_problem(m, q_cfg, q) if move else m
            fns[label] = (lambda mm: (lambda i: mm.run(i)))(mm)
        with torch.no_grad():
            for label, fn in fns.items():
                curves.setdefault(label, []).append(q.summarize(fn(inst), inst, inst.s)["ser"])
        _log(f"{case_name}{' ' + ' '.join(extra) if extra else ''} at {snr} dB: "
             + ", ".join(f"{k} {v[-1]:.3g}" for k, v in curves.items()), quiet)
    return {"curves": curves, "tuned": {str(k): v for k, v in tuned_at.items()}}


def _finish(e: dict, test_size: int) -> dict:
    floor = 0.5 / (test_size * CASES[e["case"]]["sizes"][0])
    e["snr_at_1e-2"] = {k: snr_at(e["snrs"], c, floor=floor) for k, c in e["curves"].items()}
    e["crossing"] = {k: crossing_kind(e["snrs"], c) for k, c in e["curves"].items()}
    return e


def _latency(case_name: str, fns_of, models: dict, latency_batch: int, repeats: int, seed: int) -> dict:
    case = CASES[case_name]
    mid = case["snrs"][len(case["snrs"]) // 2]
    q = build_problem(load_config("preset:deepsic", _overrides(case, (mid, mid))).problem)
    inst = q.sample(latency_batch, generator(seed, "latency", case_name))
    fns = {k: (lambda f: (lambda: f(inst)))(f) for k, f in fns_of(q).items()}
    for label, m in models.items():
        fns[label] = (lambda mm: (lambda: mm.run(inst)))(m)
    return {k: v["median_ms"] for k, v in measure_latency(fns, repeats=repeats, warmup=2).items()}


def admm_detection_section(steps, test_size, latency_batch, repeats, seed, quiet) -> dict:
    name = "4x4_qpsk"
    nets = {"ADMM-Net (rho_k, alpha_k, soft projection)": [], "ADMM, learned rho_k and alpha_k": ["model.layer=admm"]}
    models, training, K = _train_all("preset:admm_detection", nets, "{label}, {K} layers", steps, seed, quiet)

    def classical(q, val):
        tuned = {k: tune_admm(q, val, k)[0] for k in (K, 2 * K)}
        fns = {"LMMSE": lambda inst: D.lmmse(q, inst)}
        for k, (rho, alpha) in tuned.items():
            fns[f"ADMM-{k}, tuned at each SNR"] = (lambda kk, r, a: (lambda inst: admm(q, inst, kk, r, a)))(k, rho, alpha)
        fns[f"ADMM-{2 * K}, penalty 1 (LMMSE start)"] = lambda inst: admm(q, inst, 2 * K, 1.0)
        return fns, {str(k): {"penalty": v[0], "relaxation": v[1]} for k, v in tuned.items()}
    snrs = CASES[name]["snrs"]
    e = {"section": "admm_detection", "case": name, "title": CASES[name]["title"] + ": ADMM and ADMM-Net", "snrs": snrs,
         "depth": K, "test_size": test_size, "training": training}
    e.update(_curves(name, snrs, classical, models, test_size, seed, quiet))
    e["curves"].update(_committed_curves(name, snrs, test_size, seed))
    mid = str(CASES[name]["snrs"][len(CASES[name]["snrs"]) // 2])          # the latency draw's SNR: its tuned knobs
    knobs = {k: (v["penalty"], v["relaxation"]) for k, v in e["tuned"][mid].items()}
    e["latency_ms"] = _latency(name, lambda q: {f"ADMM-{K}, tuned at each SNR": lambda i: admm(q, i, K, *knobs[str(K)]),
                                                f"ADMM-{2 * K}, tuned at each SNR": lambda i: admm(q, i, 2 * K, *knobs[str(2 * K)]),
                                                "LMMSE": lambda i: D.lmmse(q, i)}, models, latency_batch, repeats, seed)
    e["latency_batch"] = latency_batch
    e["unseen"] = []
    for cond, extra in DETECTION_UNSEEN:
        u = {"condition": cond, "overrides": extra, "snrs": UNSEEN_SNRS}
        u.update(_curves(name, UNSEEN_SNRS, classical, models, test_size, seed, quiet, extra=extra, move=True))
        users = int(next((o.split("=")[1] for o in extra if o.startswith("problem.n_users=")), CASES[name]["sizes"][0]))
        u["snr_at_1e-2"] = {k: snr_at(UNSEEN_SNRS, c, floor=0.5 / (test_size * users)) for k, c in u["curves"].items()}
        e["unseen"].append(u)
    return _finish(e, test_size)


def ep_section(steps, test_size, latency_batch, repeats, seed, quiet) -> dict:
    name = "8x8_16qam"
    nets = {"learned EP": ["model.layer=learned_ep", "training.refine.params=[damping_logit]"],
            "learned EP with cavity scale": ["model.layer=learned_ep_scaled", "training.refine.params=[damping_logit,obs_scale]"],
            "learned EP with cavity scale and start variance": ["model.layer=learned_ep_prior"]}
    models, training, K = _train_all("preset:learned_ep", nets, "{label}-{K}", steps, seed, quiet)

    def classical(q, val):
        fns, tuned = _ep_classical(q, val, (K, 2 * K, 4 * K), (K, 2 * K))
        return {"LMMSE": lambda inst: D.lmmse(q, inst), **fns}, tuned
    e = {"section": "ep", "case": name, "title": CASES[name]["title"] + ": expectation propagation", "snrs": EP_SNRS,
         "depth": K, "test_size": test_size, "training": training}
    e.update(_curves(name, EP_SNRS, classical, models, test_size, seed, quiet))
    e["curves"].update(_committed_curves(name, EP_SNRS, test_size, seed))
    e["latency_ms"] = _latency(name, lambda q: {f"EP-{K}, damping 0.9 (Sionna's)": lambda i: expectation_propagation(q, i, K),
                                                f"EP-{2 * K}, damping 0.9 (Sionna's)": lambda i: expectation_propagation(q, i, 2 * K),
                                                f"EP-{2 * K}, Sionna's EPDetector": lambda i: D.ep(q, i, 2 * K),
                                                "LMMSE": lambda i: D.lmmse(q, i)},
                               models, latency_batch, repeats, seed)
    e["latency_batch"] = latency_batch
    mis = {"section": "ep_mismatch", "case": name, "depth": K, "test_size": test_size,
           "title": CASES[name]["title"] + f": EP with the noise variance misestimated by up to {MISMATCH_DB:g} dB "
                                           "(networks trained without the mismatch)", "snrs": EP_SNRS}
    mis.update(_curves(name, EP_SNRS, classical, models, test_size, seed, quiet, extra=[f"problem.noise_error_db={MISMATCH_DB}"],
                       tune_label="validation-mismatch"))
    preset = models[f"learned EP with cavity scale and start variance-{K}"]
    return [_finish(e, test_size), _finish(mis, test_size), _ep_depth(name, preset, steps, test_size, seed, quiet)]


def _ep_depth(name: str, preset, steps, test_size: int, seed: int, quiet: bool) -> dict:
    """The preset's recipe at the depths ``EP_DEPTHS`` below its own (``preset``: the trained preset network,
    reused), each against classical EP with the same and with twice its iterations (damping 0.9 and tuned
    at each SNR): from which depth do K learned iterations match 2K classical ones?"""
    K = preset.num_layers
    depths = sorted({k for k in EP_DEPTHS if k < K} | {K})
    nets = {f"learned EP-{k}": [f"model.num_layers={k}"] for k in depths if k != K}
    models, training = {}, {}
    for label, over in nets.items():
        models[label], training[label] = _train("preset:learned_ep", over, steps, seed, label, quiet)
    models[f"learned EP-{K}"] = preset

    iters = sorted({i for k in depths for i in (k, 2 * k)})
    e = {"section": "ep_depth", "case": name, "depth": K, "depths": {f"learned EP-{k}": k for k in depths},
         "title": CASES[name]["title"] + ": learned EP (the preset's recipe) against depth", "snrs": EP_SNRS,
         "test_size": test_size, "training": training}
    e.update(_curves(name, EP_SNRS, lambda q, val: _ep_classical(q, val, iters, iters), models, test_size, seed, quiet))
    return _finish(e, test_size)


def _ep_classical(q, val, sionna: Sequence[int], tuned: Sequence[int]):
    """Classical EP on problem ``q``: with Sionna's damping 0.9 at each iteration count of ``sionna``, and
    with the damping tuned on ``val`` (``tune_ep``) at each of ``tuned``. ({label: detector}, {iterations:
    tuned damping}), the labels the sections, bars and tables read."""
    betas = {k: tune_ep(q, val, k)[0] for k in tuned}

    def ep(k, b=DAMPING):
        return lambda inst: expectation_propagation(q, inst, k, b)
    fns = {f"EP-{k}, damping 0.9 (Sionna's)": ep(k) for k in sionna}
    fns.update({f"EP-{k}, damping tuned at each SNR": ep(k, b) for k, b in betas.items()})
    return fns, {str(k): b for k, b in betas.items()}


# ---- bars, report ----------------------------------------------------------------------------------
def _bars(sections: List[dict]) -> List[dict]:
    out = []
    for e in sections:
        K = e.get("depth")
        if e["section"] == "lasso":
            base = e["nmse_db"][f"ADMM-{2 * K}, tuned"]
            for label in e["nmse_db"]:
                if label.startswith("ADMM-Net"):
                    g = base - e["nmse_db"][label]
                    out.append({"bar": f"LASSO: {label} better than ADMM-{2 * K} with a tuned penalty (NMSE gain, dB)",
                                "measured": g, "met": g > 0})
            continue
        at = e["snr_at_1e-2"]

        def gain(worse, better, text, need=0.0, strict=True):
            """g = SNR(worse) - SNR(better) at 1e-2 read as the detection benchmark reads it (``_gap``: None when
            ``better`` never gets there; a lower bound, marked in the text, when only ``worse`` does not)."""
            if worse in at and better in at:
                g, kind = _gap(e, worse, better)
                met = g is not None and (g > need if strict else g >= need)
                out.append({"bar": text if kind == "exact" else f"{text} ({kind})", "measured": g, "met": bool(met)})
        if e["section"] == "admm_detection":
            net = next(k for k in at if k.startswith("ADMM-Net"))
            gain(f"ADMM-{2 * K}, tuned at each SNR", net, f"4x4 QPSK: {net} better than ADMM-{2 * K} tuned at each SNR "
                 "(SNR gain at SER 1e-2, dB)")
        elif e["section"] == "ep_depth":
            for net, k in e["depths"].items():
                if k != K:                                  # the preset's own depth: the ep section's bars
                    for ref in (f"EP-{2 * k}, damping tuned at each SNR", f"EP-{2 * k}, damping 0.9 (Sionna's)"):
                        gain(ref, net, f"8x8 16-QAM at depth {k}: {net} reaches the SER of {ref} (SNR gain at SER 1e-2, dB; >= 0)",
                             0.0, strict=False)
        elif e["section"] in ("ep", "ep_mismatch"):
            tag = "mismatched SNR" if e["section"] == "ep_mismatch" else "8x8 16-QAM"
            for net in [k for k in at if k.startswith("learned EP")]:
                for ref in (f"EP-{2 * K}, damping tuned at each SNR", f"EP-{2 * K}, damping 0.9 (Sionna's)"):
                    gain(ref, net, f"{tag}: {net} reaches the SER of {ref} (SNR gain at SER 1e-2, dB; >= 0)", 0.0, strict=False)
    return out


def _unseen_lasso_markdown(e: dict) -> List[str]:
    rows = e.get("unseen") or []
    if not rows:
        return []
    cols = list(rows[0]["nmse_db"])
    K = e["depth"]
    net = next(c for c in cols if c.startswith("ADMM-Net"))
    lines = ["### Not trained on: the networks applied unchanged (NMSE, dB)", "",
             f"Each row a fresh test draw of {e['test_size']} signals of the changed problem; \"tuned here\": the classical "
             "knobs swept on a validation draw of that problem; \"nominal knobs\": those tuned on the trained problem. "
             f"Last column: {net} minus the better of ADMM-{K} and ADMM-{2 * K} tuned here (the strongest classical "
             "baseline of at most twice the iterations: where the measurement noise is strong, stopping early "
             "is itself a regulariser); negative: the network is better.", "",
             "| condition | " + " | ".join(cols) + " | network - classical (dB) |", "|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        v = r["nmse_db"]
        lines.append(f"| {r['condition']} | " + " | ".join(f"{v[c]:.2f}" for c in cols)
                     + f" | {v[net] - min(v[f'ADMM-{K}, tuned here'], v[f'ADMM-{2 * K}, tuned here']):+.2f} |")
    return lines + [""]


def _unseen_detection_markdown(e: dict) -> List[str]:
    rows = e.get("unseen") or []
    if not rows:
        return []
    cols = list(rows[0]["snr_at_1e-2"])
    K = e["depth"]
    net = next(c for c in cols if c.startswith("ADMM-Net"))
    refs = (f"ADMM-{K}, tuned at each SNR", f"ADMM-{2 * K}, tuned at each SNR")
    lines = ["### Not trained on: the networks applied unchanged (SNR at SER 1e-2, dB)", "",
             f"Fresh test draws of {e['test_size']} symbol vectors per SNR point of each changed problem; the classical knobs "
             f"tuned at each SNR on validation draws of that problem. Last column: {net} minus the better of ADMM-{K} and "
             f"ADMM-{2 * K} tuned there (negative: the network needs less SNR); —: the curve does not reach 1e-2 on the grid (" + ", ".join(f"{x}" for x in rows[0]["snrs"]) + " dB).", "",
             "| condition | " + " | ".join(cols) + " | network - classical (dB) |", "|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        a = r["snr_at_1e-2"]
        best = [a[c] for c in refs if a.get(c) is not None]
        d = None if a.get(net) is None or not best else a[net] - min(best)
        lines.append(f"| {r['condition']} | " + " | ".join(_fmt(a.get(c)) for c in cols)
                     + f" | {'—' if d is None else f'{d:+.2f}'} |")
    return lines + [""]


def _ep_depth_markdown(e: dict) -> List[str]:
    """The depth section's summary: per depth K, SNR at SER 1e-2 of learned EP-K, EP-K and EP-2K, and the
    network's gain over the better EP-2K (positive: the network needs less SNR)."""
    if e["section"] != "ep_depth":
        return []
    at = e["snr_at_1e-2"]
    lines = ["### SNR at SER 1e-2 against depth (dB)", "",
             "| K | learned EP-K | EP-K, tuned | EP-K, 0.9 | EP-2K, tuned | EP-2K, 0.9 | gain over the better EP-2K (dB) |",
             "|---|---|---|---|---|---|---|"]
    kinds = ("tuned at each SNR", "0.9 (Sionna's)")
    for net, k in sorted(e["depths"].items(), key=lambda kv: kv[1]):
        same, twice = ([at.get(f"EP-{i}, damping {d}") for d in kinds] for i in (k, 2 * k))
        best = min((r for r in twice if r is not None), default=None)
        g = None if best is None or at.get(net) is None else best - at[net]
        lines.append(f"| {k} | {_fmt(at.get(net))} | " + " | ".join(_fmt(v) for v in same + twice)
                     + f" | {'—' if g is None else f'{g:+.2f}'} |")
    return lines + [""]


def _validation_best(t: dict) -> str:
    """The training table's "best (step)" cell of one network's training info (``_train``): the score of
    the weights returned, the step the trainer kept, and whether ``training.refine`` followed."""
    step, best = t.get("best_step"), _fmt(t.get("validation_best"), 4)
    if t.get("refined"):
        return f"{best} (refined; the steps " + ("kept the start)" if step == 0 else f"kept step {step})")
    return "kept the start" if step == 0 else f"{best} ({step})"


def markdown(result: dict) -> str:
    s = result["setup"]
    lines = ["# ADMM-Net and learned EP against classical ADMM and EP", "",
             f"`autounfold benchmark-textbook` (seed {s['seed']}, torch {s['torch']}, {s['threads']} threads, CPU; "
             f"{s['seconds'] / 60:.1f} min in all). Classical knobs (ADMM's penalty and over-relaxation, EP's damping) are "
             f"tuned for each depth on a validation draw of {VALIDATION} (per SNR point for detection), never on the test "
             "draw. Networks trained with their presets (`preset:admm_net`, `preset:admm_detection`, `preset:learned_ep`)."
             + (f" Rows marked \"detection benchmark, same symbols\" re-read from its {s['quotes_refreshed']['from']} on "
                f"{s['quotes_refreshed']['on']} (`benchmark-textbook --refresh-quotes`: a later detection run on the same "
                "test draws; everything else is this run's)." if s.get("quotes_refreshed") else ""), ""]
    for e in result["sections"]:
        lines += [f"## {e['title']}", ""]
        if e["section"] == "lasso":
            lines += [f"Test draw of {e['test_size']} signals; K = {e['depth']}. Latency: batch {e['latency_batch']}, median ms.", "",
                      "| solver | NMSE (dB) | latency ms |", "|---|---|---|"]
            for k, v in sorted(e["nmse_db"].items(), key=lambda kv: kv[1]):
                lines.append(f"| {k} | {v:.2f} | {_fmt(e['latency_ms'].get(k))} |")
            lines += ["", "Tuned classical ADMM (penalty rho relative to L, relaxation): "
                      + ", ".join(f"{k} iterations: {v['penalty']:.3g}, {v['relaxation']:g}" for k, v in e["tuned"].items()), "",
                      f"![NMSE per iteration]({e['plot']})", ""]
            lines += _unseen_lasso_markdown(e)
        else:
            lines += [f"SER of the hard decisions on {e['test_size']} symbol vectors per SNR point (the detection benchmark's "
                      "test draws: rows marked \"detection benchmark, same symbols\" come from its committed results).", "",
                      "| detector | SNR at SER 1e-2 (dB) | " + " | ".join(f"{v} dB" for v in e["snrs"]) + " | latency ms |",
                      "|---|---|" + "---|" * len(e["snrs"]) + "---|"]
            order = sorted(e["curves"], key=lambda k: (e["snr_at_1e-2"][k] is None, e["snr_at_1e-2"][k] or 0.0))
            for k in order:
                lines.append(f"| {k} | {_fmt(e['snr_at_1e-2'][k])} | " + " | ".join(f"{v:.2e}" for v in e["curves"][k])
                             + f" | {_fmt(e.get('latency_ms', {}).get(k))} |")
            lines += ["", "Classical knobs tuned at each SNR (iterations: value): " + "; ".join(
                f"{snr} dB: " + ", ".join(f"{k}: " + (f"rho {v['penalty']:.3g}, alpha {v['relaxation']:g}" if isinstance(v, dict)
                                                      else f"beta {v:g}") for k, v in t.items())
                for snr, t in e["tuned"].items()) + "."]
            extra = {k: v for k, v in e.get("latency_ms", {}).items() if k not in e["curves"]}
            if e.get("latency_ms"):
                lines += ["", f"Latency at batch {e['latency_batch']} (median ms, same process): "
                          + ", ".join(f"{k} {v:.2f}" for k, v in e["latency_ms"].items()) + "."
                          + (" (Rows without a curve here: timing only.)" if extra else "")]
            lines += ["", f"![SER vs SNR]({e['plot']})", ""]
            lines += _ep_depth_markdown(e)
            lines += _unseen_detection_markdown(e)
        if e.get("training"):
            lines += ["Validation score: -NMSE (dB) or -SER on the trainer's validation draw; the trainer keeps the best "
                      "validated weights, so \"kept the start\" means no training step beat the untrained network; "
                      "\"refined\": the score after `training.refine`, the coordinate search that follows the steps "
                      "(the weights and learned values reported).", "",
                      "| network | layers | parameters | training | validation: start, best (step) | learned (per layer) |",
                      "|---|---|---|---|---|---|"]
            for k, t in e["training"].items():
                learned = "; ".join(f"{n}: " + ", ".join(f"{x:.3g}" for x in v) for n, v in t["learned"].items())
                lines.append(f"| {k} | {t['layers']} | {t['params']} | {t['seconds']:.0f} s ({t['steps']} steps) | "
                             f"{_fmt(t.get('validation_start'), 4)}, {_validation_best(t)} | {learned} |")
            lines.append("")
    lines += bars_markdown(result.get("bars") or [])
    return "\n".join(lines) + "\n"


def _plot(e: dict, path: Path) -> str:
    from .plots import _save, plt
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if e["section"] == "lasso":
        for k, v in e["per_layer_nmse_db"].items():
            ax.plot(range(1, len(v) + 1), v, marker="o", markersize=3, label=k)
        ax.axhline(e["nmse_db"]["LASSO optimum (FISTA to 1e-7)"], color="grey", linewidth=0.8, label="LASSO optimum")
        ax.set_xlabel("iteration / layer")
        ax.set_ylabel("NMSE (dB)")
    else:
        for k, v in e["curves"].items():
            ax.semilogy(e["snrs"], [max(x, 1e-6) for x in v], marker="o", markersize=3, label=k,
                        linestyle="--" if "detection benchmark" in k else "-")
        ax.axhline(1e-2, color="grey", linewidth=0.8)
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("SER")
    ax.set_title(e["title"], fontsize=8)
    return _save(fig, ax, path)


def run_textbook_benchmark(out_dir, sections: Sequence[str] = SECTIONS, steps: Optional[int] = None,
                           test_size: int = 20000, latency_batch: int = 1024, repeats: int = 10, seed: int = 0,
                           quiet: bool = False) -> dict:
    """Run the sections and write textbook_benchmark.json, TEXTBOOK_RESULTS.md and one plot per section
    into ``out_dir``. ``steps``: training steps per network (default: the presets'); ``test_size``: test
    symbol vectors per SNR point (20000: the detection benchmark's draws) and LASSO test signals."""
    bad = [s for s in sections if s not in SECTIONS]
    if bad or not sections:
        raise ConfigError(f"benchmark-textbook: sections must be among {', '.join(SECTIONS)} (got {list(sections)})")
    if test_size < 100:
        raise ConfigError(f"benchmark-textbook: test_size must be >= 100 (got {test_size})")
    out = Path(out_dir)
    t0 = time.perf_counter()
    results: List[dict] = []
    runners = {"lasso": lasso_section, "admm_detection": admm_detection_section, "ep": ep_section}
    for name in sections:                                   # everything is measured before anything is written
        r = runners[name](steps, test_size, latency_batch, repeats, seed, quiet)
        results.extend(r if isinstance(r, list) else [r])
    result = {"setup": {"seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads(), "test_size": test_size,
                        "steps": steps, "seconds": time.perf_counter() - t0, "sections": list(sections)},
              "sections": results, "bars": _bars(results)}
    for e in results:
        e["plot"] = f"textbook_{e['section']}.png"
    text = json.dumps(result, indent=2, default=float, allow_nan=False)   # a NaN fails here, before any file
    md = markdown(result)
    out.mkdir(parents=True, exist_ok=True)
    for e in results:
        _plot(e, out / e["plot"])
    (out / "textbook_benchmark.json").write_text(text)
    (out / "TEXTBOOK_RESULTS.md").write_text(md)
    return result


def refresh_quotes(out_dir, source: Path = DETECTION_JSON) -> dict:
    """Re-read the rows quoted from the detection benchmark (``source``, default its committed JSON) into
    the textbook result in ``out_dir``, without re-running anything of this benchmark: for when the
    detection benchmark was re-run after this one. Rewrites textbook_benchmark.json, TEXTBOOK_RESULTS.md
    and the plots of the two sections that quote it (``admm_detection``, ``ep``). ConfigError, with
    nothing written, when there is no result there, it has neither section, or ``source`` is missing or
    holds no curves of that section's case on the same test draws (seed, test size, SNRs)."""
    import shutil
    import tempfile
    out, source = Path(out_dir), Path(source)
    path = out / "textbook_benchmark.json"
    if not path.exists():
        raise ConfigError(f"benchmark-textbook --refresh-quotes: no textbook_benchmark.json in {out} (run the benchmark "
                          "there first)")
    if not source.exists():
        raise ConfigError(f"benchmark-textbook --refresh-quotes: no detection results at {source}")
    result = json.loads(path.read_text())
    seed = result["setup"]["seed"]
    quoting = [e for e in result["sections"] if e["section"] in ("admm_detection", "ep")]
    if not quoting:
        raise ConfigError(f"benchmark-textbook --refresh-quotes: the result in {out} has no section that quotes the "
                          f"detection benchmark (sections: {', '.join(e['section'] for e in result['sections'])})")
    for e in quoting:
        fresh = _committed_curves(e["case"], e["snrs"], e["test_size"], seed, source)
        if not fresh:
            raise ConfigError(f"benchmark-textbook --refresh-quotes: {source} has no {e['case']} curves on this result's "
                              f"test draws (seed {seed}, {e['test_size']} vectors, SNRs {e['snrs']})")
        for k in [k for k in e["curves"] if k.endswith(QUOTED)]:
            del e["curves"][k]
        e["curves"].update(fresh)
        _finish(e, e["test_size"])
    result["setup"]["quotes_refreshed"] = {"from": source.name, "on": time.strftime("%Y-%m-%d")}
    result["bars"] = _bars(result["sections"])
    text = json.dumps(result, indent=2, default=float, allow_nan=False)
    md = markdown(result)
    staging = Path(tempfile.mkdtemp(prefix=".refresh-", dir=out))     # plots drawn aside, moved in last
    try:
        for e in quoting:
            _plot(e, staging / e["plot"])
        for e in quoting:
            (staging / e["plot"]).replace(out / e["plot"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    path.write_text(text)
    (out / "TEXTBOOK_RESULTS.md").write_text(md)
    return result


__all__ = ["run_textbook_benchmark", "refresh_quotes", "markdown", "SECTIONS"]

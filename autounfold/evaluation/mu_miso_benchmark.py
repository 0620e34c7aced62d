"""The MU-MISO benchmark job: unfolded WMMSE / PGA against WMMSE, tuned WMMSE, tuned PGA and the
linear precoders, at equal depth and against latency; JSON + Markdown + PNG
(``autounfold benchmark-mu-miso``, ``make benchmark-mu-miso``).

Every model is trained with the preset recipe (``preset:mu_miso``: SNR uniform in [0, 30] dB,
i.i.d. Rayleigh, ``step_init: tuned``, 1500 steps) on its antenna / user count and is then tested, unchanged, at fixed SNRs and on
correlated channels it never saw. Every iterative solver, unfolded or classical, starts from the
preset's initial precoder (``problem.init: rzf_select``, RZF with user selection). The reference is the
problem's declared one: WMMSE from RZF, from MRT and from RZF with user selection, per channel until the
relative sum-rate change per iteration is below 1e-6 (at most 2000 iterations), the best of the three.

3GPP section (``sections`` "3gpp"; ``--sections 3gpp`` runs it alone, in a few minutes): at the preset's
16 x 8, the headline models trained on i.i.d. Rayleigh and applied unchanged, and the same models
(same recipe and steps) trained on 3GPP UMi users from ``pool_seed`` 0, tested on UMi and UMa users
from ``pool_seed`` 1 (terminals no model saw in training) and on i.i.d. Rayleigh; against the
reference, WMMSE at the same depth, and tuned-relaxation WMMSE and tuned PGA, each tuned once on
Rayleigh and once on the UMi training users. Alone it writes mu_miso_3gpp.json / .md; in the full run
it is also a section of mu_miso_benchmark.json / .md.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from ..algorithms import reference
from ..build import build_model
from ..config import load_config, parse_config
from ..errors import ConfigError
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
SECTIONS = ("main", "3gpp")
GPP_SIZE: Tuple[int, int] = (16, 8)        # the preset's n_tx x users
GPP_TEST = ("umi", "uma")
GPP_TRAIN = "umi"
GPP_NAMES = {"umi": "UMi", "uma": "UMa", "cdl": "CDL", "tdl": "TDL"}
_TITLES = {**GPP_NAMES, "iid_rayleigh": "i.i.d. Rayleigh"}
TRAIN_POOL, TEST_POOL = 0, 1


def variant(name: str) -> Tuple[str, List[str]]:
    """A benchmark variant: a mu_miso layer type, optionally with its per-layer scalars conditioned on
    the SNR and / or the channel's conditioning (``momentum+snr4``: unfolded PGA with
    ``model.snr_knots=4``; ``momentum+snr4+cond5`` adds ``model.cond_knots=5``). Returns (layer,
    overrides); ConfigError names a bad one."""
    layer, *conds = name.split("+")
    from ..plugins import LAYERS
    if layer not in LAYERS.names() or not LAYERS.get(layer).applies_to("mu_miso"):
        raise ConfigError(f"{layer!r} does not apply to mu_miso; use "
                          f"{', '.join(LAYERS.select(lambda d: d.applies_to('mu_miso')))}, each optionally +snrN / +condN")
    out = {}
    for cond in conds:
        key = next((k for k in ("snr", "cond") if cond.startswith(k)), None)
        n = cond[len(key):] if key else ""
        if not (key and n.isascii() and n.isdigit() and int(n) >= 2) or key in out:
            raise ConfigError(f"{name!r}: after '+' expected snrN or condN, each once, N >= 2 knots "
                              f"(e.g. {layer}+snr4+cond5)")
        out[key] = int(n)
    return layer, [f"model.{k}_knots={v}" for k, v in out.items()]


def check_variants(names: Sequence[str], label: str) -> None:
    """ConfigError, prefixed with ``label``, for the first name that is not a benchmark variant."""
    for name in names:
        try:
            variant(name)
        except ConfigError as err:
            raise ConfigError(f"{label}: {err}") from None


def variant_label(name: str) -> str:
    """The tables' name of a variant: its layer's label, plus its knots if any."""
    layer, extra = variant(name)
    words = {"snr_knots": "SNR", "cond_knots": "condition"}
    knots = [f"{e.split('=')[1]} {words[e.split('=')[0].removeprefix('model.')]}" for e in extra]
    return f"{LABELS.get(layer, layer)}, {' x '.join(knots)} knots" if knots else LABELS.get(layer, layer)


def _log(msg: str, quiet: bool):
    if not quiet:
        print(f"[mu-miso benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _overrides(n_tx: int, K: int, layer: str, depth: int, steps: int, extra: Sequence[str] = ()) -> List[str]:
    # the preset's recipe: step_init tuned (the network starts as the classical solver it unrolls,
    # tuned at its depth on a validation draw)
    layer, conditioned = variant(layer)
    return [f"problem.n_users={K}", f"problem.channel.n_tx={n_tx}", f"model.layer={layer}",
            f"model.num_layers={depth}", f"training.steps={steps}"] + conditioned + list(extra)


def _train(n_tx, K, layer, depth, steps, seed, quiet):
    cfg = load_config("preset:mu_miso", _overrides(n_tx, K, layer, depth, steps, [f"seed={seed}"]))
    model = build_model(cfg)
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False)
    _log(f"trained {layer}-{depth} on {n_tx}x{K}: validation {res.best_score:.3f}% in {time.perf_counter() - t0:.0f} s", quiet)
    return model.eval(), cfg, time.perf_counter() - t0


def _train_like(cfg, channel: dict, quiet: bool):
    """The recipe of ``cfg`` (as loaded, a tuned start still to be tuned; same steps, seed, sizes)
    trained on the channel changed by ``channel``."""
    data = cfg.model_dump(mode="json")
    data["problem"]["channel"].update(channel)
    cfg = parse_config(data, "benchmark 3gpp")
    model = build_model(cfg)
    t0 = time.perf_counter()
    res = train(model, cfg.training, seed=cfg.seed, progress=False)
    c, m = cfg.problem.channel, cfg.model
    _log(f"trained {m.layer}-{m.num_layers} on {c.n_tx}x{cfg.problem.n_users} ({c.model}, pool {c.pool_seed}): "
         f"validation {res.best_score:.3f}% in {time.perf_counter() - t0:.0f} s", quiet)
    return model.eval(), cfg, time.perf_counter() - t0


def _at(model, snr=None, channel_model=None, pool_seed=None):
    """The same learned parameters on the problem at a fixed SNR / another channel model / pool.
    The model's own config is the one moved: its ``step_init: tuned`` is already resolved to numbers
    (the loaded one would re-tune the start on a validation draw at every call, for parameters that
    ``transfer`` then overwrites)."""
    changes = {}
    if snr is not None:
        changes["snr_db"] = [snr, snr]
    if channel_model is not None:
        changes["model"] = channel_model
    if pool_seed is not None:
        changes["pool_seed"] = pool_seed
    data = model.config.model_dump(mode="json")
    data["problem"]["channel"].update(changes)
    return transfer(model, parse_config(data, "benchmark"))


def three_gpp(rayleigh: dict, layers: Sequence[str], test_batch: int, seed: int, quiet: bool,
              channels: Sequence[str] = GPP_TEST) -> dict:
    """``rayleigh``: layer -> (model, cfg as loaded, seconds), trained on i.i.d. Rayleigh at one size
    and depth (GPP_SIZE in the benchmark). Trains the same layers with the same recipe (``cfg``: steps,
    seed, sizes, tuned start) on GPP_TRAIN users of pool TRAIN_POOL and tests both sets, unchanged, on
    i.i.d. Rayleigh and on ``channels`` with users of pool TEST_POOL, beside WMMSE at the same depth,
    WMMSE-100, RZF and the tuned baselines at the same depth (tuned on Rayleigh and on the GPP_TRAIN
    training pool, each on its own validation draw)."""
    first = rayleigh[layers[0]][0]
    n_tx, K, depth = first.problem.n_tx, first.problem.n_users, first.num_layers
    steps = rayleigh[layers[0]][1].training.steps
    gpp = {layer: _train_like(rayleigh[layer][1], {"model": GPP_TRAIN, "pool_seed": TRAIN_POOL}, quiet)
           for layer in layers}
    name = GPP_NAMES[GPP_TRAIN]
    where = {"rayleigh": "i.i.d. Rayleigh", "gpp": f"{name} (pool {TRAIN_POOL})"}
    # the tuned baselines tune on their problem's own validation draw: the Rayleigh-trained models'
    # problem and the UMi models' training problem (pool TRAIN_POOL), never the test pool
    tune_on = {"rayleigh": first.problem, "gpp": gpp[layers[0]][0].problem}
    cells = []
    for ch in ("iid_rayleigh", *channels):
        pool = TEST_POOL if ch in GPP_NAMES else None
        # model.config: the tuned start already resolved (cfg would tune it again on the test problem)
        q = _at(first, channel_model=ch, pool_seed=pool).problem
        t = q.sample(test_batch, generator(seed, "test", "3gpp", ch))
        t0 = time.perf_counter()
        r = reference(q, t)
        _log(f"3gpp {ch} (pool {pool}): reference in {time.perf_counter() - t0:.0f} s", quiet)
        rows = []
        with torch.no_grad():
            for layer in layers:
                for key, trained in (("rayleigh", rayleigh), ("gpp", gpp)):
                    m = trained[layer][0]
                    m = _at(m, channel_model=ch, pool_seed=pool)
                    rows.append({"method": f"{variant_label(layer)}-{depth}", "kind": "unfolded",
                                 "trained_on": where[key], **q.summarize(m.run(t), t, r)})
            label, solver = baselines.CLASSICAL["wmmse"]
            rows.append({"method": f"{label}-{depth}", "kind": "classical", "trained_on": "-",
                         **q.summarize(solver(q, t, depth), t, r)})
            for bname in ("wmmse_tuned", "pga_tuned"):
                label, solver = baselines.CLASSICAL[bname]
                for key, problem in tune_on.items():     # tuned on that problem, run on the test draw
                    rows.append({"method": f"{label}-{depth}", "kind": "classical", "trained_on": where[key],
                                 **q.summarize(solver(problem, t, depth), t, r)})
            rows.append({"method": "WMMSE-100", "kind": "classical", "trained_on": "-",
                         **q.summarize(baselines.wmmse(q, t, 100), t, r)})
            label, solver = baselines.CLASSICAL["rzf"]
            rows.append({"method": label, "kind": "closed form", "trained_on": "-", **q.summarize(solver(q, t, depth), t, r)})
        src = q.source
        cells.append({"channel": ch, "title": _TITLES.get(ch, ch), "test_pool_seed": pool,
                      "test_pool_terminals": getattr(src, "pool", None), "reference_rate": float(q.objective(r, t).mean()),
                      "rows": rows})
        _log(f"3gpp {ch}: " + ", ".join(f"{x['method']} [{x['trained_on']}] {x['pct_of_reference']:.2f}"
                                       for x in rows if x["kind"] == "unfolded"), quiet)
    train_problem = gpp[layers[0]][0].problem
    return {"n_tx": n_tx, "n_users": K, "depth": depth, "steps": steps, "test_batch": test_batch,
            "train_channel": GPP_TRAIN, "train_pool_seed": train_problem.source.pool_seed,
            "train_pool_terminals": getattr(train_problem.source, "pool", None), "test_pool_seed": TEST_POOL,
            "training_seconds": {f"{variant_label(layer)}-{depth}": gpp[layer][2] for layer in layers},
            "cells": cells}


LATENCY_ROUNDS = 3


class _Latency:
    """The latency table at the middle size: every network against WMMSE-100 (and WMMSE at the networks'
    depth, RZF, RZF with user selection) in one process, in ``LATENCY_ROUNDS`` rounds taken at three points
    of the run (after the main training, after the depth curve, at the end), each ``measure_latency``
    with ``repeats`` interleaved calls in its own order. The machine's speed drifts over a run, and
    small-operation workloads (the 5-layer networks) slow down more than WMMSE-100 when it does, so one
    round can misstate a ratio; the table gives each method's median over rounds of its round median,
    and its speed-up as the median over rounds of that round's ratio to WMMSE-100, with the lowest and
    highest."""

    def __init__(self, models, size, layers, depth, test_batch, latency_batch, repeats, seed):
        n_tx, K = size
        self.n_tx, self.n_users, self.batch, self.repeats = n_tx, K, latency_batch, repeats
        p = self.problem = models[(n_tx, K, layers[0], depth)][0].problem
        # the depth curve's test draw (its first latency_batch channels)
        inst = self.inst = p.sample(test_batch, generator(seed, "test", "mixed"))[:latency_batch]
        # every call on a new batch (indexing starts one without ``derived``): the problem keeps the Gram
        # matrix and RZF's inverse per batch, and a timed call must compute them as a user's call does
        self.fns = {f"{variant_label(layer)}-{depth}": (lambda m=models[(n_tx, K, layer, depth)][0]: m.run(inst[:]))
                    for layer in layers}
        self.fns.update({f"WMMSE-{depth}": lambda: baselines.wmmse(p, inst[:], depth),
                         "WMMSE-100": lambda: baselines.wmmse(p, inst[:], 100),
                         "RZF": lambda: p.init(inst[:], "rzf"),
                         "RZF with user selection": lambda: p.init(inst[:], "rzf_select")})
        self.rounds = []

    def round(self) -> None:
        self.rounds.append(measure_latency(self.fns, repeats=self.repeats, order_seed=len(self.rounds)))

    def table(self, ref) -> dict:
        """``result["latency"]``: per method the pooled statistics of the last round (IQR and the like),
        ``median_ms`` the median over rounds, ``speedup_vs_wmmse100`` the median of the per-round ratios
        (``speedup_min`` / ``speedup_max`` the extremes), ``rounds`` every round's median and ratio, and
        ``pct_of_reference`` on these channels against ``ref``."""
        p, inst = self.problem, self.inst
        with torch.no_grad():
            pct = {name: p.summarize(fn(), inst, ref)["pct_of_reference"] for name, fn in self.fns.items()}
        rows = []
        for k in self.fns:
            meds = [r[k]["median_ms"] for r in self.rounds]
            ratios = [r["WMMSE-100"]["median_ms"] / r[k]["median_ms"] for r in self.rounds]
            rows.append({"method": k, **self.rounds[-1][k], "median_ms": statistics.median(meds),
                         "speedup_vs_wmmse100": statistics.median(ratios), "speedup_min": min(ratios),
                         "speedup_max": max(ratios), "rounds": [{"median_ms": m, "speedup_vs_wmmse100": x}
                                                                 for m, x in zip(meds, ratios)],
                         "pct_of_reference": pct[k]})
        return {"n_tx": self.n_tx, "n_users": self.n_users, "batch": self.batch, "rounds": len(self.rounds),
                "repeats_per_round": self.repeats, "rows": rows}


def run_mu_miso_benchmark(out: Path, steps: int = 1500, depth: int = 5,
                          layers: Sequence[str] = ("uwmmse", "uwmmse_gnn", "momentum", "momentum+snr4", "momentum+snr4+cond5"),
                          test_batch: int = 1024, latency_batch: int = 256, repeats: int = 20, seed: int = 0,
                          sizes: Sequence[Tuple[int, int]] = SIZES, depths: Sequence[int] = DEPTHS,
                          quiet: bool = False, sections: Sequence[str] = SECTIONS,
                          gpp_size: Tuple[int, int] = GPP_SIZE) -> dict:
    """``sections``: "main" (every table above the 3GPP one) and / or "3gpp" (the 3GPP section at
    ``gpp_size``, also written alone to mu_miso_3gpp.json / .md). With "main" the result goes to
    mu_miso_benchmark.json / .md and the PNGs."""
    if not sections or any(x not in SECTIONS for x in sections):
        raise ConfigError(f"benchmark-mu-miso: sections must be among {', '.join(SECTIONS)} (got {list(sections)})")
    check_variants(layers, "benchmark-mu-miso: layers")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    result: Dict[str, object] = {"settings": {"steps": steps, "depth": depth, "layers": list(layers), "test_batch": test_batch,
                                              "latency_batch": latency_batch, "repeats": repeats, "seed": seed,
                                              "threads": torch.get_num_threads(), "torch": torch.__version__,
                                              "sizes": [list(s) for s in sizes], "snrs_db": list(SNRS),
                                              "sections": list(sections)}}
    models = {}
    if "main" not in sections:
        result["settings"]["sizes"] = [list(gpp_size)]
        return _with_3gpp(result, models, out, steps, depth, layers, test_batch, seed, quiet, gpp_size)
    for n_tx, K in sizes:
        for layer in layers:
            models[(n_tx, K, layer, depth)] = _train(n_tx, K, layer, depth, steps, seed, quiet)
    latency = _Latency(models, sizes[len(sizes) // 2], layers, depth, test_batch, latency_batch, repeats, seed)
    latency.round()                                          # rounds at three points of the run, see _Latency

    # ---- quality at equal depth, per size and SNR ------------------------------------------------
    cells = []
    for n_tx, K in sizes:
        for snr in SNRS:
            first = models[(n_tx, K, layers[0], depth)]
            probe = _at(first[0], snr=snr)
            p = probe.problem
            test = p.sample(test_batch, generator(seed, "test", n_tx, K, snr))
            t0 = time.perf_counter()
            ref = reference(p, test)
            _log(f"{n_tx}x{K} at {snr:.0f} dB: reference in {time.perf_counter() - t0:.0f} s", quiet)
            rows = []
            with torch.no_grad():
                for layer in layers:
                    m = _at(models[(n_tx, K, layer, depth)][0], snr=snr)
                    rows.append({"method": f"{variant_label(layer)}-{depth}", "kind": "unfolded", **p.summarize(m.run(test), test, ref)})
                for name in ("wmmse", "wmmse_tuned", "pga_tuned"):
                    label, solver = baselines.CLASSICAL[name]
                    rows.append({"method": f"{label}-{depth}", "kind": "classical", **p.summarize(solver(p, test, depth), test, ref)})
                rows.append({"method": "WMMSE-100", "kind": "classical", **p.summarize(baselines.wmmse(p, test, 100), test, ref)})
                for name in ("rzf", "rzf_select", "zf", "mrt"):
                    label, solver = baselines.CLASSICAL[name]
                    rows.append({"method": label, "kind": "closed form", **p.summarize(solver(p, test, depth), test, ref)})
            cells.append({"n_tx": n_tx, "n_users": K, "snr_db": snr, "reference_rate": float(p.objective(ref, test).mean()),
                          "rows": rows})
    result["quality"] = cells

    # ---- depth curve, per-SNR curve, robustness and latency on the middle size ---------------------
    n_tx, K = sizes[len(sizes) // 2]
    base_model = models[(n_tx, K, layers[0], depth)][0]
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
        curve[variant_label(layer)] = vals
    result["depth_curve"] = {"n_tx": n_tx, "n_users": K, "snr_db": [0.0, 30.0], **curve}
    latency.round()

    sweep = {"snr_db": list(SWEEP_SNRS)}
    for snr in SWEEP_SNRS:
        probe = _at(base_model, snr=snr)
        q = probe.problem
        t = q.sample(test_batch // 2, generator(seed, "snr", snr))
        r = reference(q, t)
        with torch.no_grad():
            for layer in layers:
                m = _at(models[(n_tx, K, layer, depth)][0], snr=snr)
                summary = q.summarize(m.run(t), t, r)
                sweep.setdefault(f"{variant_label(layer)}-{depth}", []).append(summary["pct_of_reference"])
                sweep.setdefault(f"{variant_label(layer)}-{depth} p5", []).append(summary["p5_pct"])
            sweep.setdefault(f"WMMSE-{depth}", []).append(q.summarize(baselines.wmmse(q, t, depth), t, r)["pct_of_reference"])
    result["snr_sweep"] = {"n_tx": n_tx, "n_users": K, **sweep}

    robust = []
    probe = _at(base_model, channel_model="correlated_rayleigh")
    q = probe.problem
    t = q.sample(test_batch // 2, generator(seed, "correlated"))
    r = reference(q, t)
    with torch.no_grad():
        for layer in layers:
            m = _at(models[(n_tx, K, layer, depth)][0], channel_model="correlated_rayleigh")
            robust.append({"method": f"{variant_label(layer)}-{depth}", **q.summarize(m.run(t), t, r)})
        robust.append({"method": f"WMMSE-{depth}", **q.summarize(baselines.wmmse(q, t, depth), t, r)})
        robust.append({"method": f"WMMSE, tuned relaxation-{depth}", **q.summarize(baselines.wmmse_tuned(q, t, depth), t, r)})
    result["correlated"] = {"n_tx": n_tx, "n_users": K, "angular_spread_deg": 15.0, "rows": robust}

    if "3gpp" in sections:
        _with_3gpp(result, models, out, steps, depth, layers, test_batch, seed, quiet, gpp_size)
    latency.round()
    result["latency"] = latency.table(ref[:latency_batch])
    result["seconds"] = time.perf_counter() - t_start
    (out / "mu_miso_benchmark.json").write_text(json.dumps(result, indent=1))
    (out / "mu_miso_benchmark.md").write_text(markdown(result))
    plots(result, out)
    return result


def _with_3gpp(result: dict, models: dict, out: Path, steps, depth, layers, test_batch, seed, quiet, gpp_size) -> dict:
    """The 3GPP section into ``result`` (reusing the Rayleigh models of ``gpp_size`` if the main part
    trained them), written alone to mu_miso_3gpp.json / .md."""
    n_tx, K = gpp_size
    t0 = time.perf_counter()
    reused = all((n_tx, K, layer, depth) in models for layer in layers)
    for layer in layers:
        if (n_tx, K, layer, depth) not in models:
            models[(n_tx, K, layer, depth)] = _train(n_tx, K, layer, depth, steps, seed, quiet)
    rayleigh = {layer: models[(n_tx, K, layer, depth)] for layer in layers}
    result["3gpp"] = three_gpp(rayleigh, layers, test_batch, seed, quiet)
    result["3gpp"]["rayleigh_training_seconds"] = {f"{variant_label(layer)}-{depth}": rayleigh[layer][2]
                                                   for layer in layers}
    result["3gpp"]["rayleigh_models_from_main"] = reused
    result["3gpp"]["seconds"] = time.perf_counter() - t0
    alone = {"settings": result["settings"], "3gpp": result["3gpp"], "seconds": result["3gpp"]["seconds"]}
    (out / "mu_miso_3gpp.json").write_text(json.dumps(alone, indent=1))
    (out / "mu_miso_3gpp.md").write_text(markdown_3gpp(alone))
    return alone


def _fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["# MU-MISO sum rate: unfolded WMMSE and PGA against the classical solvers", "",
             f"`autounfold benchmark-mu-miso` (training steps {s['steps']}, depth {s['depth']}, test batch "
             f"{s['test_batch']}, {s['threads']} threads, torch {s['torch']}, seed {s['seed']}). Models trained on SNR "
             "U[0, 30] dB, i.i.d. Rayleigh, one per antenna / user count, tested unchanged. % = 100 x mean sum rate / "
             "mean sum rate of the reference (WMMSE from RZF, MRT and RZF with user selection to a relative change below "
             "1e-6, the best per channel); p5 / min: percentiles over channels of the per-channel %. Every iterative "
             "solver, unfolded or classical, starts from RZF with user selection (the better of RZF and RZF with one "
             "user switched off, per channel). Tuned baselines pick their constants on a separate validation batch.", ""]
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
    n_rounds = la.get("rounds", 1)
    lines += ["", f"## Latency ({la['n_tx']} x {la['n_users']}, batch {la['batch']}, one process, interleaved; "
              f"{n_rounds} rounds spread over the run, median over rounds)", "",
              "| method | median ms | IQR ms (last round) | speed-up vs WMMSE-100 | lowest - highest round | % of reference |",
              "|---|---|---|---|---|---|"]
    for r in la["rows"]:
        spread = f"{r['speedup_min']:.1f}x - {r['speedup_max']:.1f}x" if "speedup_min" in r else "-"
        lines.append(f"| {r['method']} | {r['median_ms']:.2f} | {r['iqr_ms']:.2f} | {r['speedup_vs_wmmse100']:.1f}x | "
                     f"{spread} | {r['pct_of_reference']:.3f} |")
    if result.get("3gpp"):
        lines += [""] + gpp_markdown(result["3gpp"])
    lines += ["", f"Total time {result['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def gpp_markdown(g: dict) -> List[str]:
    """The 3GPP section's Markdown lines (``g``: the result of ``three_gpp``)."""
    name = GPP_NAMES.get(g["train_channel"], g["train_channel"])
    secs = g.get("training_seconds", {})
    lines = [f"## 3GPP channels: trained on i.i.d. Rayleigh and on {name} ({g['n_tx']} x {g['n_users']}, SNR U[0, 30] dB)", "",
             f"The headline models trained on i.i.d. Rayleigh and applied unchanged, and the same models (same recipe, "
             f"{g['steps']} steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) +
             f") trained on {name} users of pool_seed {g['train_pool_seed']} ({g['train_pool_terminals']} pooled "
             f"terminals). Test draws of {g['test_batch']} channels; the 3GPP draws combine users of pool_seed "
             f"{g['test_pool_seed']}, terminals no model saw in training. Tuned baselines: tuned on a validation draw of "
             f"the channel in their 'trained / tuned on' column (Rayleigh, or the {name} training pool), never on "
             "the test pool. % of the reference (WMMSE to convergence, best of the RZF, MRT and RZF-with-user-selection "
             "starts).", ""]
    for cell in g["cells"]:
        pool = "" if cell["test_pool_seed"] is None else f", test users from pool_seed {cell['test_pool_seed']}"
        lines += [f"### Tested on {cell['title']}{pool} (reference {cell['reference_rate']:.3f} bit/s/Hz)", "",
                  "| method | kind | trained / tuned on | % of reference | p5 % | min % | sum rate |",
                  "|---|---|---|---|---|---|---|"]
        for r in cell["rows"]:
            lines.append(f"| {r['method']} | {r['kind']} | {r['trained_on']} | {r['pct_of_reference']:.3f} | "
                         f"{r['p5_pct']:.2f} | {r['min_pct']:.2f} | {r['rate_mean']:.3f} |")
        lines.append("")
    # per unfolded model: trained on the 3GPP pool minus trained on Rayleigh, mean points, per test channel
    gains = []
    for cell in g["cells"]:
        by = {}
        for r in cell["rows"]:
            if r["kind"] == "unfolded":
                by.setdefault(r["method"], {})[r["trained_on"]] = r["pct_of_reference"]
        gains.append(cell["title"] + ": " + ", ".join(
            f"{m} {v[k] - v['i.i.d. Rayleigh']:+.2f}" for m, v in by.items() for k in v if k != "i.i.d. Rayleigh"))
    lines += [f"Trained on {name} minus trained on i.i.d. Rayleigh (points of the reference, mean): " + "; ".join(gains) + "."]
    return lines


def markdown_3gpp(result: dict) -> str:
    """mu_miso_3gpp.md: the 3GPP section alone."""
    s = result["settings"]
    lines = ["# MU-MISO sum rate on 3GPP channels: trained on Rayleigh, tested on 3GPP, and trained on 3GPP", "",
             f"`autounfold benchmark-mu-miso --sections {','.join(s.get('sections', ['3gpp']))}` (training steps {s['steps']}, depth {s['depth']}, test batch "
             f"{s['test_batch']}, {s['threads']} threads, torch {s['torch']}, seed {s['seed']}). p5 / min: percentiles "
             "over channels of the per-channel %.", ""]
    g = result["3gpp"]
    lines += gpp_markdown(g)
    lines += ["", f"Time of this section {result['seconds'] / 60:.1f} min" +
              (" (the Rayleigh models trained by the main run, not counted)." if g.get("rayleigh_models_from_main")
               else ", the Rayleigh models' training included."), ""]
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

"""Unfolded hybrid PGA-5: does another training recipe, or the best digital readout, close the gap to
classical PGA-30?

Each variant is ``preset:hybrid`` with the listed overrides; scored on the hybrid benchmark's test draw
(1024 channels, seed 0) as % of the fully-digital bound. ``--readout`` also scores the preset model and
classical PGA-5 / 10 / 30 (the benchmark's validation-tuned steps) with the best digital precoder for
their final analog precoder. ``--umi`` instead scores on 3GPP UMi bands (Sionna; 512 test channels,
steps of PGA-5 and PGA-30 swept on a UMi validation draw of 256): the preset model trained on the
clustered channel, applied unchanged, against classical PGA tuned there (steps and momentum, as the benchmark
tunes them).

The preset starts from the ``subspace`` design since c2ac339; the recipe tables in
benchmarks/experiments/README.md ran at 659cad6, from the SVD phases (``svd``), with that commit's
committed benchmark steps (check it out to rerun them as they were).

    .venv/bin/python benchmarks/experiments/hybrid_recipes.py [--readout] [variant ...]   (about 6 min, 2 cores)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --umi                       (about 5 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --m32 [variant ...]         (about 7 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --sum-rate [variant ...]    (about 10 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --momentum-edge             (about 1.5 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --sum-rate-robust [variant ...]  (about 6 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --safeguard-latency          (about 1 min)

``--safeguard-latency``: what ``model.safeguard`` costs: unfolded PGA-5 (and + momentum) with and without it,
for both objectives, at batch 256 of the benchmark's test draw, interleaved medians of 20 rounds (the steps
are fixed numbers: latency does not depend on trained values).

``--sum-rate-robust``: the sum-rate networks (``SUM_RATE_VARIANTS``; default: with and without momentum, each
trained with and without ``model.safeguard``, those trained without it also run with it) and classical PGA-5 / PGA-30 with and without the safeguard, on the
benchmark's sum-rate test draw and on its conditions not trained on (the same draws: 256 channels each), with the
worst case. PGA-30 runs the benchmark's sum-rate steps (its JSON); PGA-5 is tuned on the benchmark's sum-rate
validation draw, the safeguarded PGA-5 with the safeguard on.

``--momentum-edge``: the benchmark's sum-rate PGA-5 picks the largest momentum of HYBRID_MOMENTA (0.95); this
tunes it again with momenta up to 0.99 and beyond 1 on the same validation draw and scores it on the same test
draw, to bound what the grid's edge costs PGA-5.

``--sum-rate``: the same question for the per-user sum-rate objective (with interference), where tuned
PGA-30 is ahead of the unfolded PGA-5 in the benchmark: recipes trained with that objective, against PGA-5 /
PGA-30 tuned as the benchmark tunes them (``tune_hybrid_pga``'s coordinate search over steps and momentum,
on its sum-rate validation draw), on the
benchmark's sum-rate test draw (512 channels).

``--m32``: the same question at 32 antennas and 10 RF chains, where iterations from the subspace start
pay (the benchmark's scalability table of 2026-12-05: tuned PGA-5 94.366%, PGA-30 94.910%): recipes of a network
trained there, scored on the benchmark's test draw for that size (512 channels).
"""
import json
import sys
from pathlib import Path

import torch

from autounfold.algorithms import reference
from autounfold.algorithms.tuning import HYBRID_MOMENTA, tune_hybrid_pga
from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.evaluation import baselines
from autounfold.evaluation.evaluate import scenario_config, transfer
from autounfold.evaluation.hybrid_benchmark import ROBUSTNESS, safeguarded
from autounfold.seeding import generator
from autounfold.training import train

VARIANTS = {
    "preset": [],
    "momentum_multi_iteration_600": ["model.layer=hybrid_pga_momentum", "training.loss=multi_iteration",
                                     "training.steps=600"],
    "multi_iteration_600": ["training.loss=multi_iteration", "training.steps=600"],
    "momentum_1000": ["model.layer=hybrid_pga_momentum", "training.steps=1000"],
}
M32 = ["problem.n_antennas=32", "problem.n_rf=10"]
M32_VARIANTS = {
    "preset": [],
    "init_pga30_steps": ["model.step_init=21.5", "model.digital_step_init=2.15"],   # PGA-30's tuned steps there (2026-12-05 grid)
    "init_pga10_steps": ["model.step_init=4.64", "model.digital_step_init=2.15"],   # PGA-10's
    "momentum_600": ["model.layer=hybrid_pga_momentum", "training.steps=600"],
    "multi_iteration_600": ["training.loss=multi_iteration", "training.steps=600"],
}
SUM_RATE = ["problem.objective=sum_rate"]
SUM_RATE_VARIANTS = {
    "preset": [],                                                        # the benchmark's sum-rate network
    "momentum": ["model.layer=hybrid_pga_momentum"],
    "step_per_band": ["model.layer=hybrid_pga_band"],
    "steps_1000": ["training.steps=1000"],
    "momentum_1000": ["model.layer=hybrid_pga_momentum", "training.steps=1000"],
    "multi_iteration": ["training.loss=multi_iteration"],
    "safeguard": ["model.safeguard=true"],
    "momentum_safeguard": ["model.layer=hybrid_pga_momentum", "model.safeguard=true"],
}
BENCHMARK_JSON = Path(__file__).resolve().parents[1] / "hybrid_benchmark.json"


def pga_steps(depths=(5, 10, 30)) -> dict:
    """The hybrid benchmark's validation-tuned classical steps per depth, read from its committed JSON."""
    rows = json.loads(BENCHMARK_JSON.read_text())["quality"]["rows"]
    return {T: next(r["steps"] for r in rows if r["method"] == f"PGA-{T}, tuned steps") for T in depths}


def umi():
    cfg = load_config("preset:hybrid", [])
    model = build_model(cfg)
    train(model, cfg.training, seed=cfg.seed, progress=False)
    moved = transfer(model.eval(), load_config("preset:hybrid", ["problem.channel.model=umi"]))
    p = moved.problem
    val = p.sample(256, generator(0, "hybrid-recipes-umi", "validation"))
    vref = reference(p, val)
    test = p.sample(512, generator(0, "hybrid-recipes-umi", "test"))
    ref = reference(p, test)
    print("| on UMi bands | % of bound | p5 % | min % |\n|---|---|---|---|")
    with torch.no_grad():
        rows = {"unfolded PGA-5 (preset, trained on clustered)": moved.run(test)}
        for T in (5, 30):
            steps, _ = tune_hybrid_pga(p, val, vref, T, momenta=HYBRID_MOMENTA)     # as the benchmark tunes it
            rows[f"PGA-{T}, tuned on UMi (analog {steps['step_analog']:.3g}, digital {steps['step_digital']:.3g}, "
                 f"momentum {steps['momentum']:.2g})"] = baselines.hybrid_pga(p, test, T, steps)
        rows[f"the preset's start ({p.init_method})"] = p.init(test)
        for name, x in rows.items():
            row(name, p.summarize(x, test, ref))


def trained(variants: dict, names, base, test_size: int, *draw):
    """Each named variant of ``preset:hybrid`` (``base`` + its overrides) trained (seed 0) and yielded
    as (name, model, problem, test, ref), every one scored on the same test draw ``draw`` of
    ``test_size`` channels (drawn with the first variant's problem) and its reference."""
    unknown = [n for n in names if n not in variants]
    if unknown:                              # before any output: checked when called, not when iterated
        sys.exit(f"unknown variant(s) {unknown}; allowed: {', '.join(variants)}")
    return _trained(variants, names, base, test_size, draw)


def _trained(variants, names, base, test_size, draw):
    test = ref = None
    for name in names:
        cfg = load_config("preset:hybrid", base + variants[name])
        model = build_model(cfg)
        train(model, cfg.training, seed=cfg.seed, progress=False)
        p = model.problem
        if test is None:
            test = p.sample(test_size, generator(0, *draw))
            ref = reference(p, test)
        yield name, model.eval(), p, test, ref


def row(name, s):
    print(f"| {name} | {s['pct_of_bound']:.3f} | {s['p5_pct']:.2f} | {s['min_pct']:.2f} |", flush=True)


def m32(names):
    runs = trained(M32_VARIANTS, names or list(M32_VARIANTS), M32, 512, "hybrid-benchmark", "scale",
                   "n_antennas=32, n_rf=10")
    print("| at M 32, L 10 | % of bound | p5 % | min % |\n|---|---|---|---|")
    for name, model, p, test, ref in runs:
        with torch.no_grad():
            row(name, p.summarize(model.run(test), test, ref))


def sr_validation(p):
    """The hybrid benchmark's sum-rate validation draw (256 channels, seed 0) and its reference."""
    val = p.sample(256, generator(0, "hybrid-benchmark", "sr-val"))
    return val, reference(p, val)


def sum_rate(names):
    """The per-user sum-rate objective (with interference): recipes of the unfolded PGA-5 against classical
    PGA-5 / PGA-30 with the steps the benchmark tuned for this objective, on the benchmark's sum-rate test
    draw (512 channels) and its fully-digital WMMSE bound."""
    runs = trained(SUM_RATE_VARIANTS, names or list(SUM_RATE_VARIANTS), SUM_RATE, 512, "hybrid-benchmark", "sr-test")
    print("| sum rate, M 12, L 10 | % of bound | p5 % | min % |\n|---|---|---|---|")
    first = True
    for name, model, p, test, ref in runs:
        with torch.no_grad():
            if first:                        # classical PGA tuned as the benchmark tunes it, on its sum-rate validation draw
                val, vref = sr_validation(p)
                for T in (5, 30):
                    st, _ = tune_hybrid_pga(p, val, vref, T, momenta=HYBRID_MOMENTA)
                    row(f"PGA-{T}, tuned (analog {st['step_analog']:.3g}, digital {st['step_digital']:.3g}, momentum "
                        f"{st['momentum']:.2g})", p.summarize(baselines.hybrid_pga(p, test, T, st), test, ref))
                first = False
            row(name, p.summarize(model.run(test), test, ref))


def momentum_edge():
    cfg = load_config("preset:hybrid", SUM_RATE + ["model.step_init=0.01", "model.digital_step_init=1.0"])
    q = build_model(cfg).problem                                       # the problem alone: nothing is trained
    val, vref = sr_validation(q)
    test = q.sample(512, generator(0, "hybrid-benchmark", "sr-test"))
    ref = reference(q, test)
    print("| sum rate, PGA-5 tuned with momenta | pick (analog, digital, momentum) | validation % | test % |\n|---|---|---|---|")
    for extra in ((), (0.98, 0.99), (0.98, 0.99, 1.0, 1.05, 1.1)):
        momenta = HYBRID_MOMENTA + extra
        st, sv = tune_hybrid_pga(q, val, vref, 5, momenta=momenta)
        pct = q.summarize(baselines.hybrid_pga(q, test, 5, st), test, ref)["pct_of_bound"]
        print(f"| up to {momenta[-1]:g} | {st['step_analog']:.3g}, {st['step_digital']:.3g}, {st['momentum']:g} | "
              f"{sv:.3f} | {pct:.3f} |", flush=True)


def sum_rate_robust(names):
    names = names or ["preset", "safeguard", "momentum", "momentum_safeguard"]
    runs = list(trained(SUM_RATE_VARIANTS, names, SUM_RATE, 512, "hybrid-benchmark", "sr-test"))
    p, test, ref = runs[0][2], runs[0][3], runs[0][4]
    cfg = runs[0][1].config
    draws = {"nominal": (p, test, ref)}
    for sc in ROBUSTNESS:
        q = transfer(runs[0][1], scenario_config(cfg, sc)).problem
        t = q.sample(256, generator(0, "hybrid-benchmark", "sr", sc))
        draws[sc] = (q, t, reference(q, t))
    val, vref = sr_validation(p)
    bench = {r["method"]: r.get("steps") for r in json.loads(BENCHMARK_JSON.read_text())["sum_rate"]["rows"]}
    classical = {}
    for guard in (False, True):
        st5, _ = tune_hybrid_pga(p, val, vref, 5, momenta=HYBRID_MOMENTA, safeguard=guard)
        classical[f"PGA-5{', safeguarded' if guard else ''} (tuned: {st5['step_analog']:.2g}, {st5['step_digital']:.2g}, "
                  f"{st5['momentum']:g})"] = (5, st5, guard)
        classical[f"PGA-30{', safeguarded' if guard else ''} (the benchmark's steps)"] = (30, bench["PGA-30, tuned steps"], guard)
    print("| sum rate, % of bound | " + " | ".join(draws) + " | worst |\n|---|" + "---|" * (len(draws) + 1))

    def line(name, run):
        vals = [q.summarize(run(sc, q, t), t, r)["pct_of_bound"] for sc, (q, t, r) in draws.items()]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | **{min(vals):.3f}** |", flush=True)

    with torch.no_grad():
        for name, model, *_ in runs:
            line(name, lambda sc, q, t, m=model: (m if sc == "nominal" else transfer(m, scenario_config(m.config, sc))).run(t))
            if not model.config.model.safeguard:        # trained without the safeguard, deployed with it
                _, guarded = safeguarded(model, model.config)
                line(f"{name}, safeguard at inference only",
                     lambda sc, q, t, m=model, c=guarded: transfer(m, c if sc == "nominal" else scenario_config(c, sc)).run(t))
        for name, (T, st, guard) in classical.items():
            line(name, lambda sc, q, t, T=T, st=st, g=guard: baselines.hybrid_pga(q, t, T, st, safeguard=g))
        line("the start", lambda sc, q, t: q.init(t))


def safeguard_latency():
    from autounfold.evaluation.latency import measure_latency
    fns = {}
    for objective in ("logdet", "sum_rate"):
        for layer in ("hybrid_pga", "hybrid_pga_momentum"):
            for guard in (False, True):
                cfg = load_config("preset:hybrid", [f"problem.objective={objective}", f"model.layer={layer}",
                                                    "model.step_init=0.001", "model.digital_step_init=1.0",
                                                    f"model.safeguard={str(guard).lower()}"])
                model = build_model(cfg).eval()
                inst = model.problem.sample(256, generator(0, "hybrid-benchmark", "test"))
                fns[(objective, layer, guard)] = lambda m=model, i=inst: m.run(i)
    lat = measure_latency(fns, repeats=20)
    print("| objective | layer | median ms | safeguarded median ms | cost |\n|---|---|---|---|---|")
    for objective in ("logdet", "sum_rate"):
        for layer in ("hybrid_pga", "hybrid_pga_momentum"):
            a, b = lat[(objective, layer, False)]["median_ms"], lat[(objective, layer, True)]["median_ms"]
            print(f"| {objective} | {layer} | {a:.1f} | {b:.1f} | {100 * (b / a - 1):+.0f}% |", flush=True)


def main(args):
    if "--safeguard-latency" in args:
        return safeguard_latency()
    if "--sum-rate-robust" in args:
        return sum_rate_robust([a for a in args if a != "--sum-rate-robust"])
    if "--momentum-edge" in args:
        return momentum_edge()
    if "--umi" in args:
        return umi()
    if "--sum-rate" in args:
        return sum_rate([a for a in args if a != "--sum-rate"])
    if "--m32" in args:
        return m32([a for a in args if a != "--m32"])
    readout = "--readout" in args
    names = [a for a in args if a != "--readout"] or list(VARIANTS)
    runs = trained(VARIANTS, names, [], 1024, "hybrid-benchmark", "test")
    print("| variant | % of bound | p5 % | min % |\n|---|---|---|---|")
    for name, model, p, test, ref in runs:
        with torch.no_grad():
            x = model.run(test)
            row(name, p.summarize(x, test, ref))
            if readout and name == "preset":
                def best_digital(x):
                    W_a, _ = p.unpack_stacked(x, test)
                    return p.pack_stacked(W_a, p.digital_given_analog_stacked(W_a, test))
                pct = lambda x: p.summarize(x, test, ref)["pct_of_bound"]  # noqa: E731
                print(f"| preset + best digital readout | {pct(best_digital(x)):.3f} | | |")
                for T, steps in pga_steps().items():
                    y = baselines.hybrid_pga(p, test, T, steps)
                    print(f"| PGA-{T} | {pct(y):.3f} | | |\n| PGA-{T} + best digital readout | {pct(best_digital(y)):.3f} | | |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Unfolded hybrid PGA-5: does another training recipe, or the best digital readout, close the gap to
classical PGA-30?

Each variant is ``preset:hybrid`` with the listed overrides; scored on the hybrid benchmark's test draw
(1024 channels, seed 0) as % of the fully-digital bound. ``--readout`` also scores the preset model and
classical PGA-5 / 10 / 30 (the benchmark's validation-tuned steps) with the best digital precoder for
their final analog precoder. ``--umi`` instead scores on 3GPP UMi bands (Sionna; 512 test channels,
steps of PGA-5 and PGA-30 swept on a UMi validation draw of 256): the preset model trained on the
clustered channel, applied unchanged, against classical PGA tuned there.

The preset starts from the ``subspace`` design since c2ac339; the recipe tables in
benchmarks/experiments/README.md ran at 659cad6, from the SVD phases (``svd``), with that commit's
committed benchmark steps (check it out to rerun them as they were).

    .venv/bin/python benchmarks/experiments/hybrid_recipes.py [--readout] [variant ...]   (about 6 min, 2 cores)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --umi                       (about 3 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --m32 [variant ...]         (about 7 min)
    .venv/bin/python benchmarks/experiments/hybrid_recipes.py --sum-rate [variant ...]    (about 10 min)

``--sum-rate``: the same question for the per-user sum-rate objective (with interference), where tuned
PGA-30 is ahead of the unfolded PGA-5 in the benchmark: recipes trained with that objective, against PGA-5 /
PGA-30 tuned as the benchmark tunes them (steps, then momentum, on its sum-rate validation draw), on the
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
from autounfold.evaluation.evaluate import transfer
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
            steps, _ = tune_hybrid_pga(p, val, vref, T)
            rows[f"PGA-{T}, steps tuned on UMi {steps['step_analog']:.3g} / {steps['step_digital']:.3g}"] = \
                baselines.hybrid_pga(p, test, T, steps)
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
                val = p.sample(256, generator(0, "hybrid-benchmark", "sr-val"))
                vref = reference(p, val)
                for T in (5, 30):
                    st, _ = tune_hybrid_pga(p, val, vref, T, momenta=HYBRID_MOMENTA)
                    row(f"PGA-{T}, tuned (analog {st['step_analog']:.3g}, digital {st['step_digital']:.3g}, momentum "
                        f"{st['momentum']:.2g})", p.summarize(baselines.hybrid_pga(p, test, T, st), test, ref))
                first = False
            row(name, p.summarize(model.run(test), test, ref))


def main(args):
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

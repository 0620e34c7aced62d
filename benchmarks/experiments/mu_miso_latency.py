"""How much does the MU-MISO latency ratio move between measurements on this machine?

The benchmark (``benchmark-mu-miso``) times each 5-layer network against WMMSE-100 once (20 interleaved
repetitions, median). This script repeats that measurement ``ROUNDS`` times in one process, at the
benchmark's setting (16 x 8, batch 256), and prints each round's medians and speed-ups over WMMSE-100, then
the lowest, median and highest speed-up. Latency does not depend on the learned values, so the networks
are built untrained (unfolded PGA without knots, with SNR knots and with SNR x condition knots; UWMMSE).

    .venv/bin/python benchmarks/experiments/mu_miso_latency.py      (about 2 min, 2 cores; run nothing beside it)
"""
import statistics

from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.evaluation import baselines
from autounfold.evaluation.latency import measure_latency
from autounfold.seeding import generator

ROUNDS, REPEATS, BATCH = 5, 20, 256


def main():
    start = ["model.step_init=0.05", "model.momentum_init=0.3", "training.steps=0"]
    nets = {"unfolded PGA-5": ["model.layer=momentum"] + start,
            "unfolded PGA, 4 SNR knots-5": ["model.layer=momentum", "model.snr_knots=4"] + start,
            "unfolded PGA, 4 SNR x 5 condition knots-5": ["model.layer=momentum", "model.snr_knots=4",
                                                          "model.cond_knots=5"] + start,
            "UWMMSE (affine)-5": ["model.layer=uwmmse", "model.step_init=1.0", "training.steps=0"]}
    models = {k: build_model(load_config("preset:mu_miso", v)).eval() for k, v in nets.items()}
    p = next(iter(models.values())).problem
    inst = p.sample(BATCH, generator(0, "latency"))
    # a new batch per call (``inst[:]``): the problem keeps the Gram matrix and RZF's inverse per batch
    fns = {k: (lambda m=m: m.run(inst[:])) for k, m in models.items()}
    fns.update({"WMMSE-100": lambda: baselines.wmmse(p, inst[:], 100), "RZF": lambda: p.init(inst[:], "rzf")})
    ratios = {k: [] for k in fns if k != "WMMSE-100"}
    for r in range(ROUNDS):
        lat = measure_latency(fns, repeats=REPEATS, order_seed=r)
        w = lat["WMMSE-100"]["median_ms"]
        for k in ratios:
            ratios[k].append(w / lat[k]["median_ms"])
        print(f"round {r + 1}: " + " | ".join(f"{k} {v['median_ms']:.2f} ms" for k, v in lat.items()), flush=True)
    print(f"\n| method | speed-up over WMMSE-100: lowest | median | highest ({ROUNDS} rounds of {REPEATS}) |")
    print("|---|---|---|---|")
    for k, v in ratios.items():
        print(f"| {k} | {min(v):.1f}x | {statistics.median(v):.1f}x | {max(v):.1f}x |")


if __name__ == "__main__":
    main()

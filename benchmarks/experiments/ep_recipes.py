"""Learned EP (8 x 8 16-QAM): does another training recipe close the gap to EP-10?

Each variant is ``preset:learned_ep`` with the listed overrides, trained as the textbook benchmark
trains it, then scored on the benchmark's own test draws (20000 symbol vectors per SNR point, seed 0):
SNR at SER 1e-2 by the benchmark's interpolation, and the SER curve over 8..20 dB.

    .venv/bin/python benchmarks/experiments/ep_recipes.py [variant ...]     (about 8 min for all, 2 cores)
"""
import sys

from autounfold.algorithms.ep import expectation_propagation
from autounfold.evaluation import textbook_benchmark as tb
from autounfold.evaluation.detection_benchmark import snr_at

VARIANTS = {
    "preset": [],
    "steps3000": ["training.steps=3000"],
    "end_to_end": ["training.loss=end_to_end"],
    "steps3000_batch1024": ["training.steps=3000", "training.batch_size=1024"],
    "lr_low": ["training.lr=0.003", "training.scalar_lr=0.01", "training.steps=2000"],
    "damping_start_0.9": ["model.step_init=0.9", "training.steps=2000"],
    "snr10_14": ["problem.channel.snr_db=[10.0,14.0]"],
    "snr10_14_steps1500": ["problem.channel.snr_db=[10.0,14.0]", "training.steps=1500"],
    "snr11_13_steps1500": ["problem.channel.snr_db=[11.0,13.0]", "training.steps=1500"],
    # training.refine (the preset's coordinate search on the SER at 11-13 dB) with more sweeps, and
    # alone from classical EP's parameters (no gradient steps)
    "refine_sweeps6": ["training.refine.sweeps=6"],
    "refine_only_from_classical": ["training.steps=0", "model.step_init=0.9", "training.refine.sweeps=6"],
    # the preset before training.refine
    "no_refine": ["training.refine=null"],
}


def main(names):
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    models = {n: tb._train("preset:learned_ep", VARIANTS[n], None, 0, n, False)[0] for n in names}

    def classical(q, val):
        return {"EP-5": lambda i: expectation_propagation(q, i, 5),
                "EP-10": lambda i: expectation_propagation(q, i, 10)}, {}
    e = tb._curves("8x8_16qam", tb.EP_SNRS, classical, models, 20000, 0, True)
    floor = 0.5 / (20000 * 8)
    print("| variant | SNR at SER 1e-2 (dB) | " + " | ".join(f"{s} dB" for s in tb.EP_SNRS) + " |")
    print("|---|---|" + "---|" * len(tb.EP_SNRS))
    for k, c in e["curves"].items():
        print(f"| {k} | {snr_at(tb.EP_SNRS, c, floor=floor):.2f} | " + " | ".join(f"{v:.2e}" for v in c) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or list(VARIANTS))

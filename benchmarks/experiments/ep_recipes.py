"""Learned EP (8 x 8 16-QAM): which recipe and depth let K learned iterations reach EP with 2K?

Each variant is ``preset:learned_ep`` with the listed overrides, trained as the textbook benchmark
trains it, then scored on the benchmark's own test draws (20000 symbol vectors per SNR point, seed 0):
SNR at SER 1e-2 by the benchmark's interpolation, and the SER curve over 8..20 dB.

    .venv/bin/python benchmarks/experiments/ep_recipes.py [variant ...]     (2-11 min per variant, 2 cores)
"""
import sys

from autounfold.algorithms.ep import expectation_propagation
from autounfold.evaluation import textbook_benchmark as tb
from autounfold.curves import snr_at

# The preset is learned_ep_prior with 6 layers and training.refine over [prior_scale, damping_logit,
# obs_scale]. Rows run before it name what they ran with: FIVE the 5 layers of the earlier presets,
# BEFORE_REFINE the preset of the first table in benchmarks/experiments/README.md, SCALED the preset of
# the second (refine without the start variance).
FIVE = ["model.num_layers=5"]
BEFORE_REFINE = FIVE + ["model.layer=learned_ep_scaled", "training.refine=null"]
SCALED = FIVE + ["model.layer=learned_ep_scaled", "training.refine.params=[damping_logit,obs_scale]"]

VARIANTS = {
    "preset": [],
    "depth5": FIVE,
    # gradient-step recipes, before training.refine
    "before_refine": BEFORE_REFINE,
    "steps3000": BEFORE_REFINE + ["training.steps=3000"],
    "end_to_end": BEFORE_REFINE + ["training.loss=end_to_end"],
    "steps3000_batch1024": BEFORE_REFINE + ["training.steps=3000", "training.batch_size=1024"],
    "lr_low": BEFORE_REFINE + ["training.lr=0.003", "training.scalar_lr=0.01", "training.steps=2000"],
    "damping_start_0.9": BEFORE_REFINE + ["model.step_init=0.9", "training.steps=2000"],
    "snr10_14": BEFORE_REFINE + ["problem.channel.snr_db=[10.0,14.0]"],
    "snr10_14_steps1500": BEFORE_REFINE + ["problem.channel.snr_db=[10.0,14.0]", "training.steps=1500"],
    "snr11_13_steps1500": BEFORE_REFINE + ["problem.channel.snr_db=[11.0,13.0]", "training.steps=1500"],
    # training.refine (coordinate search on the SER at 11-13 dB) without the start variance: as it is, with
    # more sweeps, alone from classical EP's parameters (no gradient steps), and on a draw at 10-12 dB
    "scaled": SCALED,
    "scaled_refine_sweeps6": SCALED + ["training.refine.sweeps=6"],
    "scaled_refine_only_from_classical": SCALED + ["training.steps=0", "model.step_init=0.9", "training.refine.sweeps=6"],
    "scaled_refine_snr10_12": SCALED + ["training.refine.problem.channel.snr_db=[10.0,12.0]"],
    # the 5-layer preset (with the start variance) with a refine draw twice as large (less room to fit its noise;
    # training 521 s against 243), or with finer offsets too
    "refine_batch49152": FIVE + ["training.refine.batch=49152"],
    "fine_offsets": FIVE + ["training.refine.offsets=[-1.0,-0.5,-0.25,-0.1,-0.05,0.05,0.1,0.25,0.5,1.0]"],
    # fewer layers, each against EP with twice its iterations (the bar's 2K at K = 3 and 4)
    "scaled_depth3": SCALED + ["model.num_layers=3"],
    "scaled_depth4": SCALED + ["model.num_layers=4"],
    # the preset's recipe at more layers: from which depth do K learned iterations match 2K classical ones?
    # (6 is the preset's own depth: "preset")
    "depth8": ["model.num_layers=8"],
}


def main(names):
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    models = {n: tb._train("preset:learned_ep", VARIANTS[n], None, 0, n, False)[0] for n in names}

    depths = sorted({5} | {m.num_layers for m in models.values()})

    def classical(q, val):
        # EP-K and EP-2K (Sionna's damping 0.9; tuning it per SNR gives the same EP-2K crossing at every depth here)
        return {f"EP-{k}": (lambda kk: (lambda i: expectation_propagation(q, i, kk)))(k)
                for K in depths for k in (K, 2 * K)}, {}
    e = tb._curves("8x8_16qam", tb.EP_SNRS, classical, models, 20000, 0, True)
    floor = 0.5 / (20000 * 8)
    print("| variant | SNR at SER 1e-2 (dB) | " + " | ".join(f"{s} dB" for s in tb.EP_SNRS) + " |")
    print("|---|---|" + "---|" * len(tb.EP_SNRS))
    for k, c in e["curves"].items():
        print(f"| {k} | {snr_at(tb.EP_SNRS, c, floor=floor):.2f} | " + " | ".join(f"{v:.2e}" for v in c) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or list(VARIANTS))

"""DeepSIC and DetNet training recipes on the detection benchmark's cases: which recipe, and does the
network add anything to its classical base?

Each variant is its preset (``preset:deepsic`` or ``preset:detnet``) with the detection benchmark's
case overrides (its training SNR range, its ADC setting, its channel) and the listed changes, trained
once (seed 0), then scored on the benchmark's own test draws (20000 symbol vectors per SNR point; on
3GPP cases from the benchmark's test user pool): SNR at SER 1e-2 by the benchmark's interpolation and
the SER curve. The classical rows are SIC-5, the mixture SIC-5 (``sic_mix``) and, where C^U is small
enough, exhaustive ML. ``--history`` prints each variant's validation SER at every validation.

    .venv/bin/python benchmarks/experiments/deepsic_recipes.py [--case 4x4_qpsk ...] [--history] [variant ...]
    (no variant named: the DeepSIC variants, about 8 min per 4 x 4 case on 2 cores; the DetNet ones
    take 1.5-2.5 min each on 4 x 4, 3-4 min on 8 x 8)
"""
import argparse
import sys
import time

import torch

from autounfold.algorithms import detection as D
from autounfold.build import build_model, build_problem
from autounfold.config import load_config
from autounfold.curves import snr_at
from autounfold.evaluation.detection_benchmark import CASES, SCALAR_REFINE, _overrides, case_test_pool
from autounfold.seeding import generator
from autounfold.training import train

DEEPSIC_REFINE = ["training.refine.params=[deepsic.noise,deepsic.noise_relative]", *SCALAR_REFINE]   # the benchmark's
STEPS_ONLY = ["training.refine=null"]              # the gradient steps alone (the preset's refine switched off)
VARIANTS = {
    "deepsic_seq": ("preset:deepsic", ["model.layer=deepsic", *STEPS_ONLY]),
    "deepsic_e2e": ("preset:deepsic", ["model.layer=deepsic", "training.loss=end_to_end", *STEPS_ONLY]),
    "mix_seq": ("preset:deepsic", ["model.layer=deepsic_mix", *STEPS_ONLY]),
    "mix_e2e": ("preset:deepsic", ["model.layer=deepsic_mix", "training.loss=end_to_end", *STEPS_ONLY]),
    "mix_e2e_6000": ("preset:deepsic", ["model.layer=deepsic_mix", "training.loss=end_to_end", "training.steps=6000",
                                        *STEPS_ONLY]),
    "mix_seq_6000": ("preset:deepsic", ["model.layer=deepsic_mix", "training.steps=6000", *STEPS_ONLY]),
    # DeepSIC's steps, then a coordinate search over its two noise inflations per iteration (absolute and
    # relative to the received power), scored by the SER near the case's crossing (as DetNet's refine)
    "deepsic_refine": ("preset:deepsic", ["model.layer=deepsic", *DEEPSIC_REFINE]),
    "deepsic_e2e_refine": ("preset:deepsic", ["model.layer=deepsic", "training.loss=end_to_end", *DEEPSIC_REFINE]),
    "mix_seq_refine": ("preset:deepsic", ["model.layer=deepsic_mix", *DEEPSIC_REFINE]),
    # the preset as shipped: its refine's draw placed by its crossing (the SER's 1e-2), not by the case
    "deepsic_preset": ("preset:deepsic", []),
    # DetNet's gradient steps alone
    "detnet": ("preset:detnet", [*STEPS_ONLY]),
    "detnet_e2e": ("preset:detnet", ["training.loss=end_to_end", *STEPS_ONLY]),
    "detnet_slow": ("preset:detnet", ["training.lr=0.0003", "training.scalar_lr=0.001", *STEPS_ONLY]),
    # the preset's steps, then its coordinate search over the per-layer step and temperature, scored by
    # the SER on a draw at the case's band (CASES[case]["refine"], as the benchmark, not the preset's crossing)
    "detnet_refine": ("preset:detnet", ["training.refine.batch=16384"]),
}
TEST_SIZE = 20000


def run_case(name: str, variants, verbose: bool = False):
    case = CASES[name]
    models = {}
    for v in variants:
        preset, changes = VARIANTS[v]
        if v.endswith("_refine"):
            lo, hi = case["refine"]["snr"]              # the benchmark's band (its 8 x 8 batch is not used here)
            changes = changes + [f"training.refine.problem.channel.snr_db=[{lo},{hi}]", "training.refine.crossing=null"]
        cfg = load_config(preset, _overrides(case, case["train_snr"]) + changes + ["seed=0"])
        model = build_model(cfg)
        t0 = time.perf_counter()
        res = train(model, cfg.training, seed=0, progress=False)
        print(f"[{name}] {v}: trained in {time.perf_counter() - t0:.0f} s, validation SER {-res.best_score:.4f} "
              f"at step {res.best_step}" + (f", refine {({k: v for k, v in res.refine.items() if k != 'placed'})}"
                                            + (f", band {res.refine['placed']['band']} (crossing {res.refine['placed']['crossing']})"
                                               if "placed" in res.refine else "") if res.refine else ""),
              file=sys.stderr, flush=True)
        if verbose:
            for h in res.history:
                print(f"[{name}] {v}: step {h['step']} loss {h['loss']:.4f} validation SER {-h['val_score']:.4f}",
                      file=sys.stderr, flush=True)
        models[v] = model.eval()
    curves = {}
    for snr in case["snrs"]:
        q = build_problem(load_config("preset:deepsic", _overrides(case, (snr, snr), case_test_pool(case))).problem)
        inst = q.sample(TEST_SIZE, generator(0, "test", name, snr))
        fns = {"SIC-5": lambda i: D.sic(q, i, 5), "mixture SIC-5": lambda i: D.sic(q, i, 5, exact_interferers=1)}
        if q.num_points ** q.n_users <= D.ML_MAX_CANDIDATES:
            fns["ML (exhaustive)"] = lambda i: D.ml(q, i)
        fns.update({v: (lambda m: (lambda i: m.run(i)))(m) for v, m in models.items()})
        with torch.no_grad():
            for k, f in fns.items():
                curves.setdefault(k, []).append(q.summarize(f(inst), inst, inst.s)["ser"])
    floor = 0.5 / (TEST_SIZE * case["sizes"][0])
    print(f"\n### {case['title']}\n")
    print("| variant | SNR at SER 1e-2 (dB) | " + " | ".join(f"{s} dB" for s in case["snrs"]) + " |")
    print("|---|---|" + "---|" * len(case["snrs"]))
    for k, c in curves.items():
        at = snr_at(case["snrs"], c, floor=floor)
        print(f"| {k} | {'—' if at is None else f'{at:.2f}'} | " + " | ".join(f"{v:.2e}" for v in c) + " |", flush=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=list(CASES))
    ap.add_argument("--history", action="store_true", help="print each variant's validation history")
    ap.add_argument("variants", nargs="*")
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    for name in args.case or ["4x4_qpsk", "4x4_qpsk_adc3"]:
        run_case(name, args.variants or [v for v in VARIANTS if not v.startswith("detnet")], args.history)


if __name__ == "__main__":
    main(sys.argv[1:])

"""DeepSIC on SIC and on the mixture SIC (4 x 4 QPSK, nominal and behind 3-bit ADCs): which training
recipe, and does the network add anything to its classical base?

Each variant is ``preset:deepsic`` with the detection benchmark's case overrides (its training SNR
range, its ADC setting) and the listed changes, trained once (seed 0), then scored on the benchmark's
own test draws (20000 symbol vectors per SNR point): SNR at SER 1e-2 by the benchmark's interpolation
and the SER curve. The classical rows are SIC-5, the mixture SIC-5 (``sic_mix``) and exhaustive ML.

    .venv/bin/python benchmarks/experiments/deepsic_recipes.py [--case 4x4_qpsk|4x4_qpsk_adc3 ...] [variant ...]
    (about 8 min per case for all variants, 2 cores)
"""
import argparse
import sys
import time

import torch

from autounfold.algorithms import detection as D
from autounfold.build import build_model, build_problem
from autounfold.config import load_config
from autounfold.evaluation.detection_benchmark import CASES, _overrides, snr_at
from autounfold.seeding import generator
from autounfold.training import train

VARIANTS = {
    "deepsic_seq": ["model.layer=deepsic"],
    "deepsic_e2e": ["model.layer=deepsic", "training.loss=end_to_end"],
    "mix_seq": ["model.layer=deepsic_mix"],
    "mix_e2e": ["model.layer=deepsic_mix", "training.loss=end_to_end"],
    "mix_e2e_6000": ["model.layer=deepsic_mix", "training.loss=end_to_end", "training.steps=6000"],
    "mix_seq_6000": ["model.layer=deepsic_mix", "training.steps=6000"],
}
TEST_SIZE = 20000


def run_case(name: str, variants):
    case = CASES[name]
    models = {}
    for v in variants:
        cfg = load_config("preset:deepsic", _overrides(case, case["train_snr"]) + VARIANTS[v] + ["seed=0"])
        model = build_model(cfg)
        t0 = time.perf_counter()
        res = train(model, cfg.training, seed=0, progress=False)
        print(f"[{name}] {v}: trained in {time.perf_counter() - t0:.0f} s, validation SER {-res.best_score:.4f}",
              file=sys.stderr, flush=True)
        models[v] = model.eval()
    curves = {}
    for snr in case["snrs"]:
        q = build_problem(load_config("preset:deepsic", _overrides(case, (snr, snr))).problem)
        inst = q.sample(TEST_SIZE, generator(0, "test", name, snr))
        fns = {"SIC-5": lambda i: D.sic(q, i, 5), "mixture SIC-5": lambda i: D.sic(q, i, 5, exact_interferers=1),
               "ML (exhaustive)": lambda i: D.ml(q, i)}
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
    ap.add_argument("--case", action="append", choices=["4x4_qpsk", "4x4_qpsk_adc3"])
    ap.add_argument("variants", nargs="*")
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    for name in args.case or ["4x4_qpsk", "4x4_qpsk_adc3"]:
        run_case(name, args.variants or list(VARIANTS))


if __name__ == "__main__":
    main(sys.argv[1:])

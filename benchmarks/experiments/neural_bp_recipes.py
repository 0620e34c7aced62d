"""Layered neural BP-5 on the 5G LDPC (128, 64) code: does a longer training run, or another loss, bring
it to classical layered BP-10 (the benchmark's same-schedule bar)?

Each variant is the decoding benchmark's layered network (``preset:neural_bp``: per-edge weights per
iteration, ``model.algorithm: bp_layered``, trained over Eb/N0 2-5 dB) with the listed changes, trained
once (seed 0); the trainer keeps the weights of the best validation BLER (4096 blocks). Every variant and
classical layered BP-5 / BP-10 then decode the same fresh test blocks (``--blocks`` per Eb/N0 point,
seeds 1000 + chunk, not the benchmark's draws) at 3.0 and 3.5 dB, where the benchmark's curves cross
BLER 1e-2. ``--history`` prints each variant's validation BLER at every validation.

    .venv/bin/python benchmarks/experiments/neural_bp_recipes.py [--blocks 20000] [--history] [variant ...]
    (about 2.5 min per 1000 training steps and 1 min of decoding per variant, 1 thread)
"""
import argparse
import time

import torch

from autounfold.algorithms.bp import bp_classical
from autounfold.build import build_model, build_problem
from autounfold.config import load_config
from autounfold.seeding import generator
from autounfold.training import train

CODE = ["problem.n=128", "problem.k=64", "problem.ebno_db=[2.0,5.0]", "model.layer=neural_bp",
        "model.algorithm=bp_layered", "seed=0"]
VARIANTS = {
    "preset_1000": [],                                          # the benchmark's network
    "steps_4000": ["training.steps=4000"],                      # four times the training
    "end_to_end_1000": ["training.loss=end_to_end"],            # the last iteration's cross-entropy alone
    "batch_1024": ["training.batch_size=1024"],                 # four times the blocks per step
}
EBNO = (3.0, 3.5)
CHUNK = 2000


def _problem(ebno: float):
    return build_problem(load_config("preset:neural_bp", ["problem.n=128", "problem.k=64",
                                                          f"problem.ebno_db=[{ebno},{ebno}]"]).problem)


def bler(decoders: dict, ebno: float, blocks: int) -> dict:
    """Block error rate of each decoder (name -> fn(problem, inst)) on the same blocks at ``ebno``."""
    problem = _problem(ebno)
    errors, seen = {k: 0 for k in decoders}, 0
    for c in range(0, blocks, CHUNK):
        inst = problem.sample(min(CHUNK, blocks - c), generator(1000 + c // CHUNK))
        with torch.no_grad():
            for name, fn in decoders.items():
                errors[name] += problem.errors(fn(problem, inst), inst.bits)[1]
        seen += inst.batch_size
    return {k: v / seen for k, v in errors.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", help=f"among {', '.join(VARIANTS)} (default: all)")
    ap.add_argument("--blocks", type=int, default=20000, help="test blocks per Eb/N0 point")
    ap.add_argument("--history", action="store_true")
    args = ap.parse_args()
    names = args.variants or list(VARIANTS)
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        ap.error(f"unknown variants {bad}; choose among {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    decoders = {"layered BP-5": lambda p, i: bp_classical(p, i, 5, schedule="layered"),
                "layered BP-10": lambda p, i: bp_classical(p, i, 10, schedule="layered")}
    rows = []
    for name in names:
        cfg = load_config("preset:neural_bp", CODE + VARIANTS[name])
        model = build_model(cfg)
        t0 = time.perf_counter()
        res = train(model, cfg.training, seed=cfg.seed, progress=False)
        secs = time.perf_counter() - t0
        hist = [-h["val_score"] for h in res.history]
        print(f"{name}: {secs:.0f} s, validation BLER start {hist[0]:.4f}, best {-res.best_score:.4f} "
              f"(step {res.best_step} of {cfg.training.steps})", flush=True)
        if args.history:
            print("  " + " ".join(f"{h['step']}:{-h['val_score']:.4f}" for h in res.history), flush=True)
        decoders[name] = (lambda m: lambda p, i: m.eval().run(i))(model)
        rows.append((name, cfg.training.steps, secs, -res.best_score, res.best_step))
    rates = {e: bler(decoders, e, args.blocks) for e in EBNO}
    print(f"\nBLER on {args.blocks} test blocks per point (5G LDPC (128, 64), BPSK, AWGN)\n")
    print("| decoder | training | best validation BLER (step) | " + " | ".join(f"{e} dB" for e in EBNO) + " |")
    print("|---|---|---|" + "---|" * len(EBNO))
    for k in ("layered BP-10", "layered BP-5"):
        print(f"| {k} (classical) | | | " + " | ".join(f"{rates[e][k]:.5f}" for e in EBNO) + " |")
    for name, steps, secs, best, step in rows:
        print(f"| {name} | {steps} steps, {secs:.0f} s | {best:.4f} ({step}) | "
              + " | ".join(f"{rates[e][name]:.5f}" for e in EBNO) + " |")


if __name__ == "__main__":
    main()

"""Auto-PGD-5: does training over a wider SNR range (``training.problem``) than the nominal one it is
validated on close the gap to tuned PGD-5 in the robustness table's conditions?

Each variant is ``preset:auto_pgd`` (400 steps, seed 0) with the listed overrides; every model is
validated on the nominal problem (SNR 0-30 dB) and applied unchanged to the auto-PGD benchmark's
robustness conditions (its test draws, 1024 channels each), beside power iteration-5 and PGD-5 with the
step and momentum tuned on the nominal validation draw.

    .venv/bin/python benchmarks/experiments/auto_pgd_training_range.py      (about 3 min, 2 cores)
"""
import torch

from autounfold.algorithms import reference
from autounfold.build import build_model
from autounfold.evaluation import auto_pgd_benchmark as A
from autounfold.evaluation import baselines
from autounfold.seeding import generator
from autounfold.training import train

VARIANTS = {
    "preset (trained on 0-30 dB)": [],
    "trained on -10-40 dB": ["training.problem.channel.snr_db=[-10, 40]"],
    "trained on -20-40 dB": ["training.problem.channel.snr_db=[-20, 40]"],
}


def main():
    models = {}
    for name, over in VARIANTS.items():
        cfg = A._preset(400, over)
        model = build_model(cfg)
        train(model, cfg.training, seed=0, progress=False)
        models[name] = model
    cfg = A._preset(400)
    problem = next(iter(models.values())).problem
    val = problem.sample(cfg.training.validation_batch, generator(0, "validation"))
    tuned, _ = baselines.tune_fixed_step(problem, val, reference(problem, val), 5, momentum_grid=baselines.PGD_MOMENTA)
    rows = A.robustness(models, tuned, 5, 1024, 0, True)
    names = ["power iteration", "PGD tuned (nominal)", *models]
    print("| condition | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    wins = {m: 0 for m in models}
    worst = {m: 101.0 for m in names}
    for r in rows:
        cells = r["cells"]
        print(f"| {r['condition']} | " + " | ".join(f"{cells[m]['pct_of_optimum']:.3f}" for m in names) + " |")
        for m in names:
            worst[m] = min(worst[m], cells[m]["pct_of_optimum"])
        for m in models:
            wins[m] += cells[m]["pct_of_optimum"] >= cells["PGD tuned (nominal)"]["pct_of_optimum"] - 0.01
    print("| **worst** | " + " | ".join(f"**{worst[m]:.3f}**" for m in names) + " |")
    print()
    for m in models:
        print(f"{m}: within 0.01 points of tuned PGD-5 or above in {wins[m]} of {len(rows)} conditions; "
              f"learned steps {[round(s, 3) for s in models[m].scalar_parameters()['step']]}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()

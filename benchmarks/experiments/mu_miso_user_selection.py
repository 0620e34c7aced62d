"""Where tuned PGA-5 loses sum rate on MU-MISO, and what starting from RZF with user selection buys.

Part 1 (8 x 4, 10 dB, the cell unfolded PGA-5 missed 99.7% in from plain RZF): the test channels split
into five equal groups by log_condition (log10 tr(G) tr(G^-1) / K^2, G = H H^H); per group, tuned PGA-5 from RZF (% of
the reference in that group, and the group's share of PGA-5's total shortfall), and how often the
reference serves fewer than K users (a user's power below 1e-6 of P).

Part 2 (8 x 4 and 16 x 8 at 10 and 20 dB): tuned PGA-5 and tuned-relaxation WMMSE-5, each re-tuned on
the validation draw for its start, from RZF and from RZF with user selection trying 1, 2 (the
problem's ``rzf_select``) or all K users as the one to switch off; the start alone as well.

The benchmark's test draws and reference (1024 channels per cell, WMMSE to convergence from RZF, MRT
and RZF with user selection, the best per channel).

    .venv/bin/python benchmarks/experiments/mu_miso_user_selection.py     (about 4 min, 2 cores)
"""
import torch

from autounfold.algorithms import reference
from autounfold.algorithms.tuning import MOMENTA, RELAXATIONS, tune_pgd, tune_wmmse
from autounfold.build import build_problem
from autounfold.config import load_config
from autounfold.evaluation import baselines
from autounfold.problems.base import log_condition
from autounfold.problems.mu_miso import rzf_select
from autounfold.seeding import generator

TEST = 1024


def cell(n_tx, users, snr):
    cfg = load_config("preset:mu_miso", [f"problem.n_users={users}", f"problem.channel.n_tx={n_tx}",
                                         f"problem.channel.snr_db=[{snr}, {snr}]", "problem.init=rzf"])
    p = build_problem(cfg.problem)
    test = p.sample(TEST, generator(0, "test", n_tx, users, snr))
    return p, test, reference(p, test)


def with_start(p, start):
    """``p`` with its init replaced by ``start(p, inst)`` (the tuned baselines and solve call problem.init)."""
    p.init = lambda inst, method=None, seed=0: start(p, inst) if method is None else type(p).init(p, inst, method, seed)
    return p


def tuned(p, test, ref):
    """Tuned PGA-5 and tuned-relaxation WMMSE-5 on ``test``, tuned on a validation draw for ``p``'s start."""
    val, vref = baselines.validation_set(p, baselines.TUNE_BATCH)
    prm, _ = tune_pgd(p, val, vref, 5, baselines.PGA_STEP_GRID, MOMENTA)
    omega, _ = tune_wmmse(p, val, vref, 5, RELAXATIONS)
    with torch.no_grad():
        return (p.summarize(baselines.run_tuned(p, test, prm, 5), test, ref)["pct_of_reference"],
                p.summarize(baselines.wmmse(p, test, 5, omega), test, ref)["pct_of_reference"])


def part1():
    p, test, ref = cell(8, 4, 10.0)
    val, vref = baselines.validation_set(p, baselines.TUNE_BATCH)
    prm, _ = tune_pgd(p, val, vref, 5, baselines.PGA_STEP_GRID, MOMENTA)
    with torch.no_grad():
        r = p.objective(baselines.run_tuned(p, test, prm, 5), test).double()
    r_ref = p.objective(ref, test).double()
    lc = log_condition(test.H)
    group = torch.bucketize(lc, torch.quantile(lc, torch.tensor([0.2, 0.4, 0.6, 0.8])))
    served = ((ref.abs() ** 2).sum(-2) > 1e-6 * p.power).sum(-1)
    print(f"\n8 x 4, 10 dB, tuned PGA-5 from RZF ({prm['step']:.4f}, momentum {prm['momentum']}): "
          f"{float(100 * r.mean() / r_ref.mean()):.3f}% overall\n")
    print("| condition group (log_condition: log10 tr(G) tr(G^-1) / K^2) | PGA-5 % of reference | share of PGA-5's shortfall | "
          "reference serves < K users |")
    print("|---|---|---|---|")
    for g in range(5):
        s = group == g
        print(f"| {g + 1}: {float(lc[s].min()):.2f}-{float(lc[s].max()):.2f} | {float(100 * r[s].sum() / r_ref[s].sum()):.3f} | "
              f"{float((r_ref[s] - r[s]).sum() / (r_ref - r).sum()):.2f} | {float((served[s] < 4).float().mean()):.2f} |")


def part2():
    print("\n| cell | start | start % | tuned PGA-5 % | tuned WMMSE-5 % | channels with a user off at the start |")
    print("|---|---|---|---|---|---|")
    for n_tx, users in ((8, 4), (16, 8)):
        for snr in (10.0, 20.0):
            p, test, ref = cell(n_tx, users, snr)
            starts = {"RZF": lambda q, inst: type(q).init(q, inst, "rzf")}
            for c, name in ((1, "1"), (2, "2 (rzf_select)"), (users, f"all {users}")):
                starts[f"RZF, user selection over {name}"] = (
                    lambda q, inst, c=c: rzf_select(inst.H, inst.noise_var, q.power, q.user_weights(inst), candidates=c))
            for label, start in starts.items():
                q = with_start(p, start)
                with torch.no_grad():
                    V0 = q.init(test)
                pga, wmmse = tuned(q, test, ref)
                off = float(((V0.abs() ** 2).sum(-2) == 0).any(-1).float().mean())
                print(f"| {n_tx} x {users}, {snr:g} dB | {label} | {q.summarize(V0, test, ref)['pct_of_reference']:.3f} | "
                      f"{pga:.3f} | {wmmse:.3f} | {off:.3f} |", flush=True)
                baselines._TUNED.clear()          # the tuned constants are cached per problem description


if __name__ == "__main__":
    part1()
    part2()

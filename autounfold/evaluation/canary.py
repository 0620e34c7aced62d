"""Canary comparison of two models on live-like traffic (pure PyTorch; the registry decides with it).

Batches of channels come from one source. Each batch is routed, by a seeded coin with probability
``fraction``, to the challenger, otherwise to the champion, as a canary router would. Every served
batch is also solved by the classical reference (the shadow computation) so each model is scored
by its SE as a percentage of the optimum on the very channels it served; that normalises away the
luck of which channels a model happened to get.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import List

import torch

from ..errors import ConfigError, InputError
from ..seeding import generator


@dataclass
class CanaryReport:
    champion_pct: List[float] = field(default_factory=list)      # per served batch: 100 * mean SE / mean SE_opt
    challenger_pct: List[float] = field(default_factory=list)
    champion_se: List[float] = field(default_factory=list)
    challenger_se: List[float] = field(default_factory=list)

    def summary(self) -> dict:
        def mean(v):
            return statistics.fmean(v) if v else float("nan")
        return {"champion_batches": len(self.champion_pct), "challenger_batches": len(self.challenger_pct),
                "champion_pct": mean(self.champion_pct), "challenger_pct": mean(self.challenger_pct),
                "champion_se": mean(self.champion_se), "challenger_se": mean(self.challenger_se),
                "delta_pct": mean(self.challenger_pct) - mean(self.champion_pct)}


def check_compatible(champion, challenger) -> None:
    a, b = champion.problem, challenger.problem
    if a.name != b.name or getattr(a, "n_tx", None) != getattr(b, "n_tx", None) or \
            getattr(a, "n_rx", None) != getattr(b, "n_rx", None) or \
            getattr(a, "n_streams", None) != getattr(b, "n_streams", None):
        raise InputError(f"champion and challenger solve different problems ({a.describe()} vs {b.describe()})")


def run_canary(champion, challenger, source, batches: int, batch_size: int, fraction: float, seed: int = 0,
               min_challenger_batches: int = 5) -> CanaryReport:
    """Route ``batches`` batches of ``batch_size`` channels from ``source`` (a ChannelSource);
    returns per-batch scores of both models. Raises ConfigError when the canary would see fewer than
    ``min_challenger_batches`` batches (the decision would rest on noise)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"canary fraction must be in (0, 1) (got {fraction})")
    if batches < 1 or batch_size < 1:
        raise ConfigError(f"batches and batch size must be >= 1 (got {batches}, {batch_size})")
    check_compatible(champion, challenger)
    coin = torch.rand(batches, generator=generator(seed, "canary", "route")) < fraction
    if int(coin.sum()) < min_challenger_batches:
        need = math.ceil(min_challenger_batches / fraction)
        raise ConfigError(f"with --canary {fraction} and {batches} batches the challenger would serve only "
                          f"{int(coin.sum())} batches (< {min_challenger_batches}); use about {need} batches or more")
    problem = champion.problem
    report = CanaryReport()
    with torch.no_grad():
        for i in range(batches):
            inst = source.sample(batch_size, generator(seed, "canary", "traffic", i))
            inst = problem.instance(inst.H, inst.noise_var)
            model = challenger if bool(coin[i]) else champion
            se = problem.objective(model.run(inst), inst).double()
            se_opt = problem.objective(problem.reference(inst), inst).double()
            pct = float(100.0 * se.mean() / se_opt.mean())
            if bool(coin[i]):
                report.challenger_pct.append(pct)
                report.challenger_se.append(float(se.mean()))
            else:
                report.champion_pct.append(pct)
                report.champion_se.append(float(se.mean()))
    return report


def decide(summary: dict, tolerance_pct: float) -> str:
    """``promote`` when the challenger is not worse than the champion by more than ``tolerance_pct``
    percentage points of the optimum, else ``rollback``."""
    return "promote" if summary["challenger_pct"] >= summary["champion_pct"] - tolerance_pct else "rollback"

"""Canary comparison of two models on live-like traffic (pure PyTorch; the registry decides with it).

Batches come from one source (a channel source, recorded CSI, or the problem itself). Each batch is
routed, by a seeded coin with probability ``fraction``, to the challenger, otherwise to the champion,
as a canary router would. Every served batch is also solved by the reference (the shadow
computation), so each model is scored by its problem's validation score (``Problem.score``:
beamforming, SE as % of the optimum) on the very batches it served; that normalises away the luck
of which batches a model happened to get.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import List

import torch

from ..algorithms import evaluation_reference
from ..errors import ConfigError, InputError
from ..seeding import generator


@dataclass
class CanaryReport:
    """Per served batch, the problem's score (``Problem.score``; higher is better)."""

    champion_score: List[float] = field(default_factory=list)
    challenger_score: List[float] = field(default_factory=list)

    def summary(self) -> dict:
        def mean(v):
            return statistics.fmean(v) if v else float("nan")
        return {"champion_batches": len(self.champion_score), "challenger_batches": len(self.challenger_score),
                "champion_score": mean(self.champion_score), "challenger_score": mean(self.challenger_score),
                "delta_score": mean(self.challenger_score) - mean(self.champion_score)}


def check_compatible(champion, challenger) -> None:
    """Both models must solve the same problem at the same sizes (``Problem.signature``)."""
    a, b = champion.problem.signature(), challenger.problem.signature()
    if a != b:
        raise InputError(f"champion and challenger solve different problems ({a} vs {b})")


def run_canary(champion, challenger, source, batches: int, batch_size: int, fraction: float, seed: int = 0,
               min_challenger_batches: int = 5) -> CanaryReport:
    """Route ``batches`` batches of ``batch_size`` instances from ``source`` (anything with
    ``sample(batch, seed)``: a ChannelSource, recorded CSI, or the problem); returns per-batch
    scores of both models. Raises ConfigError when the canary would see fewer than
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
            inst = problem.accept(source.sample(batch_size, generator(seed, "canary", "traffic", i)))
            to_challenger = bool(coin[i])
            model = challenger if to_challenger else champion
            score = problem.score(problem.summarize(model.run(inst), inst, evaluation_reference(problem, inst)))
            (report.challenger_score if to_challenger else report.champion_score).append(score)
    return report


def decide(summary: dict, tolerance: float) -> str:
    """``promote`` when the challenger's score is not below the champion's by more than ``tolerance``
    (score units: percentage points of the optimum for beamforming), else ``rollback``."""
    return "promote" if summary["challenger_score"] >= summary["champion_score"] - tolerance else "rollback"

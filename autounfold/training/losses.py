"""Training losses over the unfolded network's iterates."""
from __future__ import annotations

import math
from typing import List

import torch

from ..algorithms import reference


def layer_weights(kind: str, num_layers: int) -> List[float]:
    """end_to_end: only the last layer; multi_iteration: w_k proportional to log(1 + k), k = 1..K."""
    if kind == "multi_iteration":
        w = [math.log(1 + k) for k in range(1, num_layers + 1)]
        return [v / sum(w) for v in w]
    return [0.0] * (num_layers - 1) + [1.0]


def per_sample_loss(problem, x, inst, target: str, reference) -> torch.Tensor:
    """(B,) loss of one iterate.

    unsupervised: -sense * objective (maximised SE, minimised LASSO objective).
    relative: the same divided by the problem's per-sample scale (``loss_scale``), so that samples
        at 30 dB SNR do not drown those at 0 dB (beamforming: the optimum's SE, giving -SE/SE*).
    supervised: the problem's distance to the reference (phase-invariant for precoders, NMSE to
        the true signal for LASSO).
    """
    if target == "supervised":
        return problem.supervised_loss(x, inst, reference)
    loss = -problem.sense * problem.objective(x, inst)
    if target == "relative":
        loss = loss / reference
    return loss


def training_reference(problem, inst, target: str):
    """What ``per_sample_loss`` needs besides the iterate, computed once per batch."""
    if target == "supervised":
        x = problem.supervised_target(inst)
        return x if x is not None else reference(problem, inst)
    if target == "relative":
        return problem.loss_scale(inst)
    return None

"""Drift statistics (pure PyTorch)."""
from __future__ import annotations

import math
from typing import Dict, List

import torch


def transmit_covariance(H: torch.Tensor) -> torch.Tensor:
    """Sample transmit covariance E[h^H h] over the rows h (1 x n_tx) of H (= R_tx for H = H_iid L_tx^H).

    H: (B, n_rx, n_tx) complex. Returns (n_tx, n_tx) complex128 (each receive antenna's row is one sample)."""
    Hd = H.to(torch.complex128)
    rows = Hd.reshape(-1, Hd.shape[-1])                  # (B * n_rx, n_tx)
    return (rows.mH @ rows) / rows.shape[0]


def covariance_shift(R: torch.Tensor, R_base: torch.Tensor) -> float:
    """||R - R_base||_F / ||R_base||_F (the article's trigger: > 0.15 -> full re-search)."""
    return float(torch.linalg.matrix_norm(R - R_base) / torch.linalg.matrix_norm(R_base).clamp_min(1e-30))


def estimate_angular_spread(R: torch.Tensor, antenna_spacing: float = 0.5) -> float:
    """Angular spread (degrees) of the exponential-correlation model that fits R.

    rho is the mean normalised correlation of neighbouring antennas, Re(R[i, i+1]) / sqrt(R[i,i] R[i+1,i+1]);
    the model's rho = exp(-2 (pi d sin(AS))^2) is then inverted. Used to point a re-search at the
    channel the monitor sees; exact for the correlated Rayleigh model, an approximation otherwise."""
    d = torch.diagonal(R).real.clamp_min(1e-30)
    off = torch.diagonal(R, offset=1).real / torch.sqrt(d[:-1] * d[1:])
    rho = float(off.mean().clamp(1e-12, 1 - 1e-12)) if off.numel() else 1e-12
    s = math.sqrt(-math.log(rho) / 2.0) / (math.pi * antenna_spacing)
    return math.degrees(math.asin(min(max(s, 0.0), 1.0)))


def parameter_drift(base: Dict[str, List[float]], current: Dict[str, List[float]]) -> float:
    """Largest relative change of a per-layer learned scalar (step size, momentum, threshold)
    between two snapshots of a model (the article's online fine-tuning alarm: > 0.20)."""
    worst = 0.0
    for name, values in base.items():
        for a, b in zip(values, current.get(name, values)):
            worst = max(worst, abs(b - a) / max(abs(a), 1e-12))
    return worst


def gradient_norm(model, inst) -> float:
    """Norm of the gradient of the mean (negative) objective w.r.t. the model's parameters on ``inst``:
    near a trained optimum it is small; it grows when the channels the model sees change."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        x = model.run(inst)
        loss = -(model.problem.sense * model.problem.objective(x, inst)).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return float(torch.sqrt(sum((g.abs() ** 2).sum() for g in grads if g is not None)))

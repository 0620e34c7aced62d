"""Drift statistics of the monitor (``autounfold monitor``).

Why the window statistics run through :mod:`autounfold.gpu.kernels` and not torch: the monitor
computes them for every window of recorded CSI (thousands of channels per window), and they are
plain array math with no autograd -- the sample transmit covariance, its relative Frobenius change
against the baseline and the neighbouring-antenna correlation behind the angular-spread estimate.
That is what CuPy is for: on a GPU node a CUDA tensor is handed to CuPy as a DLPack view of its own
device memory (no copy, no host round trip) and the CuPy kernels run there; on a CPU the NumPy twin
runs the very same kernel code on a NumPy view of the tensor (that is how they are tested). The
functions here keep torch tensors at their boundary, so callers do not see the array module.
CuPy is imported lazily, only when a CUDA tensor arrives (never at import time).

``gradient_norm`` needs autograd and stays in torch; ``parameter_drift`` is plain Python.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch

from ..gpu import kernels


def transmit_covariance(H: torch.Tensor) -> torch.Tensor:
    """Sample transmit covariance E[h^H h] over the rows h (1 x n_tx) of H (= R_tx for H = H_iid L_tx^H).

    H: (B, n_rx, n_tx) complex. Returns (n_tx, n_tx) complex128 (each receive antenna's row is one sample),
    on H's device (computed by the NumPy kernel for a CPU tensor, the CuPy kernel for a CUDA tensor)."""
    with kernels.device_scope(H):
        R = kernels.to_torch(kernels.transmit_covariance(kernels.from_torch(H)))
    return R.to(H.device)


def monitored_covariance(problem, inst) -> torch.Tensor:
    """The second moment the monitor watches for ``problem`` on the instance batch ``inst``: E[r^H r] over
    the rows r of ``problem.monitor_rows(inst)`` (the transmit covariance of H by default; detection:
    the per-user receive-array coherence). Returns (d, d) complex128 on the rows' device."""
    return transmit_covariance(problem.monitor_rows(inst))


def covariance_shift(R: torch.Tensor, R_base: torch.Tensor) -> float:
    """||R - R_base||_F / ||R_base||_F (the article's trigger: > 0.15 -> full re-search).

    R, R_base: (n_tx, n_tx) complex (R_base is brought to R's device). Returns a float."""
    with kernels.device_scope(R):
        return kernels.covariance_shift(kernels.from_torch(R), kernels.from_torch(R_base.to(R.device)))


def estimate_angular_spread(R: torch.Tensor, antenna_spacing: float = 0.5) -> float:
    """Angular spread (degrees) of the exponential-correlation model that fits R.

    rho is the mean normalised correlation of neighbouring antennas, Re(R[i, i+1]) / sqrt(R[i,i] R[i+1,i+1]);
    the model's rho = exp(-2 (pi d sin(AS))^2) is then inverted. Used to point a re-search at the
    channel the monitor sees; exact for the correlated Rayleigh model, an approximation otherwise.
    R: (n_tx, n_tx) complex; antenna_spacing in wavelengths. Returns degrees in [0, 90]."""
    with kernels.device_scope(R):
        rho = kernels.neighbour_correlation(kernels.from_torch(R))
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
    """Norm of the gradient of the problem's monitor loss (``Problem.monitor_loss``: the negated objective,
    detection's cross-entropy of the sent symbols) w.r.t. the model's parameters on ``inst``: near a
    trained optimum it is small; it grows when the channels the model sees change."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        x = model.run(inst)
        loss = model.problem.monitor_loss(x, inst).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return float(torch.sqrt(sum((g.abs() ** 2).sum() for g in grads if g is not None)))

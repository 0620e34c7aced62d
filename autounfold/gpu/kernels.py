"""Projection and prox kernels written once for NumPy and CuPy arrays (``xp`` = the array module).

Exchange with torch goes through DLPack: ``from_torch`` gives a NumPy view of a CPU tensor or a
CuPy view of a CUDA tensor, ``to_torch`` the reverse; no copy and no host round trip either way.
On a machine without a GPU the same kernels run through NumPy, which is how they are tested.

These are inference kernels (no autograd). Training keeps torch's own ops, whose backward
includes the projection's Jacobian when the power constraint is active.
"""
from __future__ import annotations

import numpy as np


def array_module(x):
    """``cupy`` for a CuPy array, else ``numpy``."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy
        return cupy
    return np


def from_torch(t):
    """A NumPy (CPU) or CuPy (CUDA) array sharing memory with the torch tensor ``t``."""
    if t.is_cuda:
        import cupy
        return cupy.from_dlpack(t.detach())
    return np.from_dlpack(t.detach().resolve_conj())


def to_torch(x):
    """A torch tensor sharing memory with the NumPy / CuPy array ``x``."""
    import torch
    return torch.from_dlpack(x)


def project_total_power(W, power):
    """Scale each precoder onto the ball ``||W_b||_F^2 <= P_b``.

    W: (B, n_tx, S) complex; power: scalar or (B,) real. Returns an array of W's shape and dtype.
    Precoders inside the ball are returned unchanged."""
    xp = array_module(W)
    p = xp.asarray(power, dtype=W.real.dtype).reshape(-1, *([1] * (W.ndim - 1)))
    norm2 = xp.sum(xp.abs(W) ** 2, axis=tuple(range(1, W.ndim)), keepdims=True)
    scale = xp.where(norm2 > p, xp.sqrt(p / xp.maximum(norm2, xp.finfo(norm2.dtype).tiny)), 1)
    return (W * scale).astype(W.dtype, copy=False)


def project_per_antenna(W, power):
    """Per-antenna constraint: each row (antenna) gets at most ``P / n_tx``.

    W: (B, n_tx, S) complex; power: scalar or (B,) real total power."""
    xp = array_module(W)
    n_tx = W.shape[1]
    p = xp.asarray(power, dtype=W.real.dtype).reshape(-1, 1, 1) / n_tx
    row2 = xp.sum(xp.abs(W) ** 2, axis=2, keepdims=True)
    scale = xp.where(row2 > p, xp.sqrt(p / xp.maximum(row2, xp.finfo(row2.dtype).tiny)), 1)
    return (W * scale).astype(W.dtype, copy=False)


def soft_threshold(x, tau):
    """``sign(x) * max(|x| - tau, 0)`` for real x: (B, n) and tau scalar or broadcastable."""
    xp = array_module(x)
    return (xp.sign(x) * xp.maximum(xp.abs(x) - tau, 0)).astype(x.dtype, copy=False)

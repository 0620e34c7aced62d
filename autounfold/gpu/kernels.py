"""Window-statistic kernels of the drift monitor, written once for NumPy and CuPy (``xp`` = the array module).

Product path: ``autounfold monitor`` computes, for every window of recorded CSI (thousands of channels
per window), the sample transmit covariance, its relative change against the baseline and the
neighbouring-antenna correlation behind the angular-spread estimate
(:mod:`autounfold.monitoring.drift`). That is pure array math without autograd, so it runs here:
in CuPy on a GPU node, on the tensor's own device memory, and in NumPy (the CPU twin, which is how
it is tested) everywhere else.

Exchange with torch goes through DLPack: ``from_torch`` gives a NumPy view of a CPU tensor or a
CuPy view of a CUDA tensor, ``to_torch`` the reverse; no copy and no host round trip either way
(the one exception: a tensor with torch's lazy conjugate / negative bit is materialised first,
since DLPack cannot describe those bits). CuPy is imported lazily, only for CUDA tensors / CuPy arrays.
"""
from __future__ import annotations

import contextlib

import numpy as np


def array_module(x):
    """The array module of ``x``: ``cupy`` for a CuPy array, else ``numpy``.

    x: any array (NumPy, CuPy) or scalar. Returns the module (``numpy`` or ``cupy``); CuPy is
    imported only when ``x`` is a CuPy array, so NumPy input never needs (or touches) a GPU."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy
    return np


def from_torch(t):
    """An array sharing memory with the torch tensor ``t`` (zero copy through DLPack).

    t: torch tensor of any shape and dtype on the CPU or a CUDA device (autograd is detached).
    Returns a ``numpy.ndarray`` (CPU tensor) or ``cupy.ndarray`` (CUDA tensor, on the same device) of
    the same shape, dtype and strides. A tensor with the lazy conjugate (``t.conj()``, ``t.mH``) or
    negative bit is materialised first (``resolve_conj`` / ``resolve_neg``), because DLPack has no
    such bits; for those the result is a copy."""
    t = t.detach().resolve_conj().resolve_neg()
    if t.is_cuda:
        import cupy
        return cupy.from_dlpack(t)
    if t.device.type != "cpu":
        raise ValueError(f"from_torch: tensors on {t.device} have no NumPy/CuPy view (CPU or CUDA only)")
    return np.from_dlpack(t)


def to_torch(x):
    """A torch tensor sharing memory with the NumPy / CuPy array ``x`` (zero copy through DLPack).

    x: ``numpy.ndarray`` or ``cupy.ndarray`` of any shape and dtype. Returns a tensor of the same
    shape and dtype, on the CPU (NumPy) or on the array's CUDA device (CuPy)."""
    import torch
    return torch.from_dlpack(x)


def device_scope(t):
    """Context in which CuPy kernels on ``t``'s memory run: the tensor's CUDA device for a CUDA
    tensor (a tensor on ``cuda:1`` is computed on device 1), nothing for a CPU tensor.

    t: torch tensor. Returns a context manager."""
    if t.is_cuda:
        import cupy
        return cupy.cuda.Device(t.device.index if t.device.index is not None else 0)
    return contextlib.nullcontext()


def transmit_covariance(H):
    """Sample transmit covariance ``E[h^H h]`` over the rows ``h`` (1 x n_tx) of H.

    H: (..., n_tx) NumPy / CuPy array, usually (B, n_rx, n_tx) complex64 (each receive antenna's
    row is one sample); any real or complex dtype, any strides.
    Returns (n_tx, n_tx) complex128 of the same array module: ``rows^H rows / rows.shape[0]`` with
    ``rows = H.reshape(-1, n_tx)`` cast to complex128 (Hermitian; ``R_tx`` for ``H = H_iid L_tx^H``)."""
    xp = array_module(H)
    rows = xp.asarray(H, dtype=xp.complex128).reshape(-1, H.shape[-1])   # (B * n_rx, n_tx)
    return (rows.conj().T @ rows) / rows.shape[0]


def covariance_shift(R, R_base) -> float:
    """Relative Frobenius change ``||R - R_base||_F / ||R_base||_F`` (denominator clamped at 1e-30).

    R, R_base: (n, n) NumPy / CuPy arrays of one module, real or complex (usually complex128).
    Returns a Python float (>= 0; 0 for identical matrices)."""
    xp = array_module(R)
    num = xp.linalg.norm(R - R_base)
    den = xp.maximum(xp.linalg.norm(R_base), 1e-30)
    return float(num / den)


def neighbour_correlation(R) -> float:
    """Mean normalised correlation of neighbouring antennas, ``Re(R[i, i+1]) / sqrt(R[i,i] R[i+1,i+1])``.

    R: (n, n) NumPy / CuPy array, real or complex (a covariance matrix; the real part of its
    diagonal is clamped at 1e-30). Returns a Python float clamped to [1e-12, 1 - 1e-12]
    (1e-12 for n < 2, where there are no neighbours)."""
    xp = array_module(R)
    d = xp.maximum(xp.diagonal(R).real, 1e-30)
    off = xp.diagonal(R, offset=1).real / xp.sqrt(d[:-1] * d[1:])
    if off.size == 0:
        return 1e-12
    return min(max(float(off.mean()), 1e-12), 1.0 - 1e-12)

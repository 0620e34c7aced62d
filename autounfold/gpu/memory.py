"""Cap the GPU memory of one trial to its share of the device, before anything is allocated.

Ray gives a trial ``gpu: 0.25`` as a scheduling promise only; nothing stops it from taking the
whole device. ``apply_memory_caps(0.25)`` makes the promise hold for both allocators a trial can use:

* PyTorch: ``torch.cuda.set_per_process_memory_fraction(fraction)`` (allocations beyond it raise
  an out-of-memory error in this trial instead of starving its neighbours), and
  ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` set before CUDA is initialised, which keeps
  fragmentation from eating the share.
* CuPy: the default memory pool's limit (``MemoryPool.set_limit(fraction=...)``).

On a machine without CUDA this is a no-op that says so in its return value.
"""
from __future__ import annotations

import os
from typing import Optional


def apply_memory_caps(gpu_fraction: float, torch_module=None, cupy_module=None) -> dict:
    """Apply the caps; returns what was done: ``{"torch": fraction|None, "cupy": fraction|None, "reason": str}``.

    ``gpu_fraction`` is the trial's GPU request (0 = CPU trial; >= 1 = whole devices, no cap).
    ``torch_module`` / ``cupy_module`` exist for tests; by default the real modules are used.
    """
    if not 0 <= gpu_fraction:
        raise ValueError(f"gpu_fraction must be >= 0 (got {gpu_fraction})")
    done = {"torch": None, "cupy": None, "reason": ""}
    if gpu_fraction == 0:
        done["reason"] = "CPU trial: no GPU share to cap"
        return done
    if gpu_fraction >= 1:
        done["reason"] = "whole GPU(s): no cap"
        return done
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    torch = torch_module
    if torch is None:
        import torch
    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(gpu_fraction)
        done["torch"] = gpu_fraction
    cupy = cupy_module if cupy_module is not None else _import_cupy()
    if cupy is not None and _cupy_has_gpu(cupy):
        cupy.get_default_memory_pool().set_limit(fraction=gpu_fraction)
        done["cupy"] = gpu_fraction
    if done["torch"] is None and done["cupy"] is None:
        done["reason"] = "no CUDA device visible to this process"
    return done


def _import_cupy() -> Optional[object]:
    try:
        import cupy
    except (ImportError, OSError, RuntimeError):  # not installed, or without a usable CUDA runtime
        return None
    return cupy


def _cupy_has_gpu(cupy) -> bool:
    try:
        return bool(cupy.cuda.is_available())
    except (RuntimeError, OSError):          # CUDARuntimeError is a RuntimeError
        return False

"""The GPU path: memory caps for a trial's share of a GPU, and NumPy/CuPy twins of the
projection / prox kernels exchanged with torch through DLPack. Imports CuPy lazily."""
from .kernels import array_module, from_torch, project_per_antenna, project_total_power, soft_threshold, to_torch
from .memory import apply_memory_caps

__all__ = ["apply_memory_caps", "array_module", "from_torch", "project_per_antenna", "project_total_power",
           "soft_threshold", "to_torch"]

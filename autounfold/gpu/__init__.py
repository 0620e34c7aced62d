"""The GPU path: memory caps for a trial's share of a GPU, and the drift monitor's window-statistic
kernels written once for NumPy and CuPy, exchanged with torch through DLPack. Imports CuPy lazily."""
from .kernels import (array_module, covariance_shift, device_scope, from_torch, neighbour_correlation, to_torch,
                      transmit_covariance)
from .memory import apply_memory_caps

__all__ = ["apply_memory_caps", "array_module", "covariance_shift", "device_scope", "from_torch",
           "neighbour_correlation", "to_torch", "transmit_covariance"]

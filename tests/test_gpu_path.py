"""The GPU path tested through its CPU twin: NumPy kernels == torch ops, DLPack views share memory,
memory caps call the right allocator settings (with stand-in modules) and are a no-op on CPU."""
import types

import numpy as np
import pytest
import torch

from autounfold.gpu import apply_memory_caps, from_torch, project_per_antenna, project_total_power, soft_threshold, to_torch
from autounfold.problems import BeamformingProblem, LassoProblem
from autounfold.channels import CorrelatedRayleigh


@pytest.mark.parametrize("constraint", ["total", "per_antenna"])
def test_projection_kernels_match_the_problem(constraint):
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4), constraint=constraint)
    Z = 3 * torch.randn(16, 8, 1, dtype=torch.complex64)
    Z[0] *= 1e-3                                      # one precoder inside the ball: unchanged
    expected = problem.prox(Z, None)
    kernel = project_total_power if constraint == "total" else project_per_antenna
    got = kernel(from_torch(Z), problem.power)
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, expected.numpy(), rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(got[0], Z[0].numpy())


def test_soft_threshold_matches_lasso_prox():
    problem = LassoProblem(n=20, m=10)
    z = torch.randn(6, 20)
    np.testing.assert_allclose(soft_threshold(from_torch(z), 0.3), problem.prox(z, None, 0.3).numpy(), rtol=1e-6)


def test_dlpack_exchange_is_zero_copy():
    t = torch.randn(4, 8, 1, dtype=torch.complex64)
    a = from_torch(t)
    assert isinstance(a, np.ndarray) and a.ctypes.data == t.data_ptr()
    back = to_torch(a)
    assert back.data_ptr() == t.data_ptr() and back.dtype == torch.complex64
    a[0, 0, 0] = 7 + 1j                                # writes through: the same memory
    assert t[0, 0, 0] == 7 + 1j


def test_memory_caps_noop_on_cpu_trials_and_without_cuda():
    assert apply_memory_caps(0.0) == {"torch": None, "cupy": None, "reason": "CPU trial: no GPU share to cap"}
    assert apply_memory_caps(1.0)["reason"] == "whole GPU(s): no cap"
    if not torch.cuda.is_available():
        done = apply_memory_caps(0.25)
        assert done["torch"] is None and "no CUDA device" in done["reason"]
    with pytest.raises(ValueError):
        apply_memory_caps(-0.5)


def test_memory_caps_set_both_allocators_on_a_gpu():
    calls = {}
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, set_per_process_memory_fraction=lambda f: calls.setdefault("torch", f)))
    pool = types.SimpleNamespace(set_limit=lambda fraction: calls.setdefault("cupy", fraction))
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True),
                                      get_default_memory_pool=lambda: pool)
    done = apply_memory_caps(0.25, torch_module=fake_torch, cupy_module=fake_cupy)
    assert calls == {"torch": 0.25, "cupy": 0.25}
    assert done["torch"] == 0.25 and done["cupy"] == 0.25

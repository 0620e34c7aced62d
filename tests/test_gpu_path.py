"""The GPU path tested through its CPU twin: the drift monitor's NumPy kernels == independent
float64/complex128 computations (also on conj-view and non-contiguous tensors), DLPack views share
memory, CuPy is only touched for CuPy arrays / CUDA tensors, memory caps call the right allocator
settings (with stand-in modules) and are a no-op on CPU."""
import ast
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import autounfold.monitoring.drift as drift
from autounfold.gpu import (apply_memory_caps, array_module, covariance_shift, from_torch, neighbour_correlation,
                            to_torch, transmit_covariance)


def _random_H(shape=(32, 4, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def _einsum_covariance(H_np):
    """Independent reference: sum over all leading axes of conj(h_i) h_j, complex128."""
    H = np.asarray(H_np, dtype=np.complex128)
    rows = H.shape[0] * H.shape[1]
    return np.einsum("bri,brj->ij", H.conj(), H) / rows


@pytest.mark.parametrize("variant", ["plain", "conj_view", "non_contiguous", "permuted"])
def test_transmit_covariance_kernel_matches_einsum(variant):
    base = _random_H()
    if variant == "plain":
        t, ref = base, base.numpy()
    elif variant == "conj_view":                       # lazy conjugate bit: not a plain memory view
        t, ref = base.conj(), np.conj(base.numpy())
        assert t.is_conj()
    elif variant == "non_contiguous":                  # strided view
        t, ref = base[::2, 1:, :], base.numpy()[::2, 1:, :]
        assert not t.is_contiguous()
    else:                                              # rows in another order: same covariance
        t, ref = base.permute(1, 0, 2), base.numpy().transpose(1, 0, 2)
        assert not t.is_contiguous()
    R = transmit_covariance(from_torch(t))
    assert isinstance(R, np.ndarray) and R.dtype == np.complex128 and R.shape == (8, 8)
    expected = _einsum_covariance(ref)
    np.testing.assert_allclose(R, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(R, R.conj().T, rtol=0, atol=1e-13)          # Hermitian
    if variant == "conj_view":                                              # really conjugated
        assert np.abs(R - _einsum_covariance(base.numpy())).max() > 1e-3


def test_transmit_covariance_kernel_casts_complex64_to_complex128():
    H = _random_H((16, 2, 4)).to(torch.complex64)
    R = transmit_covariance(from_torch(H))
    assert R.dtype == np.complex128
    np.testing.assert_allclose(R, _einsum_covariance(H.numpy().astype(np.complex128)), rtol=1e-12, atol=1e-13)


def test_covariance_shift_kernel_matches_frobenius_formula():
    A = transmit_covariance(from_torch(_random_H(seed=1)))
    B = transmit_covariance(from_torch(_random_H(seed=2)))
    expected = np.sqrt(np.sum(np.abs(A - B) ** 2)) / np.sqrt(np.sum(np.abs(B) ** 2))
    got = covariance_shift(A, B)
    assert isinstance(got, float) and got == pytest.approx(expected, rel=1e-12) and got > 0.05
    assert covariance_shift(B, B) == 0.0
    assert covariance_shift(2 * B, B) == pytest.approx(1.0, rel=1e-12)
    assert np.isfinite(covariance_shift(B, np.zeros_like(B)))                 # denominator clamped


def test_neighbour_correlation_kernel():
    R = transmit_covariance(from_torch(_random_H((64, 4, 6), seed=3)))
    d = R.diagonal().real
    expected = np.mean([R[i, i + 1].real / np.sqrt(d[i] * d[i + 1]) for i in range(5)])
    got = neighbour_correlation(R)
    assert isinstance(got, float)
    if 1e-12 < expected < 1 - 1e-12:
        assert got == pytest.approx(expected, rel=1e-12)
    idx = np.arange(10)
    assert neighbour_correlation(0.7 ** np.abs(idx[:, None] - idx[None, :]).astype(complex)) == pytest.approx(0.7)
    assert neighbour_correlation(np.eye(4, dtype=complex)) == 1e-12            # clamped below
    assert neighbour_correlation(-(0.5 ** np.abs(idx[:, None] - idx[None, :]))) == 1e-12
    assert neighbour_correlation(np.ones((4, 4), dtype=complex)) == 1 - 1e-12  # clamped above
    assert neighbour_correlation(np.ones((1, 1), dtype=complex)) == 1e-12      # no neighbours


def test_dlpack_exchange_is_zero_copy():
    t = torch.randn(4, 8, 1, dtype=torch.complex64)
    a = from_torch(t)
    assert isinstance(a, np.ndarray) and a.ctypes.data == t.data_ptr()
    back = to_torch(a)
    assert back.data_ptr() == t.data_ptr() and back.dtype == torch.complex64
    a[0, 0, 0] = 7 + 1j                                # writes through: the same memory
    assert t[0, 0, 0] == 7 + 1j


def test_dlpack_view_of_a_strided_tensor_keeps_its_strides():
    t = torch.randn(6, 5, dtype=torch.complex128)
    view = t[::2, 1:]
    a = from_torch(view)
    assert a.ctypes.data == view.data_ptr() and a.shape == (3, 4) and not a.flags.c_contiguous
    a[1, 2] = -3 + 2j
    assert t[2, 3] == -3 + 2j
    np.testing.assert_array_equal(from_torch(t.conj()), np.conj(t.numpy()))   # conj bit resolved


def test_array_module_dispatches_on_the_array_type(monkeypatch):
    """Without any CuPy installed: NumPy input never imports cupy; a cupy-typed array gets the cupy module."""
    import sys
    fake = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert array_module(np.zeros(3)) is np
    assert array_module(np.complex128(1j)) is np
    assert array_module(type("ndarray", (), {"__module__": "cupy._core.core"})()) is fake
    assert array_module(type("ndarray", (), {"__module__": "cupyx"})()) is np          # not cupy's own type
    monkeypatch.setitem(sys.modules, "cupy", None)                                    # cupy unimportable
    assert array_module(np.zeros(3)) is np
    assert isinstance(from_torch(torch.zeros(3)), np.ndarray)
    R = drift.transmit_covariance(_random_H((4, 2, 3)))                                # CPU path needs no cupy
    assert R.device.type == "cpu" and R.dtype == torch.complex128


def test_array_module_without_a_gpu():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.is_available():
        pytest.skip("this check is for machines where CuPy imports but has no GPU")
    assert array_module(np.zeros(3)) is np
    assert array_module(3.0) is np
    fake_cupy_array = type("ndarray", (), {"__module__": "cupy._core.core"})()
    assert array_module(fake_cupy_array) is cupy                # dispatch on the array's module only
    assert isinstance(from_torch(torch.zeros(3)), np.ndarray)   # CPU tensors never go to CuPy
    assert drift.transmit_covariance(_random_H((4, 2, 3))).device.type == "cpu"


def test_drift_module_does_not_import_cupy_at_module_level():
    tree = ast.parse(Path(drift.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n.split(".")[0] == "cupy" for n in names), names


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_run_through_cupy_on_their_device():
    cupy = pytest.importorskip("cupy")
    H = _random_H((64, 4, 8)).cuda()
    a = from_torch(H)
    assert isinstance(a, cupy.ndarray) and a.data.ptr == H.data_ptr()
    R = drift.transmit_covariance(H)
    assert R.device == H.device and R.dtype == torch.complex128
    torch.testing.assert_close(R.cpu(), drift.transmit_covariance(H.cpu()), rtol=1e-12, atol=1e-12)
    assert drift.covariance_shift(R, R) == 0.0
    assert drift.estimate_angular_spread(R) == pytest.approx(drift.estimate_angular_spread(R.cpu()), abs=1e-9)


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

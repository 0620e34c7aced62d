"""The drift monitor's statistics (torch tensors in and out) computed through the NumPy/CuPy
kernels: same results as the direct torch formulas, angular spread recovered on correlated Rayleigh."""
import math

import pytest
import torch

from autounfold.channels.rayleigh import CorrelatedRayleigh
from autounfold.monitoring.drift import covariance_shift, estimate_angular_spread, transmit_covariance


def _torch_covariance(H):
    rows = H.to(torch.complex128).reshape(-1, H.shape[-1])
    return (rows.mH @ rows) / rows.shape[0]


def _torch_angular_spread(R, antenna_spacing=0.5):
    """The pure-torch formula the monitor used before the kernels (independent reference)."""
    d = torch.diagonal(R).real.clamp_min(1e-30)
    off = torch.diagonal(R, offset=1).real / torch.sqrt(d[:-1] * d[1:])
    rho = float(off.mean().clamp(1e-12, 1 - 1e-12))
    s = math.sqrt(-math.log(rho) / 2.0) / (math.pi * antenna_spacing)
    return math.degrees(math.asin(min(max(s, 0.0), 1.0)))


@pytest.fixture(scope="module")
def covariances():
    return {AS: transmit_covariance(CorrelatedRayleigh(n_tx=64, n_rx=16, angular_spread_deg=AS).sample(2048, 7).H)
            for AS in (5, 15, 40)}


@pytest.mark.parametrize("variant", ["plain", "conj_view", "non_contiguous"])
def test_transmit_covariance_equals_the_torch_formula(variant):
    H = CorrelatedRayleigh(n_tx=16, n_rx=4, angular_spread_deg=15).sample(256, 0).H
    if variant == "conj_view":
        H = H.conj()
    elif variant == "non_contiguous":
        H = H[::2, :, 1:]
    R = transmit_covariance(H)
    expected = _torch_covariance(H)
    assert isinstance(R, torch.Tensor) and R.dtype == torch.complex128 and R.device == H.device
    assert R.shape == (H.shape[-1], H.shape[-1])
    assert float(torch.linalg.matrix_norm(R - expected) / torch.linalg.matrix_norm(expected)) < 1e-12


def test_covariance_shift_equals_the_torch_formula(covariances):
    R, R_base = covariances[40], covariances[15]
    expected = float(torch.linalg.matrix_norm(R - R_base) / torch.linalg.matrix_norm(R_base))
    assert covariance_shift(R, R_base) == pytest.approx(expected, rel=1e-12)
    assert covariance_shift(R_base, R_base) == 0.0
    assert covariance_shift(R, R_base) > 0.15


@pytest.mark.parametrize("AS", [5, 15, 40])
def test_angular_spread_recovered(covariances, AS):
    R = covariances[AS]
    est = estimate_angular_spread(R)
    assert est == pytest.approx(AS, abs=1.5)
    assert est == pytest.approx(_torch_angular_spread(R), abs=1e-9)
    assert estimate_angular_spread(R, antenna_spacing=1.0) == pytest.approx(_torch_angular_spread(R, 1.0), abs=1e-9)

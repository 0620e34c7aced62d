import math

import pytest
import torch

from autounfold.channels import CorrelatedRayleigh, IIDRayleigh, check_channel, correlation_coefficient
from autounfold.errors import ConfigError, InputError
from autounfold.seeding import derive_seed, generator


def test_shapes_dtypes_and_noise_variance():
    src = CorrelatedRayleigh(n_tx=64, n_rx=16, snr_db=(0.0, 30.0), power=2.0)
    b = src.sample(32, seed=0)
    assert b.H.shape == (32, 16, 64) and b.H.dtype == torch.complex64
    assert b.noise_var.shape == (32,) and b.noise_var.dtype == torch.float32
    assert ((b.snr_db >= 0) & (b.snr_db <= 30)).all()
    torch.testing.assert_close(b.noise_var, 2.0 / 10 ** (b.snr_db / 10))


def test_same_seed_is_bit_identical_and_streams_differ():
    src = CorrelatedRayleigh(n_tx=8, n_rx=4)
    a, b = src.sample(16, seed=5), src.sample(16, seed=5)
    assert torch.equal(a.H, b.H) and torch.equal(a.noise_var, b.noise_var)
    # the streams trials really use: generator(search seed, "trial:<id>", phase, step) and "validation"
    train0 = src.sample(16, generator(3, "trial:t0", 0, 0))
    train1 = src.sample(16, generator(3, "trial:t1", 0, 0))
    val = src.sample(16, generator(3, "validation"))
    assert not torch.equal(train0.H, train1.H) and not torch.equal(train0.H, val.H)
    again = src.sample(16, generator(3, "trial:t1", 0, 0))
    assert torch.equal(train1.H, again.H)
    assert len({derive_seed(3, "trial:t0", 0, i) for i in range(1000)}) == 1000


def test_transmit_covariance_matches_exponential_model():
    src = CorrelatedRayleigh(n_tx=6, n_rx=4, angular_spread_deg=15.0)
    H = src.sample(20000, seed=1).H
    rows = H.reshape(-1, 6)
    cov = (rows.T @ rows.conj()) / rows.shape[0]          # E[h^T h^*] = R_tx^T (R real symmetric)
    rho = correlation_coefficient(15.0, 0.5)
    idx = torch.arange(6)
    R = rho ** (idx[:, None] - idx[None, :]).abs().double()
    assert abs(rho - math.exp(-2 * (math.pi * 0.5 * math.sin(math.radians(15))) ** 2)) < 1e-12
    torch.testing.assert_close(cov.real.double(), R, atol=0.03, rtol=0)
    assert cov.imag.abs().max() < 0.03


def test_tx_rho_sets_the_transmit_correlation_and_zero_spread_is_rank_one():
    # zero angular spread: every column of H is the same up to a scale (rank one) ...
    H = CorrelatedRayleigh(n_tx=4, n_rx=6, angular_spread_deg=0.0).sample(64, seed=3).H
    assert (torch.linalg.svdvals(H)[:, 1] / torch.linalg.svdvals(H)[:, 0]).max() < 1e-3
    # ... tx_rho overrides the spread: 0 gives independent columns, with the receive correlation kept
    src = CorrelatedRayleigh(n_tx=4, n_rx=6, angular_spread_deg=0.0, tx_rho=0.0, rx_rho=0.5)
    assert src.rho == 0.0 and src.describe()["tx_rho"] == 0.0
    H = src.sample(20000, seed=4).H
    cols = H.transpose(-1, -2).reshape(-1, 6)
    rows = H.reshape(-1, 4)
    tx_cov = (rows.T @ rows.conj()) / rows.shape[0]
    rx_cov = (cols.T @ cols.conj()) / cols.shape[0]
    idx = torch.arange(4)
    torch.testing.assert_close(tx_cov.real.double(), torch.eye(4, dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(rx_cov.real[0, 1].double(), torch.tensor(0.5, dtype=torch.float64), atol=0.03, rtol=0)
    R = 0.3 ** (idx[:, None] - idx[None, :]).abs().double()
    rows = CorrelatedRayleigh(n_tx=4, n_rx=6, tx_rho=0.3).sample(20000, seed=5).H.reshape(-1, 4)
    torch.testing.assert_close(((rows.T @ rows.conj()) / rows.shape[0]).real.double(), R, atol=0.03, rtol=0)


def test_spread_scenarios_and_drift_windows_are_not_overridden_by_a_direct_tx_rho():
    from autounfold.build import build_problem
    from autounfold.config import load_config
    from autounfold.evaluation.evaluate import scenario_config
    cfg = load_config("preset:auto_pgd", ["problem.channel.tx_rho=0.3"])
    assert build_problem(cfg.problem).source.rho == 0.3
    moved = build_problem(scenario_config(cfg, "as40").problem).source
    assert moved.rho == correlation_coefficient(40.0, 0.5) and moved.tx_rho is None
    mu = load_config("preset:mu_miso", ["problem.channel.model=correlated_rayleigh", "problem.channel.tx_rho=0.3"])
    assert build_problem(scenario_config(mu, "correlated").problem).source.rho == correlation_coefficient(15.0, 0.5)
    # the monitor's angular-spread drift: window 0 at zero spread is rank one whatever tx_rho the model had
    from autounfold.build import build_model
    from autounfold.monitoring.monitor import drifting_windows
    windows = list(drifting_windows(build_model(cfg), {"kind": "angular_spread", "from": 0.0, "to": 40.0, "windows": 2}, 16))
    sv = torch.linalg.svdvals(windows[0].H)
    assert (sv[:, 1] / sv[:, 0]).max() < 1e-3


def test_iid_entries_have_unit_variance():
    H = IIDRayleigh(n_tx=16, n_rx=8).sample(2000, seed=2).H
    assert abs(H.abs().square().mean().item() - 1.0) < 0.02


@pytest.mark.parametrize("kwargs, needle", [
    ({"snr_db": (10.0, 0.0)}, "snr_db"),
    ({"angular_spread_deg": 120.0}, "angular_spread_deg"),
    ({"rx_rho": 1.0}, "rx_rho"),
    ({"tx_rho": -0.1}, "tx_rho"),
    ({"n_tx": 0}, "n_tx"),
])
def test_bad_source_settings_are_named(kwargs, needle):
    args = {"n_tx": 8, "n_rx": 4, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        CorrelatedRayleigh(**args)


def test_check_channel_rejects_bad_inputs():
    H = torch.randn(4, 2, 8, dtype=torch.complex64)
    nv = torch.ones(4)
    check_channel(H, nv, 8)
    with pytest.raises(InputError, match="complex"):
        check_channel(H.real, nv)
    with pytest.raises(InputError, match="shape"):
        check_channel(H[0], nv)
    with pytest.raises(InputError, match="n_tx=8"):
        check_channel(H, nv, 16)
    bad = H.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        check_channel(bad, nv)
    with pytest.raises(InputError, match="noise_var"):
        check_channel(H, -nv)
    with pytest.raises(InputError, match="noise_var"):
        check_channel(H, torch.ones(3))

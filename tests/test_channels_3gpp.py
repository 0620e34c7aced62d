"""The 3GPP TR 38.901 sources (umi, uma, cdl, tdl) through the installed Sionna: no mocks, small sizes."""
import pytest
import torch
from pydantic import ValidationError

from autounfold.channels import ChannelConfig, IIDRayleigh, build_channel
from autounfold.channels.tr38901 import CDLSource, TR38901Source, UMiSource, frequency_response
from autounfold.errors import ConfigError, format_validation_error
from autounfold.seeding import generator

MODELS = ["umi", "uma", "cdl", "tdl"]
# (bs_side, users, n_tx, n_rx): uplink detection, downlink single terminal, downlink multi-user
ORIENTATIONS = [("rx", "multi", 3, 5), ("tx", "single", 5, 2), ("tx", "multi", 5, 3)]


def source(model, **kw):
    args = {"model": model, "n_tx": 6, "n_rx": 3, "users": "multi", "pool": 0, **kw}
    return build_channel(ChannelConfig(**args))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("bs_side, users, n_tx, n_rx", ORIENTATIONS)
def test_shapes_dtype_and_orientation(model, bs_side, users, n_tx, n_rx):
    src = source(model, n_tx=n_tx, n_rx=n_rx, bs_side=bs_side, users=users)
    assert isinstance(src, TR38901Source) and src.name == model
    b = src.sample(4, seed=0)
    assert b.H.shape == (4, n_rx, n_tx) and b.H.dtype == torch.complex64 and b.H.is_contiguous()
    assert b.noise_var.shape == (4,) and b.noise_var.dtype == torch.float32
    assert torch.isfinite(torch.view_as_real(b.H)).all()
    # the BS array is the bs_side dimension; the UE side is one terminal or one user per row/column
    n_bs, n_ue = (n_tx, n_rx) if bs_side == "tx" else (n_rx, n_tx)
    assert (src.n_bs, src.n_ue) == (n_bs, n_ue)
    assert (src.n_terminals, src.ue_antennas) == ((1, n_ue) if users == "single" else (n_ue, 1))
    bands = src.sample_bands(4, seed=0, n_bands=3)
    assert bands.H.shape == (4, 3, n_rx, n_tx) and bands.H.dtype == torch.complex64 and bands.H.is_contiguous()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("pool", [0, 16])
def test_seeded_replay_and_no_global_rng_change(model, pool):
    from sionna.phy import config as sionna_config
    src = source(model, pool=pool)
    torch_state = torch.get_rng_state()
    sionna_state = sionna_config.torch_rng("cpu").get_state()
    a, b, c = src.sample(4, seed=7), src.sample(4, seed=7), src.sample(4, seed=8)
    assert torch.equal(a.H, b.H) and torch.equal(a.noise_var, b.noise_var)
    assert not torch.equal(a.H, c.H)
    # equal generator states give equal draws; a generator is advanced by the call
    g1, g2 = generator(3, "trial:t0", 0, 0), generator(3, "trial:t0", 0, 0)
    first = src.sample(4, g1)
    assert torch.equal(first.H, src.sample(4, g2).H)
    assert not torch.equal(first.H, src.sample(4, g1).H)
    # a fresh source of the same settings replays too (the pool depends on pool_seed only)
    assert torch.equal(source(model, pool=pool).sample(4, seed=7).H, a.H)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.equal(sionna_config.torch_rng("cpu").get_state(), sionna_state)


def test_pool_entries_are_reused_with_a_random_phase():
    src = source("umi", n_tx=4, n_rx=3, pool=8)
    H = src.sample(16, seed=1).H                           # 48 users from 8 pooled ones
    rows = H.reshape(-1, 4)
    rows = torch.view_as_real(rows / rows[:, :1]).flatten(1)   # remove the random common phase
    close = torch.cdist(rows, rows) < 1e-3
    distinct = sum(1 for i in range(len(rows)) if not close[i, :i].any())
    assert distinct <= 8
    other_pool = source("umi", n_tx=4, n_rx=3, pool=8, pool_seed=1).sample(16, seed=1).H
    assert not torch.allclose(other_pool, H)


@pytest.mark.parametrize("model", MODELS)
def test_mean_power_is_one(model):
    # 128 x 4 = 512 users: the mean of |H|^2 over a user's 8 antennas has variance <= 1 (fully
    # correlated antennas, Rayleigh), so the batch mean has std <= 0.045; 0.2 is over 4 std
    src = source(model, n_tx=8, n_rx=4)
    H = src.sample(128, seed=11).H
    assert abs(H.abs().square().mean().item() - 1.0) < 0.2
    Hb = src.sample_bands(32, seed=11, n_bands=4).H       # 512 user-bands, same bound
    assert abs(Hb.abs().square().mean().item() - 1.0) < 0.2


def test_pathloss_keeps_physical_gains():
    H = source("umi", n_tx=4, n_rx=2, pathloss=True).sample(8, seed=0).H
    assert torch.isfinite(torch.view_as_real(H)).all()
    assert 0 < H.abs().square().mean().item() < 1e-4     # path loss of tens of metres at 3.5 GHz


def _adjacent_antenna_coherence(H):
    """mean over users of |sum_m h_m h_{m+1}^*| / sum_m |h_m|^2 along the BS dimension (last)."""
    return ((H[..., :-1] * H[..., 1:].conj()).sum(-1).abs() / H.abs().square().sum(-1)).mean().item()


@pytest.mark.parametrize("model", ["umi", "uma", "cdl"])
def test_spatial_structure_beyond_iid(model):
    # i.i.d. entries: E|sum of 7 unit products| / 8 ~ sqrt(7 pi / 4) / 8 = 0.29; a ULA seeing a few
    # clusters of narrow angular spread is near a plane wave (1 - 1/8 = 0.875 for one direction)
    H = source(model, n_tx=8, n_rx=4).sample(64, seed=5).H
    iid = IIDRayleigh(8, 4).sample(64, seed=5).H
    c_model, c_iid = _adjacent_antenna_coherence(H), _adjacent_antenna_coherence(iid)
    assert c_iid < 0.4 and c_model > 0.5 and c_model > 1.5 * c_iid
    # uplink: the BS is the rows, so the coherence is along the rows
    Hu = source(model, n_tx=4, n_rx=8, bs_side="rx").sample(64, seed=5).H
    assert _adjacent_antenna_coherence(Hu.transpose(-1, -2)) > 0.5


def test_tdl_is_spatially_uncorrelated():
    H = source("tdl", n_tx=8, n_rx=4).sample(64, seed=5).H
    assert _adjacent_antenna_coherence(H) < 0.4


def _band_lag_correlation(Hb, k):
    """mean over band pairs (j, j + k) of |E h_j h_{j+k}^*| / E|h|^2 (E over samples, users, antennas)."""
    p = Hb.abs().square().mean()
    pairs = [(Hb[:, j] * Hb[:, j + k].conj()).mean().abs() for j in range(Hb.shape[1] - k)]
    return (torch.stack(pairs).mean() / p).item()


# bandwidths where 8 bands span the coherence bandwidth: umi/uma draw delay spreads of ~100-400 ns
@pytest.mark.parametrize("model, bandwidth_mhz", [("umi", 4.0), ("uma", 4.0), ("cdl", 20.0), ("tdl", 20.0)])
def test_bands_share_one_realisation(model, bandwidth_mhz):
    src = source(model, n_tx=8, n_rx=4, bandwidth_mhz=bandwidth_mhz)
    seed = 2
    Hb = src.sample_bands(32, seed, n_bands=8).H
    # neighbouring bands are closer than far ones (measured: lag 1 0.75-0.95, lag 4 0.15-0.45)
    assert _band_lag_correlation(Hb, 1) > _band_lag_correlation(Hb, 4) + 0.2
    # one band is the carrier: the same draw as sample()
    torch.testing.assert_close(src.sample_bands(32, seed, n_bands=1).H[:, 0], src.sample(32, seed).H)


def test_band_frequencies_and_frequency_response_match_sionna():
    from sionna.phy.channel import cir_to_ofdm_channel
    src = source("umi")
    f = src.band_frequencies(4, bandwidth_mhz=20.0)
    assert f.tolist() == pytest.approx([-7.5e6, -2.49e6, 2.49e6, 7.5e6], abs=15e3)
    assert torch.all((f / 30e3 - torch.round(f / 30e3)).abs() < 1e-9)   # on the 30 kHz grid
    assert src.band_frequencies(1).tolist() == [0.0]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 2, 4, 5, dtype=torch.complex64, generator=gen)    # (N, A, M, P)
    tau = torch.rand(3, 5, generator=gen) * 1e-6
    ours = frequency_response(a, tau, f)                                  # (N, F, A, M)
    theirs = cir_to_ofdm_channel(f.float(), a[:, None, :, None, :, :, None], tau[:, None, None, :])
    theirs = theirs[:, 0, :, 0, :, 0, :].permute(0, 3, 1, 2)               # (N, F, A, M)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs, needle", [
    ({"bs_side": "up"}, "bs_side"),
    ({"users": "many"}, "users"),
    ({"carrier_frequency_ghz": 200.0}, "carrier_frequency_ghz"),
    ({"delay_spread_ns": 0.0}, "delay_spread_ns"),
    ({"cdl_model": "F"}, "cdl_model"),
    ({"bandwidth_mhz": 0.0}, "bandwidth_mhz"),
    ({"bandwidth_mhz": 0.01, "subcarrier_spacing_khz": 30.0}, "bandwidth_mhz"),
    ({"pool": -1}, "pool"),
    ({"pathloss": 1}, "pathloss"),
    ({"n_tx": 0}, "n_tx"),
])
def test_bad_settings_are_named(kwargs, needle):
    args = {"n_tx": 4, "n_rx": 2, **kwargs}
    with pytest.raises(ConfigError, match=needle) as err:
        UMiSource(**args)
    assert "\n" not in str(err.value)


def test_requests_sionna_cannot_serve():
    with pytest.raises(ConfigError, match="pathloss=True needs a system-level model"):
        CDLSource(n_tx=4, n_rx=2, pathloss=True)
    with pytest.raises(ValidationError, match="pathloss=True needs a system-level model"):
        ChannelConfig(model="tdl", pathloss=True)
    assert ChannelConfig(model="uma", pathloss=True).pathloss
    src = source("umi")
    with pytest.raises(ConfigError, match="n_bands=700 exceeds"):
        src.sample_bands(2, 0, n_bands=700, bandwidth_mhz=20.0)   # 666 subcarriers of 30 kHz
    with pytest.raises(ConfigError, match="n_bands"):
        src.sample_bands(2, 0, n_bands=0)


def test_channel_config_validates_the_new_fields():
    cfg = ChannelConfig(model="umi")
    assert (cfg.bs_side, cfg.users, cfg.carrier_frequency_ghz, cfg.pathloss, cfg.pool) == ("tx", "single", 3.5, False, None)
    src = build_channel(cfg)
    assert isinstance(src, UMiSource) and (src.n_tx, src.n_rx) == (64, 16)
    assert src.pool == 256                      # automatic: max(256, 2048 links / 16 UE antennas)
    assert build_channel(ChannelConfig(model="umi", users="multi")).pool == 2048
    for bad, key in [({"model": "nope"}, "model"), ({"model": "umi", "bs_side": "up"}, "bs_side"),
                     ({"model": "cdl", "cdl_model": "Z"}, "cdl_model"), ({"model": "umi", "pool": -2}, "pool"),
                     ({"model": "umi", "carrier_frequency_ghz": 0.1}, "carrier_frequency_ghz"),
                     ({"model": "umi", "bandwidth_mhz": 0.01}, "bandwidth_mhz")]:
        with pytest.raises(ValidationError) as err:
            ChannelConfig(**bad)
        line = format_validation_error(err.value, "exp.yaml")
        assert key in line and len(line.splitlines()) == 1
    # the Rayleigh sources ignore the 3GPP fields
    assert build_channel(ChannelConfig(model="iid_rayleigh", bs_side="rx", users="multi")).sample(2, 0).H.shape == (2, 16, 64)


def test_describe_names_the_model_and_settings():
    d = source("cdl", cdl_model="A", delay_spread_ns=300.0, bs_side="rx").describe()
    assert d["model"] == "cdl" and d["cdl_model"] == "A" and d["delay_spread_ns"] == 300.0
    assert d["bs_side"] == "rx" and d["users"] == "multi" and d["pool"] == 0 and "38.901" in d["bs_array"]
    d = source("umi").describe()
    assert d["scenario"] == "umi" and "per user" in d["normalisation"] and d["carrier_frequency_ghz"] == 3.5


def test_problems_take_3gpp_scenarios_with_the_base_station_on_the_right_side():
    """Detection (uplink: BS receives, users are columns) and MU-MISO (downlink: users are rows)
    evaluate a Rayleigh-trained model on UMi unchanged."""
    from autounfold.build import build_model
    from autounfold.config import load_config
    from autounfold.evaluation.evaluate import evaluate_model, scenario_config
    det = build_model(load_config("preset:deepsic", ["model.num_layers=2"])).eval()
    ch = scenario_config(det.config, "umi").problem.channel
    assert (ch.model, ch.bs_side, ch.users, ch.n_rx, ch.n_tx) == ("umi", "rx", "multi", 4, 4)
    rows = evaluate_model(det, ["umi"], batch=64)
    assert rows and all(0.0 <= r["ser"] <= 1.0 for r in rows)
    mu = build_model(load_config("preset:mu_miso", ["model.num_layers=2", "model.step_init=1.0"])).eval()
    ch = scenario_config(mu.config, "umi").problem.channel
    assert (ch.bs_side, ch.users, ch.n_tx, ch.n_rx) == ("tx", "multi", 16, 8)
    rows = evaluate_model(mu, ["umi"], batch=32)
    assert all(r["pct_of_reference"] <= 100.5 for r in rows)

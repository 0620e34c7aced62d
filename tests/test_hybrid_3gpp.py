"""Hybrid precoding on the 3GPP TR 38.901 channels (umi, uma, cdl, tdl through the installed Sionna):
multi-user downlink bands from one realisation per user, drawn by the hybrid problem's own channel
section. Small sizes and small pools (no mocks)."""
import json
import subprocess
import sys

import pytest
import torch

import autounfold
from autounfold.build import build_model
from autounfold.channels.tr38901 import CDLSource, TDLSource, UMaSource, UMiSource
from autounfold.channels.wideband import WidebandConfig, WidebandSource
from autounfold.config import load_config
from autounfold.errors import ConfigError
from autounfold.evaluation.evaluate import evaluate_model, scenario_config
from autounfold.problems.hybrid import HybridConfig, HybridPrecodingProblem
from autounfold.seeding import generator
from autounfold.training import train

MODELS = {"umi": UMiSource, "uma": UMaSource, "cdl": CDLSource, "tdl": TDLSource}
SMALL = ["problem.n_antennas=8", "problem.n_rf=4", "problem.n_bands=3", "problem.n_users=3",
         "model.num_layers=3", "model.step_init=0.5", "training.validation_batch=32", "training.batch_size=16"]


def _source(model, M=6, N=3, NB=4, **kw):
    return WidebandSource(M, N, NB, WidebandConfig(model=model, **{"pool": 32, **kw}))


@pytest.mark.parametrize("model", list(MODELS))
def test_shapes_dtype_orientation_and_power_convention(model):
    """H (B, n_bands, n_users, n_antennas) complex64; E|H_b[n, m]|^2 = 1 and noise_var = P / SNR, the
    convention of the clustered and iid models (SNR = P / noise_var)."""
    src = _source(model, pool=128, power=2.0, snr_db=(5.0, 15.0))
    b = src.sample(128, 0)
    assert b.H.shape == (128, 4, 3, 6) and b.H.dtype == torch.complex64 and b.H.is_contiguous()
    assert b.noise_var.shape == b.snr_db.shape == (128,) and b.noise_var.dtype == torch.float32
    assert torch.isfinite(torch.view_as_real(b.H)).all()
    assert ((b.snr_db >= 5.0) & (b.snr_db <= 15.0)).all()
    torch.testing.assert_close(b.noise_var, 2.0 / 10.0 ** (b.snr_db / 10.0))
    # 128 x 3 users from a pool of 128 (measured 0.88-1.04); the clustered model on the same sizes for comparison
    assert abs(b.H.abs().square().mean().item() - 1.0) < 0.2
    clustered = WidebandSource(6, 3, 4, WidebandConfig()).sample(128, 0).H
    assert abs(clustered.abs().square().mean().item() - 1.0) < 0.2
    # it is the 3GPP source's multi-user downlink draw: BS antennas are the columns, one user per row
    tr = MODELS[model](n_tx=6, n_rx=3, snr_db=(5.0, 15.0), power=2.0, bs_side="tx", users="multi", pool=128)
    ref = tr.sample_bands(128, 0, n_bands=4)
    assert torch.equal(ref.H, b.H) and torch.equal(ref.noise_var, b.noise_var)
    assert src.describe()["model"] == model and "normalisation" in src.describe()
    assert src.band_frequencies().shape == (4,)


@pytest.mark.parametrize("pool", [0, 16])
def test_seeded_and_replayable_from_the_callers_generator(pool):
    from sionna.phy import config as sionna_config
    src = _source("umi", pool=pool)
    torch_state, sionna_state = torch.get_rng_state(), sionna_config.torch_rng("cpu").get_state()
    a, b, c = src.sample(4, 7), src.sample(4, 7), src.sample(4, 8)
    assert torch.equal(a.H, b.H) and torch.equal(a.noise_var, b.noise_var) and not torch.equal(a.H, c.H)
    g1, g2 = generator(3, "trial:t0", 0, 0), generator(3, "trial:t0", 0, 0)
    first = src.sample(4, g1)
    assert torch.equal(first.H, src.sample(4, g2).H)
    assert not torch.equal(first.H, src.sample(4, g1).H)          # the generator is advanced
    assert torch.equal(_source("umi", pool=pool).sample(4, 7).H, a.H)   # a fresh source replays
    # the problem draws through its source
    p = HybridPrecodingProblem.from_config(HybridConfig(n_antennas=6, n_rf=4, n_bands=4, n_users=3,
                                                        channel=WidebandConfig(model="umi", pool=pool)))
    assert torch.equal(p.sample(4, 7).H, a.H)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.equal(sionna_config.torch_rng("cpu").get_state(), sionna_state)


def _lag(H, k):
    """mean over band pairs (j, j + k) of |E h_j h_{j+k}^*| / E|h|^2 (E over samples, users, antennas)."""
    p = H.abs().square().mean()
    return (torch.stack([(H[:, j] * H[:, j + k].conj()).mean().abs() for j in range(H.shape[1] - k)]).mean() / p).item()


def _adjacent_change(H):
    """median over samples of ||H_{b+1} - H_b||_F^2 / ||H_b||_F^2 (2 for independent bands)."""
    return ((H[:, 1:] - H[:, :-1]).abs().square().sum((-2, -1)) / H[:, :-1].abs().square().sum((-2, -1))).median().item()


@pytest.mark.parametrize("model", ["umi", "cdl"])
def test_bands_differ_but_come_from_one_realisation(model):
    """Frequency selectivity from one realisation per user: over 20 MHz (the default span) the bands
    differ, neighbours are more alike than far bands and than independent draws; squeezed into 0.5 MHz
    (inside the coherence bandwidth) they are nearly equal. Measured (pools 0-2): umi at 20 MHz lag 1
    0.30-0.40, lag 7 0.15-0.22, change 1.3-1.5; cdl (CDL-C, 100 ns) lag 1 0.93, lag 7 0.69-0.73 (its
    frequency correlation comes back at 17.5 MHz), change 0.66-0.68; independent draws 0.00-0.08;
    0.5 MHz: lag 1 >= 0.97, change <= 0.02."""
    src = _source(model, NB=8, pool=64)
    H, other = src.sample(128, 1).H, src.sample(128, 2).H
    assert _adjacent_change(H) > 0.4                                         # the bands differ
    independent = ((H * other.conj()).mean().abs() / H.abs().square().mean()).item()
    assert independent < 0.12 and _lag(H, 1) > 0.2 + independent
    if model == "umi":
        assert _lag(H, 1) > _lag(H, 7) + 0.05
    narrow = _source(model, NB=8, pool=64, bandwidth_mhz=0.5).sample(128, 1).H
    assert _lag(narrow, 1) > 0.9 and _adjacent_change(narrow) < 0.1
    # one band is the carrier, the narrowband draw of the same realisation
    tr = MODELS[model](n_tx=6, n_rx=3, bs_side="tx", users="multi", pool=64, snr_db=(0.0, 20.0))
    torch.testing.assert_close(_source(model, NB=1, pool=64).sample(16, 3).H[:, 0], tr.sample(16, 3).H)


def test_scenarios_are_declared_like_the_other_problems():
    cfg = load_config("preset:hybrid", SMALL)
    for name in ("umi", "uma", "cdl", "tdl"):
        assert name in HybridPrecodingProblem.scenarios
        sc = scenario_config(cfg, name).problem
        assert sc.channel.model == name and (sc.n_antennas, sc.n_bands, sc.n_users) == (8, 3, 3)
        assert sc.channel.snr_db == cfg.problem.channel.snr_db


def test_a_small_model_trained_on_umi_is_evaluated_on_3gpp_scenarios():
    cfg = load_config("preset:hybrid", SMALL + ["problem.channel.model=umi", "problem.channel.pool=32",
                                                "training.steps=4", "training.validate_every=2"])
    model = build_model(cfg)
    result = train(model, cfg.training, cfg.seed, progress=False)
    assert 30 < result.best_score <= 100.0001 and result.best_step >= 0
    rows = evaluate_model(model.eval(), ["nominal", "uma", "tdl"], batch=16, overrides=["problem.channel.pool=32"])
    assert {r["scenario"] for r in rows} == {"nominal", "uma", "tdl"}
    assert any("(this model)" in r["method"] for r in rows)
    assert all(r["feasible"] and 30 < r["pct_of_bound"] <= 100.0001 for r in rows)


def test_cli_evaluates_a_clustered_model_on_umi_and_cdl(tmp_path):
    cfg = load_config("preset:hybrid", SMALL)
    autounfold.save(build_model(cfg), tmp_path / "m", cfg)
    out = tmp_path / "ev.json"
    run = subprocess.run([sys.executable, "-m", "autounfold.cli", "evaluate", str(tmp_path / "m"), "--scenario", "umi",
                          "--scenario", "cdl", "--batch", "16", "--set", "problem.channel.pool=32", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {r["scenario"] for r in rows} == {"umi", "cdl"}
    assert all(r["feasible"] and 30 < r["pct_of_bound"] <= 100.0001 for r in rows)


@pytest.mark.parametrize("overrides, field", [
    (["problem.channel.bandwidth_mhz=0.01"], "bandwidth_mhz"),
    (["problem.n_bands=8", "problem.channel.bandwidth_mhz=0.1"], "n_bands=8 exceeds the 3 subcarriers"),
    (["problem.channel.carrier_frequency_ghz=200"], "carrier_frequency_ghz"),
    (["problem.channel.delay_spread_ns=0"], "delay_spread_ns"),
    (["problem.channel.cdl_model=Z"], "cdl_model"),
    (["problem.channel.subcarrier_spacing_khz=-15"], "subcarrier_spacing_khz"),
    (["problem.channel.pool=-1"], "pool"),
    (["problem.channel.pathloss=true"], "pathloss"),
    (["problem.channel.antenna_spacing=1.0"], "antenna_spacing"),
])
def test_impossible_settings_are_one_line_errors_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field) as err:
        load_config("preset:hybrid", ["problem.channel.model=umi", *overrides])
    assert "\n" not in str(err.value)


def test_direct_construction_errors_and_the_other_models_ignore_the_3gpp_settings():
    with pytest.raises(ConfigError, match="n_bands=700 exceeds the 666 subcarriers"):
        WidebandSource(8, 2, 700, WidebandConfig(model="umi"))
    with pytest.raises(ConfigError, match="unknown.*|channel.model") as err:
        load_config("preset:hybrid", ["problem.channel.model=umx"])
    assert "\n" not in str(err.value)
    # clustered / iid ignore the 3GPP settings, and describe themselves as before
    src = WidebandSource(8, 2, 700, WidebandConfig(model="clustered", bandwidth_mhz=0.01))
    assert src.tr38901 is None and "bandwidth_mhz" not in src.describe() and "max_delay" in src.describe()
    assert "max_delay" not in _source("umi").describe()


def test_the_angular_spread_drift_is_refused_on_3gpp_bands():
    """The monitor's synthetic drift changes the clustered model's spread: on umi it would change nothing."""
    cfg = load_config("preset:hybrid", SMALL + ["problem.channel.model=umi", "problem.channel.pool=16"])
    p = HybridPrecodingProblem.from_config(cfg.problem)
    with pytest.raises(ConfigError, match="model=umi draws its own angles"):
        p.drift_source(cfg.problem, 30.0)

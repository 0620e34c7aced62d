"""SNR-conditioned unfolded networks (``model.snr_knots``): per-layer scalars that are piecewise-linear
functions of each sample's SNR. Without training they equal the network without knots; at a knot they
are that knot's value, between knots the linear blend, beyond the ends the end value; the knots travel
with the saved model; bad configs are refused with the field named."""
import pytest
import torch

import autounfold
from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.errors import ConfigError
from autounfold.evaluation.evaluate import transfer
from autounfold.config import parse_config
from autounfold.training.trainer import train

SMALL = ["problem.n_users=4", "problem.channel.n_tx=8", "model.num_layers=3", "model.step_init=0.05",
         "model.momentum_init=0.3", "training.steps=0"]


def _cfg(*extra, layer="momentum"):
    return load_config("preset:mu_miso", SMALL + [f"model.layer={layer}"] + list(extra))


def _set_knot_values(model, name, values_per_knot):
    """Give every layer of ``name`` the raw values ``values_per_knot`` (one per knot)."""
    raw = model.params[name]
    with torch.no_grad():
        raw.copy_(torch.tensor(values_per_knot, dtype=raw.dtype).expand_as(raw))


def test_an_integer_spreads_the_knots_over_the_training_range_and_the_config_keeps_them():
    model = build_model(_cfg("model.snr_knots=4"))
    assert model.config.model.snr_knots == [0.0, 10.0, 20.0, 30.0]
    assert model.snr_knots.tolist() == [0.0, 10.0, 20.0, 30.0]
    # the training batches' range (training.problem) is the one spread over, not the problem's
    moved = build_model(_cfg("model.snr_knots=3", "training.problem={channel: {snr_db: [5.0, 15.0]}}"))
    assert moved.config.model.snr_knots == [5.0, 10.0, 15.0]
    # every per-layer scalar is conditioned: (layers, knots)
    assert {k: tuple(v.shape) for k, v in model.params.items()} == {"step": (3, 4), "momentum": (3, 4)}


@pytest.mark.parametrize("layer", ["momentum", "uwmmse"])
def test_untrained_knots_reproduce_the_network_without_them(layer):
    plain = build_model(_cfg(layer=layer))
    knotted = build_model(_cfg("model.snr_knots=[0, 7.5, 30]", layer=layer))
    inst = plain.problem.sample(16, 3)
    with torch.no_grad():
        a, b = plain.run(inst), knotted.run(inst)
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_weights_are_the_knot_value_at_a_knot_linear_between_and_constant_beyond():
    model = build_model(_cfg("model.snr_knots=[0, 10, 30]"))
    w = model.snr_weights(torch.tensor([-20.0, 0.0, 5.0, 10.0, 25.0, 30.0, 45.0]))
    expect = torch.tensor([[1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.25, 0.75], [0, 0, 1], [0, 0, 1.0]])
    assert torch.allclose(w, expect)
    # positive scalars blend in log space: halfway between steps 0.01 and 0.04 is 0.02
    _set_knot_values(model, "step", [torch.log(torch.tensor(0.01)), torch.log(torch.tensor(0.04)), 0.0])
    _set_knot_values(model, "momentum", [0.1, 0.5, 0.9])
    values = model.layer_values(1, model.snr_weights(torch.tensor([5.0, 20.0])))
    assert torch.allclose(values["step"], torch.tensor([0.02, 0.04 ** 0.5]), rtol=1e-5)
    assert torch.allclose(values["momentum"], torch.tensor([0.3, 0.7]))


def test_each_sample_runs_with_the_parameters_of_its_own_snr():
    """A batch mixing SNRs gives, sample by sample, what a plain network with that SNR's interpolated
    constants gives: the conditioning is per sample, not per batch."""
    knotted = build_model(_cfg("model.snr_knots=[0, 30]"))
    _set_knot_values(knotted, "step", [torch.log(torch.tensor(0.2)), torch.log(torch.tensor(0.002))])
    _set_knot_values(knotted, "momentum", [0.0, 0.6])
    inst = knotted.problem.sample(8, 5)
    with torch.no_grad():
        out = knotted.run(inst)
    for i in (0, 3, 7):
        t = float(inst.snr_db[i]) / 30.0
        step = float(torch.exp((1 - t) * torch.log(torch.tensor(0.2)) + t * torch.log(torch.tensor(0.002))))
        plain = build_model(_cfg(f"model.step_init={step}", f"model.momentum_init={0.6 * t}"))
        with torch.no_grad():
            alone = plain.run(inst[i:i + 1])
        assert torch.allclose(out[i:i + 1], alone, atol=1e-5, rtol=1e-4), i


def test_training_moves_the_knots_apart():
    cfg = load_config("preset:mu_miso", SMALL[:-1] + ["model.layer=momentum", "model.snr_knots=3", "training.steps=20",
                                                       "training.batch_size=64", "training.validation_batch=64",
                                                       "training.validate_every=10"])
    model = build_model(cfg)
    train(model, cfg.training, seed=0, progress=False)
    step = model.params["step"].detach()
    assert (step[:, 0] - step[:, 2]).abs().max() > 1e-3          # the 0 dB and 30 dB steps differ now
    names = set(model.scalar_parameters())
    assert {"step.snr0dB", "step.snr15dB", "momentum.snr30dB"} <= names


def test_saved_and_moved_models_keep_their_knots(tmp_path):
    model = build_model(_cfg("model.snr_knots=3"))
    _set_knot_values(model, "momentum", [0.0, 0.4, 0.8])
    autounfold.save(model, tmp_path / "m", model.config)
    loaded = autounfold.load(tmp_path / "m")
    inst = model.problem.sample(8, 1)
    with torch.no_grad():
        assert torch.allclose(loaded(inst.H, inst.noise_var), model(inst.H, inst.noise_var), atol=1e-6)
    # moved to one SNR (what the benchmark and evaluate do): the knots stay those of training
    data = model.config.model_dump(mode="json")
    data["problem"]["channel"]["snr_db"] = [10.0, 10.0]
    moved = transfer(model, parse_config(data, "test"))
    assert moved.snr_knots.tolist() == [0.0, 15.0, 30.0]
    inst10 = moved.problem.sample(8, 2)
    with torch.no_grad():
        assert torch.allclose(moved.run(inst10), model.run(inst10), atol=1e-6)


def test_export_traces_a_knotted_model(tmp_path):
    from autounfold.deploy.export import export_torchscript, load_torchscript
    model = build_model(_cfg("model.snr_knots=3")).eval()
    _set_knot_values(model, "momentum", [0.0, 0.4, 0.8])
    path = export_torchscript(model, tmp_path / "m.pt")
    inst = model.problem.sample(11, 4)                 # SNRs spread over the range: different blends
    got = torch.view_as_complex(load_torchscript(path)(torch.view_as_real(inst.H).contiguous(), inst.noise_var))
    with torch.no_grad():
        torch.testing.assert_close(got, model(inst.H, inst.noise_var), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("value", [1, -2, 4.5, "'4'", "true", "null", [10.0], [10.0, 5.0], "[0.0, .inf]", []])
def test_bad_knots_are_refused_in_one_line_naming_the_field(value):
    with pytest.raises(ConfigError) as err:
        _cfg(f"model.snr_knots={value}")
    msg = str(err.value)
    assert "model.snr_knots: must be 0 (off), an integer number of knots >= 2" in msg and len(msg.splitlines()) == 1


def test_torch_export_traces_a_knotted_model(tmp_path):
    from autounfold.deploy.export import export_torch_export, load_torch_export
    model = build_model(_cfg("model.snr_knots=3")).eval()
    _set_knot_values(model, "momentum", [0.0, 0.4, 0.8])
    path = export_torch_export(model, tmp_path / "m.pt2")
    inst = model.problem.sample(9, 6)
    got = torch.view_as_complex(load_torch_export(path)(torch.view_as_real(inst.H).contiguous(), inst.noise_var))
    with torch.no_grad():
        torch.testing.assert_close(got, model(inst.H, inst.noise_var), rtol=1e-4, atol=1e-5)


def test_refine_searches_knotted_scalars_moving_a_layer_s_knots_together():
    from autounfold.training.trainer import refine, refine_parameters
    from autounfold.config import RefineConfig
    model = build_model(_cfg("model.snr_knots=3", "model.step_init=0.0005"))      # steps far too small
    assert refine_parameters(model, []) == ["step", "momentum"] and refine_parameters(model, ["step"]) == ["step"]
    before = model.params["step"].detach().clone()
    refine(model, RefineConfig(sweeps=1, offsets=[1.0, 2.0], params=["step"], batch=32), ["step"], model.problem, seed=0)
    moved = model.params["step"].detach() - before
    assert moved.abs().max() > 0                                   # some layer's step moved
    assert torch.allclose(moved, moved[:, :1].expand_as(moved))     # by the same offset at each of its knots


def test_knots_need_an_snr_range_a_problem_with_snr_and_an_update_rule_taking_per_sample_values():
    with pytest.raises(ConfigError, match="single SNR 10 dB"):
        build_model(_cfg("model.snr_knots=3", "problem.channel.snr_db=[10, 10]"))
    for knots in ("[0, 10]", "3"):                  # an integer too: the problem's refusal comes first
        with pytest.raises(ConfigError, match="lasso instances carry no SNR"):
            build_model(load_config("preset:lista", [f"model.snr_knots={knots}", "training.steps=0"]))
    with pytest.raises(ConfigError, match="update rule 'subspace' takes one value per layer"):
        build_model(load_config("preset:auto_pgd", ["model.snr_knots=[0, 10]", "training.steps=0"]))


def test_the_mu_miso_benchmark_names_snr_conditioned_variants():
    from autounfold.evaluation.mu_miso_benchmark import _overrides, variant, variant_label
    assert variant("momentum+snr3") == ("momentum", ["model.snr_knots=3"]) and variant("uwmmse") == ("uwmmse", [])
    assert variant_label("momentum+snr4") == "unfolded PGA, 4 SNR knots"
    cfg = load_config("preset:mu_miso", _overrides(8, 4, "momentum+snr3", 2, 0))
    assert (cfg.model.layer, cfg.model.snr_knots, cfg.model.num_layers) == ("momentum", 3, 2)
    assert variant("momentum+snr4+cond5") == ("momentum", ["model.snr_knots=4", "model.cond_knots=5"])
    assert variant_label("momentum+snr4+cond5") == "unfolded PGA, 4 SNR x 5 condition knots"
    for bad in ("momentum+snr", "momentum+knots4", "signed+snr4", "momentum+snr4+snr3", "momentum+cond1"):
        with pytest.raises(ConfigError):
            variant(bad)


def test_beamforming_gradient_layers_take_knots_too():
    """The other problem whose instances carry their SNR: a projected-gradient layer with knots starts as
    the same layer without them."""
    base = ["model.layer=momentum", "model.step_init=0.3", "model.momentum_init=0.2", "model.num_layers=3",
            "training.steps=0"]
    plain = build_model(load_config("preset:auto_pgd", base))
    knotted = build_model(load_config("preset:auto_pgd", base + ["model.snr_knots=3"]))
    lo, hi = plain.config.problem.channel.snr_db
    assert knotted.snr_knots.tolist() == [lo, (lo + hi) / 2, hi]
    inst = plain.problem.sample(8, 2)
    with torch.no_grad():
        assert torch.allclose(plain.run(inst), knotted.run(inst), atol=1e-6)



# ---- the second feature: the channel's conditioning (model.cond_knots) ------------------------------------

def test_condition_knots_spread_over_the_training_channels_and_start_as_the_plain_network():
    plain = build_model(_cfg())
    both = build_model(_cfg("model.snr_knots=3", "model.cond_knots=4"))
    knots = both.config.model.cond_knots
    assert len(knots) == 4 and all(b > a for a, b in zip(knots, knots[1:]))
    c = plain.problem.log_condition(plain.problem.sample(512, 9))
    assert float(c.min()) - 0.05 <= knots[0] and knots[-1] <= float(c.max()) + 0.05   # within the channels' range
    assert {k: tuple(v.shape) for k, v in both.params.items()} == {"step": (3, 12), "momentum": (3, 12)}
    assert "step.snr15dB.cond" + f"{knots[1]:g}" in both.scalar_parameters()
    inst = plain.problem.sample(16, 3)
    with torch.no_grad():
        assert torch.allclose(plain.run(inst), both.run(inst), atol=1e-6, rtol=1e-5)


def test_snr_and_condition_weights_are_bilinear():
    from autounfold.unfolding.unfolded import hat_weights
    model = build_model(_cfg("model.snr_knots=[0, 30]", "model.cond_knots=[0.2, 0.3, 0.4]"))
    inst = model.problem.sample(6, 4)
    w = model.knot_weights(inst)
    ws = hat_weights(inst.snr_db, torch.tensor([0.0, 30.0]))
    wc = hat_weights(model.problem.log_condition(inst), torch.tensor([0.2, 0.3, 0.4]))
    assert torch.allclose(w, (ws[:, :, None] * wc[:, None, :]).reshape(6, 6)) and torch.allclose(w.sum(-1), torch.ones(6))
    # a momentum of 0.1 * (SNR index) + 0.2 * (condition index) at the grid is, between grid points, the blend
    grid = torch.tensor([[0.1 * i + 0.2 * j for j in range(3)] for i in range(2)]).reshape(-1)
    _set_knot_values(model, "momentum", grid.tolist())
    got = model.layer_values(1, w)["momentum"]
    t = inst.snr_db.clamp(0, 30) / 30
    c = model.problem.log_condition(inst)
    assert ((c > 0.2) & (c < 0.4)).sum() >= 2                 # samples between the condition knots
    u = (c.clamp(0.2, 0.4) - 0.2) / 0.1                       # the condition index, 0 to 2
    assert torch.allclose(got, 0.1 * t + 0.2 * u, atol=1e-5)


def test_condition_knots_export_and_need_a_problem_with_a_conditioning(tmp_path):
    from autounfold.deploy.export import export_torch_export, load_torch_export
    model = build_model(_cfg("model.snr_knots=2", "model.cond_knots=[0.25, 0.4]")).eval()
    _set_knot_values(model, "momentum", [0.0, 0.3, 0.5, 0.8])
    path = export_torch_export(model, tmp_path / "m.pt2")
    inst = model.problem.sample(9, 6)
    got = torch.view_as_complex(load_torch_export(path)(torch.view_as_real(inst.H).contiguous(), inst.noise_var))
    with torch.no_grad():
        torch.testing.assert_close(got, model(inst.H, inst.noise_var), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="lasso has no channel conditioning"):
        build_model(load_config("preset:lista", ["model.cond_knots=3", "training.steps=0"]))
    with pytest.raises(ConfigError, match="model.cond_knots: must be 0"):
        _cfg("model.cond_knots=1")



def test_a_model_saved_with_its_unresolved_config_keeps_the_knots_it_was_built_with(tmp_path):
    cfg = _cfg("model.snr_knots=3", "model.cond_knots=3")
    model = build_model(cfg)
    autounfold.save(model, tmp_path / "m", cfg)              # the config as loaded: counts, not knots
    loaded = autounfold.load(tmp_path / "m")
    assert loaded.snr_knots.tolist() == model.snr_knots.tolist()
    assert torch.allclose(loaded.cond_knots, model.cond_knots)
    assert isinstance(loaded.config.model.cond_knots, list)


def test_a_model_whose_condition_knots_belong_to_another_feature_is_refused(tmp_path):
    """meta.json records what the condition knots are values of; a model saved when the problem computed
    another feature (or before the record existed) is refused with the reason, not scored at wrong knots."""
    import json

    from autounfold.errors import ArtifactError
    model = build_model(_cfg("model.snr_knots=2", "model.cond_knots=3"))
    path = autounfold.save(model, tmp_path / "m", model.config)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["conditioning"] == model.problem.conditioning and "K s2 / P" in meta["conditioning"]
    autounfold.load(path)
    for recorded in ("log10 cond(G)", None):
        if recorded is None:
            meta.pop("conditioning")
        else:
            meta["conditioning"] = recorded
        (path / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(ArtifactError, match="condition knots .* retrain it"):
            autounfold.load(path)
    plain = build_model(_cfg("model.snr_knots=2"))                       # no condition knots: nothing recorded
    p2 = autounfold.save(plain, tmp_path / "p", plain.config)
    assert "conditioning" not in json.loads((p2 / "meta.json").read_text())
    autounfold.load(p2)


def test_log_condition_is_the_zero_forcing_power_penalty():
    from autounfold.problems.base import log_condition
    g = torch.Generator().manual_seed(3)
    H = torch.randn(64, 6, 10, dtype=torch.complex64, generator=g)
    lam = torch.linalg.eigvalsh((H @ H.mH).to(torch.complex128))                         # exact, float64
    want = torch.log10(lam.sum(-1) * (1.0 / lam).sum(-1) / 36.0)
    got = log_condition(H)
    assert got.dtype == torch.float32 and got.shape == (64,)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)
    kappa = lam[:, -1] / lam[:, 0]                                  # between kappa / m^2 and (kappa + 1)^2 / (4 kappa)
    assert (got.double() >= torch.log10(kappa / 36.0) - 1e-4).all()
    assert (got.double() <= torch.log10((kappa + 1) ** 2 / (4 * kappa)) + 1e-4).all()
    Q = torch.linalg.qr(torch.randn(10, 6, dtype=torch.complex64, generator=g))[0].mH * 3.0   # orthogonal rows, equal norm
    assert abs(float(log_condition(Q.unsqueeze(0)))) < 1e-5
    torch.testing.assert_close(log_condition(H.mH), got)                                      # the smaller Gram matrix either way
    H[0, 1] = H[0, 0]                                                                         # singular: finite, large
    assert 4.5 < float(log_condition(H[:1])) <= 6.0


def test_rmul_is_the_complex_product_bit_for_bit():
    from autounfold.problems.base import rmul
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 4, 3, dtype=torch.complex64, generator=g)
    for s in (torch.rand(5, 1, 1, generator=g), torch.rand(5, 4, 3, generator=g), torch.tensor(0.7), 2.5):
        assert torch.equal(rmul(z, s), z * s)
    assert torch.equal(rmul(z.conj(), torch.rand(5, 1, 1, generator=g).fill_(2.0)), z.conj() * 2.0)
    x = torch.randn(5, 3, generator=g)
    assert torch.equal(rmul(x, torch.full((5, 1), 3.0)), x * 3.0)


def test_knotted_values_for_all_layers_are_the_per_layer_values():
    model = build_model(_cfg("model.snr_knots=3", "model.cond_knots=[0.2, 0.3]"))
    with torch.no_grad():                                           # a distinct value per layer and knot
        for name in ("step", "momentum"):
            p = model.params[name]
            p.copy_(torch.arange(p.numel(), dtype=p.dtype).view_as(p) * 0.01 - 0.1)
    inst = model.problem.sample(7, 2)
    w = model.knot_weights(inst)
    pre = model.knotted_values(w)
    for k in range(model.num_layers):
        direct = model.layer_values(k, w)
        for name in ("step", "momentum"):
            torch.testing.assert_close(pre[name][:, k], direct[name], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(model.layer_values(k, w, pre)[name], direct[name], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(pre["step"][:, 0], pre["step"][:, 1])

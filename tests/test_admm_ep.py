"""ADMM / ADMM-Net (LASSO and box-relaxed detection) and expectation propagation / learned EP: the
unfolded networks with the classical parameters are the classical algorithms, ours against the
textbook form and against Sionna's EP, shapes on other sizes, training, config errors, CLI and export."""
from __future__ import annotations

import math

import pytest
import torch

import autounfold
from autounfold.algorithms import detection as D
from autounfold.algorithms.admm import ADMM, admm, tune_admm
from autounfold.algorithms.ep import expectation_propagation, pam_alphabet, tune_ep
from autounfold.algorithms.reference import reference
from autounfold.algorithms.solver import solve
from autounfold.build import build_model, build_problem
from autounfold.config import load_config
from autounfold.errors import ConfigError
from autounfold.problems.detection import DetectionBatch
from autounfold.seeding import generator
from autounfold.training import train


def _det(n_users=4, n_rx=4, modulation="qpsk", snr=(10.0, 10.0), **extra):
    sets = [f"problem.n_users={n_users}", f"problem.n_rx={n_rx}", f"problem.modulation={modulation}",
            f"problem.channel.snr_db=[{snr[0]},{snr[1]}]"] + [f"problem.{k}={v}" for k, v in extra.items()]
    return build_problem(load_config("preset:deepsic", sets).problem)


def _set(model, **values):
    """Set every layer's value of the named parameters (constrained values: positive ones as their log)."""
    with torch.no_grad():
        for name, v in values.items():
            p = model.params[name.replace(".", "__")]
            p.fill_(math.log(v) if model.kinds[name] == "positive" else v)


# ---- ADMM ------------------------------------------------------------------------------------------
def _admm_textbook(A, y, lam, rho, iters, alpha=1.0):
    """Scaled-form ADMM for the LASSO with an explicit inverse, float64 (Boyd et al. 2011, 6.4)."""
    n = A.shape[1]
    M = torch.linalg.inv(A.T @ A + rho * torch.eye(n, dtype=A.dtype))
    z = torch.zeros(y.shape[0], n, dtype=A.dtype)
    u = torch.zeros_like(z)
    for _ in range(iters):
        x = (y @ A + rho * (z - u)) @ M.T
        xh = alpha * x + (1 - alpha) * z
        w = xh + u
        z = torch.sign(w) * (w.abs() - lam / rho).clamp_min(0)
        u = u + xh - z
    return z


def test_lasso_admm_is_the_textbook_iteration_and_converges_to_the_lasso_optimum():
    p = build_problem(load_config("preset:admm_net").problem)
    inst = p.sample(64, generator(1))
    for rho, alpha in ((0.05, 1.0), (0.3, 1.6)):
        ours = admm(p, inst, 12, rho, alpha).double()
        ref = _admm_textbook(p.A.double(), inst.y.double(), p.lam, rho * p.lipschitz, 12, alpha)
        assert torch.allclose(ours, ref, atol=2e-5), float((ours - ref).abs().max())
    x = admm(p, inst, 3000, 0.03)
    opt = reference(p, inst)
    f, f_opt = p.objective(x, inst), p.objective(opt, inst)
    assert ((f - f_opt) / f_opt).abs().max() < 1e-4          # the same minimum as FISTA to 1e-7


def test_detection_admm_is_the_box_relaxed_least_squares_and_starts_at_lmmse():
    p = _det(4, 4, "qpsk", (6.0, 6.0))
    inst = p.sample(400, generator(2))
    # one iteration at penalty 1 from z = u = 0: x = (H^H H + s2 I)^-1 H^H y, LMMSE's decisions for QPSK
    assert torch.equal(admm(p, inst, 1, 1.0).argmax(-1), D.lmmse(p, inst).argmax(-1))
    # textbook ADMM (explicit solve, complex, float64) on the same instances
    H, y, s2 = inst.H.to(torch.complex128), inst.y.to(torch.complex128), inst.noise_var.double()
    a = float(p.constellation.real.abs().max())
    z = torch.zeros(400, 4, dtype=torch.complex128)
    u = torch.zeros_like(z)
    rho = 2.0
    for _ in range(7):
        A = H.mH @ H + (rho * s2).view(-1, 1, 1) * torch.eye(4, dtype=H.dtype)
        x = torch.linalg.solve(A, (H.mH @ y.unsqueeze(-1)).squeeze(-1) + (rho * s2).unsqueeze(-1) * (z - u))
        w = x + u
        z = torch.complex(w.real.clamp(-a, a), w.imag.clamp(-a, a))
        u = u + x - z
    st = ADMM().init_state(p.init(inst))
    for _ in range(7):
        st = ADMM().step(p, inst, st, {"penalty": rho})
    assert torch.allclose(st.z.to(torch.complex128), z, atol=1e-4)
    assert (st.z.real.abs() <= a + 1e-6).all() and (st.z.imag.abs() <= a + 1e-6).all()
    # many iterations reach a fixed point of the box-constrained least squares: z stops moving
    st = ADMM().init_state(p.init(inst))
    for _ in range(300):
        st = ADMM().step(p, inst, st, {"penalty": 1.0})
    nxt = ADMM().step(p, inst, st, {"penalty": 1.0})
    assert torch.isfinite(st.x).all() and float((nxt.z - st.z).abs().max()) < 1e-4


def test_detection_admm_with_relaxation_and_soft_projection_is_the_hand_written_update():
    p = _det(3, 4, "16qam", (12.0, 12.0))
    inst = p.sample(50, generator(21))
    H, y, s2 = inst.H.to(torch.complex128), inst.y.to(torch.complex128), inst.noise_var.double()
    pts = p.constellation.to(torch.complex128)
    a = float(pts.real.abs().max())
    rho, alpha, gamma, t = 1.7, 1.4, 0.6, 0.2
    z = torch.zeros(50, 3, dtype=torch.complex128)
    u = torch.zeros_like(z)
    for _ in range(4):
        A = H.mH @ H + (rho * s2).view(-1, 1, 1) * torch.eye(3, dtype=H.dtype)
        x = torch.linalg.solve(A, (H.mH @ y.unsqueeze(-1)).squeeze(-1) + (rho * s2).unsqueeze(-1) * (z - u))
        xh = alpha * x + (1 - alpha) * z
        w = xh + u
        box = torch.complex(w.real.clamp(-a, a), w.imag.clamp(-a, a))
        soft = (torch.softmax(-(w.unsqueeze(-1) - pts).abs().square() / t, -1).to(pts.dtype) * pts).sum(-1)
        z_new = box + gamma * (soft - box)
        u = u + xh - z_new
        z = z_new
    st = ADMM().init_state(p.init(inst))
    params = {"penalty": rho, "relaxation": alpha, "projection_mix": gamma, "projection_temperature": t}
    for _ in range(4):
        st = ADMM().step(p, inst, st, params)
    assert torch.allclose(st.z.to(torch.complex128), z, atol=1e-4) and torch.allclose(st.u.to(torch.complex128), u, atol=1e-4)


@pytest.mark.parametrize("preset,layer,dead", [
    ("admm_detection", "admm_net", {"relaxation", "projection_mix", "projection_temperature"}),
    ("admm_net", "admm_net", set()),
    ("learned_ep", "learned_ep_scaled", {"damping_logit"}),
    ("learned_ep", "learned_ep_prior", {"damping_logit"})])
def test_every_learned_parameter_reaches_the_loss_but_the_documented_last_layer_ones(preset, layer, dead):
    """The multi-iteration loss reaches every layer's parameters; the last layer's z-update (ADMM on detection)
    and damping (EP) act after the output is read, so exactly those get no gradient there."""
    from autounfold.training.losses import layer_weights
    model = build_model(load_config(f"preset:{preset}", [f"model.layer={layer}", "model.num_layers=3"]))
    if "projection_mix" in model.kinds:          # at gamma = 0 the soft projection's temperature has no effect yet
        _set(model, projection_mix=0.3)
    p = model.problem
    inst = p.sample(128, generator(22))
    target = p.supervised_target(inst)
    xs = model.run(inst, return_all=True)
    loss = sum(w * p.supervised_loss(x, inst, target).mean() for w, x in zip(layer_weights("multi_iteration", 3), xs))
    loss.backward()
    for key, param in model.params.items():
        name = key.replace("__", ".")
        if name in model.shared:                # one value for every layer (EP's start variance): it must act
            assert param.grad is not None and param.grad.abs().sum() > 0, name
            continue
        if param.grad is None or not param.requires_grad:
            continue
        per_layer = param.grad.reshape(3, -1).abs().sum(-1)
        assert (per_layer[:2] > 0).all(), (name, per_layer)
        if name == "variance_floor":          # the last floor reaches the output only where it clamps the cavity
            continue
        assert (per_layer[2] > 0) == (name not in dead), (name, per_layer)


def test_ep_takes_scalar_and_per_sample_parameters():
    p = _det(4, 4, "qpsk", (6.0, 12.0))
    inst = p.sample(40, generator(23))
    from autounfold.algorithms.ep import ExpectationPropagation
    a = solve(p, inst, ExpectationPropagation(), {"damping_logit": 0.5, "obs_scale": 1.3}, 3).x
    b = solve(p, inst, ExpectationPropagation(), {"damping_logit": torch.full((40,), 0.5), "obs_scale": torch.full((40,), 1.3)}, 3).x
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, expectation_propagation(p, inst, 3), atol=1e-3)      # the parameters act


@pytest.mark.parametrize("preset,layer", [("admm_net", "admm"), ("admm_net", "admm_net"),
                                          ("admm_detection", "admm"), ("admm_detection", "admm_net")])
def test_unfolded_admm_with_the_classical_parameters_is_classical_admm(preset, layer):
    model = build_model(load_config(f"preset:{preset}", [f"model.layer={layer}", "model.num_layers=4",
                                                         "model.step_init=0.4"])).eval()
    p = model.problem
    if p.name == "lasso":
        inst = p.sample(32, generator(3))
        if layer == "admm_net":
            _set(model, threshold=p.lam / (0.4 * p.lipschitz))
    else:
        inst = p.sample(64, generator(3))
    with torch.no_grad():
        got = model.run(inst)
    assert torch.allclose(got, admm(p, inst, 4, 0.4), atol=1e-5)


def test_admm_layers_run_at_other_sizes_and_give_probabilities():
    model = build_model(load_config("preset:admm_detection", ["model.num_layers=2"])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    other = _det(3, 6, "qpsk").sample(5, generator(4))
    P = model(other.y, other.H, other.noise_var)
    assert P.shape == (5, 3, 4) and torch.allclose(P.sum(-1), torch.ones(5, 3), atol=1e-5) and (P >= 0).all()


def test_tune_admm_picks_the_grid_point_with_the_best_score():
    p = build_problem(load_config("preset:admm_net").problem)
    val = p.sample(200, generator(5))
    (rho, alpha), score = tune_admm(p, val, 4, penalties=(0.01, 0.1, 10.0), relaxations=(1.0, 1.5))
    every = {(r, a): p.summarize(admm(p, val, 4, r, a), val, val.x_true)["nmse_db"]
             for r in (0.01, 0.1, 10.0) for a in (1.0, 1.5)}
    assert (rho, alpha) == min(every, key=every.get) and score[0] == pytest.approx(every[(rho, alpha)])


def test_admm_net_training_beats_its_classical_start_on_the_lasso():
    cfg = load_config("preset:admm_net", ["training.steps=150", "training.validate_every=50",
                                          "training.validation_batch=500", "model.num_layers=4"])
    model = build_model(cfg)
    p = model.problem
    test = p.sample(1000, generator(6, "test"))
    start = p.summarize(model.run(test).detach(), test, test.x_true)["nmse_db"]
    train(model, cfg.training, seed=0, progress=False)
    with torch.no_grad():
        after = p.summarize(model.run(test), test, test.x_true)["nmse_db"]
    assert after < start - 0.5, (start, after)


# ---- EP --------------------------------------------------------------------------------------------
def _sionna_cov(inst):
    return inst.noise_var.view(-1, 1, 1) * torch.eye(inst.H.shape[-2], dtype=inst.H.dtype)


@pytest.mark.parametrize("modulation,n", [("qpsk", 4), ("16qam", 6)])
def test_our_ep_equals_sionnas_on_shared_inputs(modulation, n):
    from sionna.phy.mimo import EPDetector
    p = _det(n, n, modulation, (8.0, 14.0))
    inst = p.sample(300, generator(7))
    bits = p.bits_per_symbol
    for K in (1, 4):
        theirs = torch.log_softmax(EPDetector("symbol", bits, hard_out=False, l=K)(inst.y, inst.H, _sionna_cov(inst)).float(), -1)
        ours = expectation_propagation(p, inst, K)
        # the same decisions wherever Sionna's top two probabilities are apart: a near tie (0.5017 against 0.4973
        # was seen) is decided by float32 rounding, which differs between machines and library builds
        top2 = theirs.exp().topk(2, -1).values
        clear = (top2[..., 0] - top2[..., 1]) > 0.02
        assert clear.float().mean() > 0.9
        assert torch.equal(ours.argmax(-1)[clear], theirs.argmax(-1)[clear])
        assert (ours.exp() - theirs.exp()).abs().max() < 0.05          # float32 rounding through K inversions
    # in float64 the two agree to rounding on nearly every sample (EP's cavity 1 / (1 / Sigma - lam) amplifies
    # the last bits on a few ill-conditioned ones)
    i64 = DetectionBatch(inst.y.to(torch.complex128), inst.H.to(torch.complex128), inst.noise_var.double(), inst.s,
                         inst.snr_db)
    from autounfold.algorithms.ep import ExpectationPropagation
    theirs = torch.log_softmax(EPDetector("symbol", bits, hard_out=False, l=4, precision="double")(i64.y, i64.H, _sionna_cov(i64)), -1)
    ours = solve(p, i64, ExpectationPropagation(), {"damping": 0.9, "variance_floor": 1e-12}, 4).x
    diff = (ours.exp() - theirs.exp()).abs().amax((-2, -1))
    assert diff.median() < 1e-10 and diff.max() < 1e-3


def test_pam_alphabet_maps_each_point_to_its_real_and_imaginary_levels():
    p = _det(2, 2, "16qam")
    pam, re, im = pam_alphabet(p)
    assert pam.numel() == 4 and torch.allclose(pam, torch.tensor([-3.0, -1.0, 1.0, 3.0], dtype=pam.dtype) / math.sqrt(10))
    assert torch.allclose(torch.complex(pam[re], pam[im]).to(torch.complex64), p.constellation)


def test_learned_ep_with_the_classical_parameters_is_classical_ep_and_runs_at_other_sizes():
    model = build_model(load_config("preset:learned_ep", ["model.num_layers=3", "model.step_init=0.9"])).eval()
    p = model.problem
    inst = p.sample(64, generator(8))
    with torch.no_grad():
        got = model.run(inst)
        v = model.layer_values(0)
    beta, floor = float(torch.sigmoid(v["damping_logit"])), float(v["variance_floor"])
    assert beta == pytest.approx(0.9, rel=1e-6) and floor == pytest.approx(1e-6, rel=1e-5) and float(v["temperature"]) == 1.0
    from autounfold.algorithms.ep import ExpectationPropagation
    classical = solve(p, inst, ExpectationPropagation(), {"damping": beta, "variance_floor": floor}, 3).x
    assert torch.allclose(got, classical, atol=1e-5)                # the same update rule at the stored parameters
    assert torch.equal(got.argmax(-1), expectation_propagation(p, inst, 3, 0.9).argmax(-1))
    other = _det(3, 5, "16qam").sample(4, generator(9))
    P = model(other.y, other.H, other.noise_var)
    assert P.shape == (4, 3, 16) and torch.allclose(P.sum(-1), torch.ones(4, 3), atol=1e-5)


def test_ep_prior_scale_is_the_start_variance_and_learned_ep_prior_starts_classical():
    """prior_scale c scales the variance EP starts from (lam = 1 / (c Es)), read on the first iteration only:
    one EP iteration from it equals the Gaussian posterior under the prior N(0, c Es) written out by hand;
    the learned_ep_prior layer at its start (c = 1) is classical EP."""
    from autounfold.algorithms.ep import ExpectationPropagation, pam_alphabet, real_model
    p = _det(4, 4, "16qam", (10.0, 10.0))
    inst = p.sample(64, generator(31))
    c = 1.7
    out = solve(p, inst, ExpectationPropagation(), {"damping": 0.5, "prior_scale": c}, 1).x
    gram, hty = real_model(inst)
    pam = pam_alphabet(p)[0].to(gram.dtype)
    lam = 1.0 / (c * pam.var())
    A = gram + 0.5 * lam * torch.eye(gram.shape[-1])
    mu = torch.linalg.solve(A, hty.unsqueeze(-1)).squeeze(-1)
    sigma = 0.5 * torch.linalg.inv(A).diagonal(dim1=-2, dim2=-1)
    v_obs = 1.0 / (1.0 / sigma - lam)
    x_obs = v_obs * mu / sigma
    U = 4
    logits = -(x_obs.unsqueeze(-1) - pam).square() / (2.0 * v_obs.unsqueeze(-1))
    _, re, im = pam_alphabet(p)
    want = torch.log_softmax(logits[:, :U][..., re] + logits[:, U:][..., im], -1)
    assert torch.allclose(out, want, atol=1e-4)
    assert not torch.allclose(out, solve(p, inst, ExpectationPropagation(), {"damping": 0.5}, 1).x, atol=1e-3)
    # a per-sample value acts as the scalar does
    per_sample = solve(p, inst, ExpectationPropagation(), {"damping": 0.5, "prior_scale": torch.full((64,), c)}, 3).x
    assert torch.allclose(per_sample, solve(p, inst, ExpectationPropagation(), {"damping": 0.5, "prior_scale": c}, 3).x, atol=1e-6)
    # only the first iteration reads it: from a started state, a step with it is the step without it
    ep = ExpectationPropagation()
    st = ep.step(p, inst, ep.init_state(p.init(inst)), {"damping": 0.5, "prior_scale": c})
    with_c, without = ep.step(p, inst, st, {"damping": 0.5, "prior_scale": c}), ep.step(p, inst, st, {"damping": 0.5})
    assert torch.equal(with_c.x, without.x) and torch.equal(with_c.lam, without.lam)
    model = build_model(load_config("preset:learned_ep", ["model.layer=learned_ep_prior", "model.num_layers=3",
                                                          "model.step_init=0.9"])).eval()
    assert model.shared == {"prior_scale"} and model.params["prior_scale"].shape == (1,)
    with torch.no_grad():
        got = model.run(inst)
        v = model.layer_values(0)               # the stored values (0.9 and 1e-6 to float32 rounding)
        knobs = {"damping": torch.sigmoid(v["damping_logit"]), "variance_floor": v["variance_floor"]}
    assert float(v["prior_scale"]) == 1.0
    assert torch.allclose(got, solve(p, inst, ExpectationPropagation(), knobs, 3).x, atol=1e-5)
    with torch.no_grad():
        _set(model, prior_scale=c)
        moved = model.run(inst)
        want = solve(p, inst, ExpectationPropagation(), {**knobs, "prior_scale": model.layer_values(0)["prior_scale"]}, 3).x
    assert not torch.allclose(moved, got, atol=1e-3) and torch.allclose(moved, want, atol=1e-5)


def test_refine_searches_the_shared_start_variance_and_a_layer_without_it_is_refused():
    """training.refine over learned_ep_prior's one shared value (a (1,) parameter: one coordinate), and the
    preset's refine list on a layer that lacks it is refused naming the field and the way out."""
    from autounfold.training.trainer import refine, refine_parameters
    from autounfold.config import RefineConfig
    model = build_model(load_config("preset:learned_ep", ["model.num_layers=2", "model.step_init=0.9"]))
    assert refine_parameters(model, ["prior_scale"]) == ["prior_scale"]
    _set(model, prior_scale=8.0)                 # a start variance far off: the search moves it and the SER falls
    cfg = RefineConfig(params=["prior_scale"], sweeps=1, batch=512, offsets=[-2.0, -1.0, 1.0])
    res = refine(model, cfg, ["prior_scale"], model.problem, seed=3)
    assert res["evaluations"] == 1 + 3 and res["end"] >= res["start"]
    assert res["end"] > res["start"] and float(model.params["prior_scale"].exp()) < 8.0 / 2.0
    scaled = build_model(load_config("preset:learned_ep", ["model.layer=learned_ep_scaled", "model.num_layers=2"]))
    with pytest.raises(ConfigError, match=r"training.refine.params: 'prior_scale' not among .*set training.refine.params"):
        refine_parameters(scaled, load_config("preset:learned_ep").training.refine.params)


def test_ep_converges_to_near_ml_and_tuning_picks_the_best_damping():
    p = _det(4, 4, "qpsk", (8.0, 8.0))
    inst = p.sample(3000, generator(10))
    ser = {name: p.summarize(x, inst, inst.s)["ser"] for name, x in
           (("lmmse", D.lmmse(p, inst)), ("ep", expectation_propagation(p, inst, 10, 0.5)), ("ml", D.ml(p, inst)))}
    assert ser["ml"] <= ser["ep"] < ser["lmmse"]
    b, (s, _) = tune_ep(p, inst, 3, dampings=(0.2, 0.9))
    other = 0.9 if b == 0.2 else 0.2
    assert s <= p.summarize(expectation_propagation(p, inst, 3, other), inst, inst.s)["ser"]


def test_noise_error_misinforms_the_receiver_only():
    a = _det(4, 4).sample(200, generator(11))
    b = _det(4, 4, noise_error_db=3.0).sample(200, generator(11))
    assert torch.equal(a.y, b.y) and torch.equal(a.H, b.H) and torch.equal(a.s, b.s)
    ratio_db = 10 * torch.log10(b.noise_var / a.noise_var)
    assert ratio_db.abs().max() <= 3.0 + 1e-4 and ratio_db.std() > 1.0


# ---- configs, CLI --------------------------------------------------------------------------------
def test_bad_configs_name_the_field():
    with pytest.raises(ConfigError, match="step_init"):
        build_model(load_config("preset:learned_ep", ["model.step_init=1.5"]))
    with pytest.raises(ConfigError, match="noise_error_db"):
        load_config("preset:learned_ep", ["problem.noise_error_db=-1"])
    with pytest.raises(ConfigError, match="model.layer 'admm_net' does not apply to beamforming"):
        load_config("preset:auto_pgd", ["model.layer=admm_net"])
    with pytest.raises(ConfigError, match="step_init must be > 0"):
        build_model(load_config("preset:admm_net", ["model.step_init=-0.1"]))
    with pytest.raises(ConfigError, match="EP damping"):
        expectation_propagation(_det(), _det().sample(2, 0), 3, 1.0)


def test_evaluate_lists_tuned_admm_and_ep_beside_the_model(tmp_path):
    from autounfold.evaluation.evaluate import evaluate_model
    model = build_model(load_config("preset:admm_detection", ["model.num_layers=2"])).eval()
    rows = evaluate_model(model, ["nominal"], batch=256)
    methods = {r["method"] for r in rows}
    assert {"ADMM, tuned penalty and relaxation-2", "expectation propagation, tuned damping-2"} <= methods, methods
    lasso = build_model(load_config("preset:admm_net", ["model.num_layers=2"])).eval()
    rows = evaluate_model(lasso, ["nominal"], batch=128)
    assert "ADMM, tuned penalty and relaxation-2" in {r["method"] for r in rows}


@pytest.mark.parametrize("preset", ["admm_detection", "learned_ep"])
def test_export_matches_the_eager_model(tmp_path, preset):
    from autounfold.deploy.export import EXPORTERS, load_torchscript
    model = build_model(load_config(f"preset:{preset}", ["model.num_layers=2"])).eval()
    if "prior_scale" in model.kinds:            # off its start value of 1, so the exported model must carry it
        _set(model, prior_scale=2.5)
    path = EXPORTERS["torchscript"](model, tmp_path / "m.pt")
    module = load_torchscript(path)
    inst = model.problem.sample(6, generator(12))
    got = module(torch.view_as_real(inst.y), torch.view_as_real(inst.H), inst.noise_var)
    assert torch.allclose(got, model(inst.y, inst.H, inst.noise_var), atol=1e-5)


def test_cli_trains_saves_and_loads_an_admm_net(tmp_path):
    from typer.testing import CliRunner

    from autounfold.cli import app
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["train", "preset:admm_net", "--set", "training.steps=20", "--set",
                                 "training.validate_every=10", "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = autounfold.load(out)
    y = model.problem.sample(3, generator(13)).y
    assert model(y).shape == (3, 50)


def test_textbook_benchmark_rejects_bad_options_and_reads_its_bars(tmp_path):
    from autounfold.evaluation.textbook_benchmark import _bars, run_textbook_benchmark
    with pytest.raises(ConfigError, match="sections must be among"):
        run_textbook_benchmark(tmp_path / "o", sections=["lasso", "nope"])
    with pytest.raises(ConfigError, match="test_size"):
        run_textbook_benchmark(tmp_path / "o", sections=["lasso"], test_size=10)
    assert not (tmp_path / "o").exists()
    lasso = {"section": "lasso", "depth": 4, "nmse_db": {"ADMM-8, tuned": -17.0, "ADMM-Net (x), 4 layers": -17.5}}
    det = {"section": "admm_detection", "depth": 5, "snrs": [0, 10],
           "snr_at_1e-2": {"ADMM-10, tuned at each SNR": 9.0, "ADMM-Net (y), 5 layers": 9.4}}
    ep = {"section": "ep", "depth": 5, "snrs": [8, 20],
          "snr_at_1e-2": {"EP-10, damping tuned at each SNR": 12.0, "EP-10, damping 0.9 (Sionna's)": 12.1,
                          "learned EP-5": 12.0}}
    bars = _bars([lasso, det, ep])
    got = [(round(b["measured"], 6), b["met"]) for b in bars]
    # LASSO gain 0.5 dB; ADMM-Net 0.4 dB worse than ADMM-10 (missed); learned EP at tuned EP-10's SNR (met: >= 0)
    # and 0.1 dB better than Sionna's damping
    assert got == [(0.5, True), (-0.4, False), (0.0, True), (0.1, True)], bars
    assert "ADMM-8 " in bars[0]["bar"] and "ADMM-10" in bars[1]["bar"] and "EP-10" in bars[2]["bar"]


def test_refresh_quotes_rereads_only_the_detection_benchmarks_rows(tmp_path):
    """``benchmark-textbook --refresh-quotes``: the committed textbook result with a later detection run's
    curves (here the committed detection JSON with DetNet's and K-best's curves changed): the quoted
    rows and their crossings follow it, the textbook's own rows stay, the report says so; a missing
    result or a detection run on other test draws is a one-line error that writes nothing."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    from autounfold.evaluation.textbook_benchmark import QUOTED, refresh_quotes
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    out = tmp_path / "o"
    out.mkdir()
    shutil.copy(bench / "textbook_benchmark.json", out)
    before = json.loads((out / "textbook_benchmark.json").read_text())
    det = json.loads((bench / "detection_benchmark.json").read_text())
    for e in det["cases"]:
        e["curves"]["DetNet"] = [0.5 * v for v in e["curves"]["DetNet"]]
        e["curves"].pop("K-best (K=16, Sionna)")
    source = tmp_path / "detection_benchmark.json"
    source.write_text(json.dumps(det))
    with pytest.raises(ConfigError, match="no textbook_benchmark.json"):
        refresh_quotes(tmp_path / "empty", source)
    assert not (tmp_path / "empty").exists()
    with pytest.raises(ConfigError, match="no detection results at"):
        refresh_quotes(out, tmp_path / "nowhere.json")
    lasso_only = tmp_path / "lasso"
    lasso_only.mkdir()
    (lasso_only / "textbook_benchmark.json").write_text(json.dumps(
        {**before, "sections": [e for e in before["sections"] if e["section"] == "lasso"]}))
    with pytest.raises(ConfigError, match="no section that quotes the detection benchmark"):
        refresh_quotes(lasso_only, source)
    assert [p.name for p in lasso_only.iterdir()] == ["textbook_benchmark.json"]
    assert sorted(p.name for p in out.iterdir()) == ["textbook_benchmark.json"]

    after = refresh_quotes(out, source)
    cases = {e["case"]: e for e in det["cases"]}
    quoting = [e for e in after["sections"] if e["section"] in ("admm_detection", "ep")]
    assert len(quoting) == 2
    for e, old in ((e, next(o for o in before["sections"] if o["section"] == e["section"])) for e in quoting):
        src = cases[e["case"]]
        idx = [src["snrs"].index(v) for v in e["snrs"]]
        assert e["curves"]["DetNet" + QUOTED] == [src["curves"]["DetNet"][i] for i in idx]
        assert "K-best (K=16, Sionna)" + QUOTED not in e["curves"]            # gone from the source: gone here
        own = {k: v for k, v in old["curves"].items() if not k.endswith(QUOTED)}
        assert {k: v for k, v in e["curves"].items() if not k.endswith(QUOTED)} == own
        assert all(e["snr_at_1e-2"][k] == old["snr_at_1e-2"][k] for k in own)
        assert e["snr_at_1e-2"]["DetNet" + QUOTED] != old["snr_at_1e-2"]["DetNet" + QUOTED]
    md = (out / "TEXTBOOK_RESULTS.md").read_text()
    assert "re-read from its detection_benchmark.json" in md and "--refresh-quotes" in md
    assert json.loads((out / "textbook_benchmark.json").read_text())["setup"]["quotes_refreshed"]["from"] == source.name
    assert {p.name for p in out.glob("*.png")} == {e["plot"] for e in quoting}

    written = {p.name: p.read_bytes() for p in out.iterdir()}
    det["setup"]["seed"] = 1                                                  # other test draws
    source.write_text(json.dumps(det))
    with pytest.raises(ConfigError, match="no 4x4_qpsk curves on this result's test draws"):
        refresh_quotes(out, source)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    cli = [sys.executable, "-m", "autounfold.cli", "benchmark-textbook", "--out", str(out), "--refresh-quotes"]
    run = subprocess.run(cli + ["--steps", "3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "takes --out alone (got --steps)" in run.stderr
    run = subprocess.run(cli + ["--seed", "0"], capture_output=True, text=True, timeout=120)   # typed, though the default
    assert run.returncode == 2 and "takes --out alone (got --seed)" in run.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    det["setup"]["seed"] = 0
    for e in det["cases"]:
        e["curves"]["DetNet"] = [2.0 * v for v in e["curves"]["DetNet"]]          # the first change undone
    source.write_text(json.dumps(det))
    run = subprocess.run(cli + ["--detection-json", str(source)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    again = json.loads((out / "textbook_benchmark.json").read_text())
    for e, old in zip((e for e in again["sections"] if e["section"] in ("admm_detection", "ep")), quoting):
        src = cases[e["case"]]
        assert e["curves"]["DetNet" + QUOTED] == [src["curves"]["DetNet"][src["snrs"].index(v)] for v in e["snrs"]]
    assert not [p for p in out.iterdir() if p.name.startswith(".refresh-")]


def test_textbook_ep_depth_bars_compare_each_depth_with_twice_its_iterations():
    """The depth section: each learned EP-k below the preset's depth K against EP-2k (tuned and Sionna's 0.9),
    read with its own k (not the section's K); the preset's own depth is left to the ep section's bars; the
    summary row's gain is over the better EP-2k."""
    from autounfold.evaluation.textbook_benchmark import _bars, _ep_depth_markdown
    at = {"learned EP-4": 12.33, "learned EP-6": 11.81,
          "EP-4, damping tuned at each SNR": 12.60, "EP-4, damping 0.9 (Sionna's)": 12.70,
          "EP-8, damping tuned at each SNR": 12.05, "EP-8, damping 0.9 (Sionna's)": 12.01,
          "EP-6, damping tuned at each SNR": 12.10, "EP-6, damping 0.9 (Sionna's)": 12.19,
          "EP-12, damping tuned at each SNR": 11.90, "EP-12, damping 0.9 (Sionna's)": 11.87}
    e = {"section": "ep_depth", "depth": 6, "snrs": [8, 20], "depths": {"learned EP-4": 4, "learned EP-6": 6},
         "snr_at_1e-2": at}
    bars = _bars([e])
    assert [(b["bar"].split(":")[0], round(b["measured"], 6), b["met"]) for b in bars] == [
        ("8x8 16-QAM at depth 4", -0.28, False), ("8x8 16-QAM at depth 4", -0.32, False)], bars
    assert "EP-8, damping tuned" in bars[0]["bar"] and "EP-8, damping 0.9" in bars[1]["bar"]
    rows = [line for line in _ep_depth_markdown(e) if line.startswith("| 4 ") or line.startswith("| 6 ")]
    assert rows == ["| 4 | 12.33 | 12.60 | 12.70 | 12.05 | 12.01 | -0.32 |",
                    "| 6 | 11.81 | 12.10 | 12.19 | 11.90 | 11.87 | +0.06 |"], rows
    assert _ep_depth_markdown({"section": "ep"}) == []


def test_textbook_unseen_tables_compare_with_the_strongest_classical_baseline():
    """The 'not trained on' tables: the LASSO column is the network minus the better of ADMM-K and
    ADMM-2K tuned there; the detection column the network's SNR at 1e-2 minus tuned ADMM-2K's, a dash
    where a curve never reaches 1e-2."""
    from autounfold.evaluation.textbook_benchmark import _unseen_detection_markdown, _unseen_lasso_markdown
    lasso = {"depth": 4, "test_size": 100, "unseen": [
        {"condition": "low SNR", "nmse_db": {"ADMM-4, tuned here": -8.5, "ADMM-8, tuned here": -8.0,
                                             "ADMM-8, nominal knobs": -7.9, "ADMM-Net (x), 4 layers (unchanged)": -7.7}},
        {"condition": "sparser", "nmse_db": {"ADMM-4, tuned here": -20.0, "ADMM-8, tuned here": -21.0,
                                             "ADMM-8, nominal knobs": -20.5, "ADMM-Net (x), 4 layers (unchanged)": -22.0}}]}
    rows = [line for line in _unseen_lasso_markdown(lasso) if line.startswith("| low") or line.startswith("| sparser")]
    assert rows[0].endswith("| +0.80 |") and rows[1].endswith("| -1.00 |"), rows
    det = {"depth": 5, "test_size": 100, "snrs": [0, 8, 16], "unseen": [
        {"condition": "8 x 8", "snrs": [0, 8, 16], "snr_at_1e-2": {"LMMSE": None, "ADMM-10, tuned at each SNR": 11.0,
                                                "ADMM-Net (y), 5 layers": 10.6}},
        {"condition": "UMi", "snrs": [0, 8, 16], "snr_at_1e-2": {"LMMSE": None, "ADMM-10, tuned at each SNR": None,
                                             "ADMM-Net (y), 5 layers": 12.0}}]}
    rows = [line for line in _unseen_detection_markdown(det) if line.startswith("| 8 x 8") or line.startswith("| UMi")]
    assert rows[0].endswith("| -0.40 |") and rows[1].endswith("| — |") and "| — |" in rows[0], rows
    assert _unseen_lasso_markdown({"depth": 4}) == [] and _unseen_detection_markdown({"depth": 5}) == []


def test_textbook_training_table_says_when_refine_moved_a_network_the_steps_left_at_its_start():
    from autounfold.evaluation.textbook_benchmark import _validation_best
    assert _validation_best({"best_step": 0, "validation_best": -0.0307}) == "kept the start"
    assert _validation_best({"best_step": 500, "validation_best": -0.0289}) == "-0.0289 (500)"
    assert _validation_best({"best_step": 0, "validation_best": -0.0289, "refined": True}) == \
        "-0.0289 (refined; the steps kept the start)"
    assert _validation_best({"best_step": 500, "validation_best": -0.0247, "refined": True}) == \
        "-0.0247 (refined; the steps kept step 500)"

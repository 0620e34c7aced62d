"""Wideband hybrid precoding: the rate and its gradients, the projections, the update rule of the
classical and the unfolded PGA, the fully-digital bound and the baselines, the model API on other
sizes, and config / input errors."""
import json
import math
import subprocess
import sys

import pytest
import torch

import autounfold
from autounfold.algorithms import reference, solve
from autounfold.algorithms.hybrid_pga import FullyDigitalWMMSE, HybridPGA
from autounfold.algorithms.proximal_gradient import State
from autounfold.build import build_model
from autounfold.channels.wideband import WidebandConfig, WidebandSource
from autounfold.config import load_config
from autounfold.errors import ConfigError, InputError
from autounfold.evaluation.baselines import CLASSICAL, altmin, hybrid_pga
from autounfold.evaluation.evaluate import evaluate_model
from autounfold.problems.hybrid import HybridConfig, HybridPrecodingProblem, project_analog, project_stacked
from autounfold.training import train

SMALL = ["problem.n_antennas=8", "problem.n_rf=4", "problem.n_bands=3", "problem.n_users=3",
         "model.num_layers=3", "model.step_init=0.5", "training.validation_batch=32", "training.batch_size=16"]


def _problem(M=8, L=4, NB=3, N=3, objective="logdet", model="clustered", snr=(0.0, 20.0)):
    cfg = HybridConfig(n_antennas=M, n_rf=L, n_bands=NB, n_users=N, objective=objective,
                       channel=WidebandConfig(model=model, snr_db=snr))
    return HybridPrecodingProblem.from_config(cfg)


def _double(p, inst):
    inst.H = inst.H.to(torch.complex128)
    inst.noise_var = inst.noise_var.double()
    return inst


@pytest.mark.parametrize("objective", ["logdet", "sum_rate"])
def test_gradients_match_autograd(objective):
    """The analog and digital gradients (packed) equal autograd's dR/dRe + j dR/dIm, both objectives."""
    p = _problem(objective=objective)
    inst = _double(p, p.sample(5, 0))
    x = (p.init(inst, "random", seed=3).to(torch.complex128) * 0.9).detach()
    xr = torch.view_as_real(x).clone().requires_grad_(True)
    p.objective(torch.view_as_complex(xr), inst).sum().backward()
    torch.testing.assert_close(p.gradient(x, inst), torch.view_as_complex(xr.grad), rtol=1e-9, atol=1e-9)


def test_logdet_rate_is_eq_11():
    p = _problem()
    inst = _double(p, p.sample(4, 1))
    x = p.init(inst).to(torch.complex128)
    W_a, W_d = p.unpack(x, inst)
    expect = torch.zeros(4, dtype=torch.float64)
    for b in range(p.n_bands):
        E = inst.H[:, b] @ W_a @ W_d[:, b]
        A = torch.eye(p.n_users, dtype=E.dtype) + E @ E.mH / inst.noise_var.view(-1, 1, 1)
        expect += torch.linalg.slogdet(A).logabsdet / math.log(2.0) / p.n_bands
    torch.testing.assert_close(p.objective(x, inst).double(), expect)


def test_pack_unpack_round_trip_and_public_layout():
    p = _problem()
    inst = p.sample(3, 2)
    W_a = torch.randn(3, 8, 4, dtype=torch.complex64)
    W_d = torch.randn(3, 3, 4, 3, dtype=torch.complex64)
    a, d = p.unpack(p.pack(W_a, W_d), inst)
    assert torch.equal(a, W_a) and torch.equal(d, W_d)
    F = p.precoders(p.pack(W_a, W_d), inst)
    torch.testing.assert_close(F, W_a.unsqueeze(1) @ W_d)


def test_projections_are_feasible_and_idempotent():
    p = _problem()
    inst = p.sample(6, 3)
    z = torch.randn(6, p.init(inst).shape[-1], dtype=torch.complex64) * 3
    z[0, 0] = 0                                                  # a zero analog entry still gets modulus 1
    x = p.prox(z, inst)
    assert p.feasible(x, inst).all()
    torch.testing.assert_close(p.prox(x, inst), x)
    W_a, _ = p.unpack(x, inst)
    torch.testing.assert_close(W_a.abs(), torch.ones_like(W_a.real))
    torch.testing.assert_close(project_analog(W_a), W_a)


def test_digital_given_analog_is_optimal_for_logdet():
    """The water-filled digital precoder is the best one for its analog precoder: no random
    perturbation (rescaled to the power) beats it."""
    p = _problem()
    inst = p.sample(8, 4)
    x = p.init(inst, "random", seed=1)
    best = p.objective(x, inst)
    W_a, W_d = p.unpack(x, inst)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        noise = torch.randn(*W_d.shape, 2, generator=g)
        y = p.prox(p.pack(W_a, W_d + 0.05 * torch.view_as_complex(noise)), inst)
        assert (p.objective(y, inst) <= best + 1e-4).all()


@pytest.mark.parametrize("objective", ["logdet", "sum_rate"])
def test_fully_digital_reference_is_above_the_hybrid_solvers(objective):
    p = _problem(objective=objective)
    inst = p.sample(32, 5)
    F = reference(p, inst)
    bound = p.objective(F, inst)
    for x in (p.init(inst), hybrid_pga(p, inst, 20, {"step_analog": 0.03, "step_digital": 0.03}), altmin(p, inst, 5)):
        assert p.feasible(x, inst).all()
        if objective == "logdet":                                # an exact bound, channel by channel
            assert (p.objective(x, inst) <= bound * (1 + 1e-4)).all()
        else:                                                    # a local optimum: above on average
            assert float(p.objective(x, inst).mean()) <= float(bound.mean())
    if objective == "sum_rate":                                  # WMMSE from RZF improves on RZF
        assert (bound >= p.objective(p.fully_digital(inst), inst) - 1e-4).all()
        assert float(bound.mean()) > float(p.objective(p.fully_digital(inst), inst).mean())


def test_small_pga_steps_ascend_from_the_best_digital_precoder():
    """Eq. 12 with the whitened digital step is an ascent step: a small step never lowers the rate,
    also from the best digital precoder for the analog one (where the literal eq. 12b does)."""
    p = _problem()
    inst = _double(p, p.sample(16, 6))
    x = p.init(inst).to(torch.complex128)
    for steps in ({"step_analog": 1e-3, "step_digital": 1e-3}, {"step_analog": 0.0, "step_digital": 1e-3}):
        y = HybridPGA().step(p, inst, State(x, x), steps).x
        assert (p.objective(y, inst) >= p.objective(x, inst) - 1e-9).all()
    # the literal eq. 12b: the plain digital gradient (same norm scaling), then scaling to the power
    W_a, D = p.unpack_stacked(x, inst)
    g = W_a.mH @ p.stack(p.rate_gradient(p.stacked_precoders(W_a, D, inst), inst))
    plain = D + 1e-3 * (D.abs().square().sum((-2, -1), keepdim=True) / g.abs().square().sum((-2, -1), keepdim=True)).sqrt() * g
    y = p.pack_stacked(W_a, project_stacked(W_a, plain, p.n_bands, p.power))
    assert (p.objective(y, inst) < p.objective(x, inst)).all()


@pytest.mark.parametrize("layer", ["hybrid_pga", "hybrid_pga_band", "hybrid_pga_momentum"])
def test_unfolded_pga_at_its_initial_steps_is_classical_pga(layer):
    cfg = load_config("preset:hybrid", SMALL + [f"model.layer={layer}", "model.digital_step_init=0.2",
                                                "model.momentum_init=0.3"] if layer.endswith("momentum") else
                      SMALL + [f"model.layer={layer}", "model.digital_step_init=0.2"])
    model = build_model(cfg)
    inst = model.problem.sample(16, 7)
    params = {"step_analog": 0.5, "step_digital": 0.2}
    if layer.endswith("momentum"):
        params["momentum"] = 0.3
    with torch.no_grad():
        torch.testing.assert_close(model.run(inst), solve(model.problem, inst, HybridPGA(), params, 3).x,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("M, L, NB, N", [(8, 4, 3, 3), (16, 6, 1, 2), (5, 5, 4, 5), (32, 10, 2, 1)])
def test_outputs_are_feasible_for_every_shape(M, L, NB, N):
    cfg = load_config("preset:hybrid", SMALL + [f"problem.n_antennas={M}", f"problem.n_rf={L}",
                                                f"problem.n_bands={NB}", f"problem.n_users={N}"])
    model = build_model(cfg)
    inst = model.problem.sample(6, 8)
    with torch.no_grad():
        W_a, W_d = model(inst.H, inst.noise_var)
    assert W_a.shape == (6, M, L) and W_d.shape == (6, NB, L, N)
    assert W_a.dtype == W_d.dtype == torch.complex64
    torch.testing.assert_close(W_a.abs(), torch.ones(6, M, L), rtol=1e-5, atol=1e-5)
    power = (W_a.unsqueeze(1) @ W_d).abs().square().sum((-2, -1))
    torch.testing.assert_close(power, torch.ones(6, NB), rtol=1e-4, atol=1e-4)


def test_one_model_serves_other_antenna_and_band_counts_and_the_band_layer_says_what_it_fixes():
    model = build_model(load_config("preset:hybrid", SMALL))
    other = WidebandSource(16, 3, 5, WidebandConfig()).sample(4, 0)
    W_a, W_d = model(other.H, other.noise_var)
    assert W_a.shape == (4, 16, 4) and W_d.shape == (4, 5, 4, 3)
    band = build_model(load_config("preset:hybrid", SMALL + ["model.layer=hybrid_pga_band"]))
    assert band.params["step_digital"].shape == (3, 3)
    with pytest.raises(InputError, match="n_bands=5.*fix n_bands=3"):
        band(other.H, other.noise_var)


def test_saved_model_api_and_input_errors(tmp_path):
    cfg = load_config("preset:hybrid", SMALL)
    model = build_model(cfg)
    autounfold.save(model, tmp_path / "m", cfg)
    loaded = autounfold.load(tmp_path / "m")
    pr = loaded.problem
    assert (pr.n_antennas, pr.n_rf, pr.n_bands, pr.n_users) == (8, 4, 3, 3)
    inst = pr.sample(5, 0)
    W_a, W_d = loaded(inst.H, inst.noise_var)
    torch.testing.assert_close(pr.pack(W_a, W_d), model.run(inst))
    with pytest.raises(InputError, match="n_rf=4"):
        loaded(WidebandSource(8, 5, 3, WidebandConfig()).sample(2, 0).H, inst.noise_var[:2])
    with pytest.raises(InputError, match="shape \\(B, n_bands, n_users, n_antennas\\)"):
        loaded(inst.H[:, 0], inst.noise_var)
    with pytest.raises(InputError, match="noise_var must be finite and > 0"):
        loaded(inst.H, -inst.noise_var)


@pytest.mark.parametrize("overrides, message", [
    (["problem.n_rf=20"], "need n_users <= n_rf <= n_antennas"),
    (["problem.n_users=12"], "need n_users <= n_rf <= n_antennas"),
    (["problem.channel.model=rician"], "channel.model"),
    (["problem.channel.snr_db=[20, 0]"], "low <= high"),
    (["problem.objective=capacity"], "objective"),
    (["problem.init=subspce"], "problem.init: Input should be 'svd', 'subspace' or 'random'"),
    (["model.layer=signed"], "model.layer 'signed' does not apply to hybrid_precoding"),
    (["model.layer=lista", "model.step_init=0.1"], "model.layer 'lista' does not apply to hybrid_precoding"),
    (["model.digital_step_init=-1", "model.step_init=0.1"], "digital_step_init must be > 0"),
    (["model.gradient_scaling=rayleigh"], "gradient_scaling 'rayleigh' does not apply"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(load_config("preset:hybrid", overrides))


def test_the_generic_pgd_layers_run_one_joint_step_on_the_packed_iterate():
    """``step`` / ``momentum`` (the generic projected gradient, one step for both blocks) also apply."""
    model = build_model(load_config("preset:hybrid", SMALL + ["model.layer=momentum", "model.step_init=0.2"]))
    inst = model.problem.sample(8, 9)
    with torch.no_grad():
        x = model.run(inst)
    assert model.problem.feasible(x, inst).all()
    assert float(model.problem.objective(x, inst).mean()) > 0.9 * float(model.problem.objective(model.problem.init(inst), inst).mean())


def test_digital_step_init_belongs_to_hybrid_layers():
    with pytest.raises(ConfigError, match="digital_step_init applies to layers hybrid_pga"):
        load_config("preset:mu_miso", ["model.digital_step_init=0.5"])


def test_channel_draws_replay_and_are_normalised():
    for model in ("clustered", "iid"):
        src = WidebandSource(16, 4, 8, WidebandConfig(model=model))
        a, b = src.sample(512, 11), src.sample(512, 11)
        assert torch.equal(a.H, b.H) and torch.equal(a.noise_var, b.noise_var)
        assert a.H.shape == (512, 8, 4, 16) and a.H.dtype == torch.complex64
        assert abs(float(a.H.abs().square().mean()) - 1.0) < 0.05
    # bands of the clustered model are correlated (delays up to 4 of 8 samples); with no delay they are equal
    flat = WidebandSource(8, 2, 4, WidebandConfig(max_delay=0.0)).sample(8, 1).H
    torch.testing.assert_close(flat[:, 0], flat[:, 3])


def test_tuned_start_is_the_tuned_classical_pga_on_the_validation_draw():
    from autounfold.algorithms.tuning import HYBRID_INIT_STEPS, tune_hybrid_pga
    from autounfold.seeding import generator
    cfg = load_config("preset:hybrid", SMALL + ["model.step_init=tuned", "model.num_layers=2"])
    model = build_model(cfg)
    m = model.config.model
    p = model.problem
    val = p.sample(32, generator(cfg.seed, "validation"))
    best, score = tune_hybrid_pga(p, val, reference(p, val), 2, steps=HYBRID_INIT_STEPS)
    assert (m.step_init, m.digital_step_init) == (best["step_analog"], best["step_digital"])
    vals = model.scalar_parameters()
    torch.testing.assert_close(torch.tensor(vals["step_analog"]), torch.tensor([m.step_init] * 2))
    torch.testing.assert_close(torch.tensor(vals["step_digital"]), torch.tensor([m.digital_step_init] * 2))
    with torch.no_grad():                                  # the network starts as that classical solver
        assert p.summarize(model.run(val), val, reference(p, val))["pct_of_bound"] == pytest.approx(score, abs=1e-4)
    with pytest.raises(ConfigError, match="digital_step_init: step_init 'tuned' sets it"):
        build_model(load_config("preset:hybrid", SMALL + ["model.step_init=tuned", "model.digital_step_init=0.3"]))


def test_pga_tuning_ends_at_a_point_no_coordinate_move_improves(monkeypatch):
    """The coordinate search's pick: no other momentum at its steps, and no step pair within ``reach``
    places at its momentum, scores better (checked by scoring them independently); it is at least as
    good as the best momentum-free pair and as that pair's best momentum (the earlier two-stage sweep);
    each point is scored once; a thinned first sweep still beats every point of its coarse grid."""
    from autounfold.algorithms import tuning

    p = _problem(objective="sum_rate")          # here momentum 0.9 moves the best digital step from 0.01 to 0.1
    val = p.sample(32, 5)
    ref = reference(p, val)
    steps, momenta, T = tuning.HYBRID_INIT_STEPS, (0.0, 0.5, 0.9), 3

    def score(a, d, m):
        x = solve(p, val, HybridPGA(), {"step_analog": a, "step_digital": d, "momentum": m}, T).x
        return p.score(p.summarize(x, val, ref)) if torch.isfinite(torch.view_as_real(x)).all() else float("-inf")

    calls, real = [], tuning._score
    monkeypatch.setattr(tuning, "_score", lambda *a: calls.append(tuple(sorted(a[-1].items()))) or real(*a))
    best, s = tuning.tune_hybrid_pga(p, val, ref, T, steps=steps, momenta=momenta, reach=1)
    monkeypatch.undo()
    assert len(calls) == len(set(calls))                                       # one score per point
    i, j, m = steps.index(best["step_analog"]), steps.index(best["step_digital"]), best["momentum"]
    assert s == pytest.approx(score(steps[i], steps[j], m), abs=1e-9)
    for mm in momenta:
        assert score(steps[i], steps[j], mm) <= s + 1e-9, mm
    for a in steps[max(0, i - 1):i + 2]:
        for d in steps[max(0, j - 1):j + 2]:
            assert score(a, d, m) <= s + 1e-9, (a, d)
    pair = max(((a, d) for a in steps for d in steps), key=lambda ad: score(*ad, 0.0))
    assert s > max(score(*pair, mm) for mm in momenta) + 1e-3          # here the refinement after momentum pays

    calls.clear()
    monkeypatch.setattr(tuning, "_score", lambda *a: calls.append(a[-1]) or real(*a))
    thin, s_thin = tuning.tune_hybrid_pga(p, val, ref, T, steps=steps, momenta=momenta, stride=2, reach=1)
    odd = {steps[k] for k in range(1, len(steps), 2)}
    assert any(c["step_analog"] in odd or c["step_digital"] in odd for c in calls)   # the refinement left the coarse grid
    assert s_thin >= max(score(a, d, 0.0) for a in steps[::2] for d in steps[::2]) - 1e-9
    monkeypatch.undo()
    for bad in ({"stride": 0}, {"reach": -1}, {"steps": []}):
        with pytest.raises(ValueError, match="tune_hybrid_pga"):
            tuning.tune_hybrid_pga(p, val, ref, T, **{"steps": steps, **bad})


def test_random_start_does_not_depend_on_the_batch():
    p = _problem()
    inst = p.sample(6, 12)
    x = p.init(inst, "random")
    torch.testing.assert_close(p.init(inst[2:3], "random"), x[2:3])


def test_subspace_start_spans_the_dominant_subspace_where_unit_modulus_can():
    """With L close to M (here 12 and 10) a unit-modulus W_a can span the top-L eigenvectors of
    sum_b H_b^H H_b: the subspace start's alternating projections get there, and with the best digital
    precoder it is then as good as any precoder confined to that subspace (and above the svd start)."""
    from autounfold.problems.hybrid import SUBSPACE_ITERATIONS
    p = _problem(M=12, L=10, NB=8, N=6)
    inst = p.sample(64, 21)
    x = p.init(inst, "subspace")
    assert bool(p.feasible(x, inst).all())
    W_a, _ = p.unpack_stacked(x, inst)
    _, U = torch.linalg.eigh((inst.H.mH @ inst.H).sum(1))
    U = U[..., -10:]
    resid = (W_a - U @ (U.mH @ W_a)).abs().square().sum((1, 2)) / W_a.abs().square().sum((1, 2))
    assert float(resid.max()) < 1e-3, (SUBSPACE_ITERATIONS, float(resid.max()))
    confined = p.objective(p.pack_stacked(U, p.digital_given_analog_stacked(U, inst)), inst)   # any basis of it
    rate, svd = p.objective(x, inst), p.objective(p.init(inst, "svd"), inst)
    assert float((confined - rate).abs().max()) < 1e-2 * float(confined.mean())
    assert float(rate.mean()) > float(svd.mean())
    torch.testing.assert_close(p.init(inst[3:5], "subspace"), x[3:5])            # per sample


def test_evaluate_runs_the_declared_baselines_on_other_sizes():
    model = build_model(load_config("preset:hybrid", SMALL))
    rows = evaluate_model(model, ["nominal", "M16"], batch=32)
    methods = {r["method"] for r in rows}
    assert {"hybrid_pga-3 (this model)", "PGA, tuned steps and momentum-3", "PE-AltMin + best digital-3",
            "SVD-phase analog + best digital (closed form)",
            "subspace analog (alternating projections) + best digital (closed form)"} <= methods
    assert all(r["feasible"] and 50 < r["pct_of_bound"] <= 100.0001 for r in rows)
    assert set(CLASSICAL) >= set(model.problem.classical)


def test_fd_wmmse_is_a_reference_only_rule():
    with pytest.raises(ConfigError, match="not an unfolded model's update rule"):
        FullyDigitalWMMSE.from_model_config(None, None)


def test_cli_train_and_evaluate(tmp_path):
    out = tmp_path / "model"
    run = subprocess.run([sys.executable, "-m", "autounfold.cli", "train", "preset:hybrid", "--out", str(out), "--quiet",
                          *sum((["--set", s] for s in SMALL + ["training.steps=6", "training.validate_every=3"]), [])],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    ev = subprocess.run([sys.executable, "-m", "autounfold.cli", "evaluate", str(out), "--scenario", "B4",
                         "--batch", "32", "--json", str(tmp_path / "ev.json")], capture_output=True, text=True,
                        timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    rows = json.loads((tmp_path / "ev.json").read_text())
    assert {r["scenario"] for r in rows} == {"B4"} and all(0 < r["pct_of_bound"] <= 100.0001 for r in rows)


def test_safeguard_returns_the_best_iterate_of_the_unchanged_iteration():
    """Steps far too large for the sum rate (with momentum) lower the objective of some channels; the
    safeguarded run takes the same path and returns after each step, per channel, the best iterate so
    far: its objective is the running maximum of the unguarded trajectory's, never below the start."""
    p = _problem(objective="sum_rate")
    inst = p.sample(48, 9)
    params = {"step_analog": 3.0, "step_digital": 3.0, "momentum": 0.9}
    unsafe = solve(p, inst, HybridPGA(), params, 6, trajectory=True)
    safe = solve(p, inst, HybridPGA(safeguard=True), params, 6, trajectory=True)
    f = lambda xs: torch.stack([p.objective(x, inst) for x in [p.init(inst)] + list(xs)])  # noqa: E731  (T+1, B)
    f_unsafe, f_safe = f(unsafe.trajectory), f(safe.trajectory)
    assert (f_unsafe[1:] < f_unsafe[:-1] - 1e-4).any()                       # the steps are bad somewhere
    torch.testing.assert_close(f_safe, torch.cummax(f_unsafe, 0).values)      # the best so far, per channel
    assert (f_safe[-1] > f_unsafe[-1] + 1e-4).any()                          # and that differs from the last
    assert bool(p.feasible(safe.x, inst).all())
    stuck = f_safe[-1] == f_safe[0]                                          # no step ever beat the start
    assert stuck.any() and (~stuck).any()
    torch.testing.assert_close(safe.x[stuck], p.init(inst)[stuck])


def test_safeguarded_network_starts_as_safeguarded_pga_trains_and_exports(tmp_path):
    from autounfold.deploy import export_torch_export, load_torch_export
    cfg = load_config("preset:hybrid", SMALL + ["model.safeguard=true", "model.layer=hybrid_pga_momentum",
                                                 "model.step_init=0.01", "model.digital_step_init=0.1",
                                                 "model.momentum_init=0.9", "problem.objective=sum_rate"])
    model = build_model(cfg)
    p, inst = model.problem, model.problem.sample(16, 3)
    params = {"step_analog": 0.01, "step_digital": 0.1, "momentum": 0.9}
    with torch.no_grad():
        torch.testing.assert_close(model.run(inst), solve(p, inst, HybridPGA(safeguard=True), params, 3).x)
        gain = p.objective(model.run(inst), inst) - p.objective(p.init(inst), inst)
        assert (gain >= -1e-6).all() and (gain > 1e-4).any()
    torch.testing.assert_close(hybrid_pga(p, inst, 3, params, safeguard=True), model.run(inst))
    loss = -p.objective(model.run(inst), inst).mean()                         # the gradients reach the steps
    loss.backward()
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()
    train(model, load_config("preset:hybrid", SMALL + ["training.steps=3"]).training, seed=0, progress=False)
    path = export_torch_export(model, tmp_path / "s.pt2")
    with torch.no_grad():
        a, d = load_torch_export(path)(torch.view_as_real(inst.H).contiguous(), inst.noise_var)
        W_a, W_d = model(inst.H, inst.noise_var)
    torch.testing.assert_close(torch.view_as_complex(a.contiguous()), W_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.view_as_complex(d.contiguous()), W_d, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="model.safeguard applies to layers hybrid_pga"):
        load_config("preset:auto_pgd", ["model.safeguard=true"])


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
def test_export_has_both_outputs_and_matches_eager(tmp_path, fmt):
    from autounfold.deploy import export_torch_export, export_torchscript, load_torch_export, load_torchscript
    export, load, name = {"torchscript": (export_torchscript, load_torchscript, "h.pt"),
                          "torch.export": (export_torch_export, load_torch_export, "h.pt2")}[fmt]
    model = build_model(load_config("preset:hybrid", SMALL))        # the preset's start: 20 projections in the graph
    path = export(model, tmp_path / name)
    meta = json.loads((tmp_path / f"{name}.json").read_text())
    assert meta["inputs"] == {"H_real": ["B", 3, 3, 8, 2], "noise_var": ["B"]}
    assert meta["output"] == {"W_a_real": ["B", 8, 4, 2], "W_d_real": ["B", 3, 4, 3, 2]}
    inst = model.problem.sample(9, 4)
    with torch.no_grad():
        a, d = load(path)(torch.view_as_real(inst.H).contiguous(), inst.noise_var)
    with torch.no_grad():
        W_a, W_d = model(inst.H, inst.noise_var)
    torch.testing.assert_close(torch.view_as_complex(a.contiguous()), W_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.view_as_complex(d.contiguous()), W_d, rtol=1e-4, atol=1e-4)


def test_monitor_sees_a_change_of_the_cluster_angular_spread(tmp_path):
    """The drift monitor on a hybrid model: the transmit covariance over every band's user rows moves
    when the clustered model's angular spread does; the shadow metric is the % of the bound."""
    from autounfold.monitoring import EventLog, MonitorConfig, compute_baseline, drifting_windows, monitor_windows
    from autounfold.monitoring.monitor import parse_synthetic
    model = build_model(load_config("preset:hybrid", SMALL))
    baseline = compute_baseline(model, 1024)
    spec = parse_synthetic("synthetic:angular_spread=10->40,windows=4,at=2")
    recs = monitor_windows(model, drifting_windows(model, spec, 256), MonitorConfig(window=256, trigger_patience=1),
                           baseline, EventLog(tmp_path / "events.jsonl"), "hy:v1")
    assert [("covariance_shift" in r["alerts"]) for r in recs] == [False, False, True, True]
    assert all(80 < r["shadow_pct"] <= 100.0001 for r in recs)
    # the re-search is aimed at the spread the windows were drawn with (the problem's own estimate);
    # the exponential-correlation estimate, exact for correlated Rayleigh, is far off on this model
    assert [r["angular_spread_estimate"] for r in recs] == pytest.approx([10, 10, 40, 40], abs=5)
    from autounfold.monitoring.drift import estimate_angular_spread, transmit_covariance
    R = transmit_covariance(WidebandSource(8, 3, 3, WidebandConfig(angular_spread_deg=10.0)).sample(256, 1).H)
    assert estimate_angular_spread(R, 0.5) > 40 and model.problem.estimate_angular_spread(R) == pytest.approx(10, abs=5)


@pytest.mark.parametrize("args, message", [
    (["--layers", "hybrid_pga,signed"], "--layers: 'signed' does not apply to hybrid_precoding"),
    (["--layers", "nonsense"], "--layers: 'nonsense' does not apply to hybrid_precoding"),
    (["--antennas", "8,x"], "--antennas: comma-separated integers expected"),
    (["--antennas", "4"], "--antennas must be >= 6"),
    (["--bands", "0"], "--bands >= 1"),
    (["--layers", "hybrid_pga_band,hybrid_pga"], "fixes n_bands"),
])
def test_benchmark_bad_input_is_one_line_and_writes_nothing(tmp_path, cli, refuse, args, message):
    refuse("autounfold.evaluation.hybrid_benchmark.run_hybrid_benchmark")
    out = tmp_path / "bench"
    r = cli("benchmark-hybrid", "--out", out, *args)
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (r.stderr, r.exception)
    assert not out.exists()


def test_benchmark_deploys_networks_safeguarded_and_scores_safeguarded_pga_off_nominal():
    """The hybrid benchmark's safeguarded rows: ``safeguarded`` is the same trained network with
    ``model.safeguard`` on, never below the plain network or the start on any channel; ``_unseen_row``
    adds safeguarded classical PGA with its own steps to a row of conditions not trained on."""
    from autounfold.evaluation.hybrid_benchmark import _unseen_row, safeguarded
    from autounfold.seeding import generator
    cfg = load_config("preset:hybrid", SMALL + ["problem.objective=sum_rate", "model.step_init=1.0",
                                                 "model.digital_step_init=1.0"])   # steps that overshoot somewhere
    model = build_model(cfg).eval()
    guarded, gcfg = safeguarded(model, model.config)
    assert gcfg.model.safeguard and not model.config.model.safeguard
    assert model.state_dict().keys() == guarded.state_dict().keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in guarded.state_dict().items())
    p, inst = model.problem, model.problem.sample(64, 5)
    with torch.no_grad():
        start, plain = p.objective(p.init(inst), inst), p.objective(model.run(inst), inst)
        safe = p.objective(guarded.run(inst), inst)
    assert (plain < start - 1e-4).any()                          # the plain iteration loses on some channels
    assert (safe >= torch.maximum(start, plain) - 1e-5).all()

    steps = {2: {"step_analog": 1.0, "step_digital": 1.0, "momentum": 0.0}}
    row, q, t, r = _unseen_row({"net": (model, model.config), "net, guarded": (guarded, gcfg)}, steps, "snr30", 32,
                               generator(0, "unseen"), guarded_steps=steps)
    assert set(row) == {"scenario", "label", "net", "net, guarded", "PGA-2 (nominal steps)",
                        "PGA-2, safeguarded (nominal steps)"}
    with torch.no_grad():
        first = q.summarize(q.init(t), t, r)["pct_of_bound"]
    assert row["net, guarded"]["pct_of_bound"] >= max(row["net"]["pct_of_bound"], first) - 1e-4
    pga, safe_pga = row["PGA-2 (nominal steps)"]["pct_of_bound"], row["PGA-2, safeguarded (nominal steps)"]["pct_of_bound"]
    assert safe_pga >= max(pga, first) - 1e-4

"""Multi-user downlink (mu_miso): the sum-rate math, WMMSE in its row-space form against the textbook
form, the reference, the unfolded layers against the classical solvers they unroll, and the model API."""
import json
import math
import subprocess
import sys

import pytest
import torch

import autounfold
from autounfold.algorithms import WMMSE, ProximalGradient, reference, solve
from autounfold.algorithms.proximal_gradient import State
from autounfold.algorithms.wmmse import power_multiplier, wmmse_textbook
from autounfold.build import build_model, build_problem
from autounfold.channels.base import ChannelBatch
from autounfold.channels.rayleigh import CorrelatedRayleigh, IIDRayleigh
from autounfold.config import load_config
from autounfold.errors import ConfigError, InputError
from autounfold.evaluation.baselines import CLASSICAL
from autounfold.evaluation.evaluate import evaluate_model
from autounfold.problems.mu_miso import MuMisoProblem
from autounfold.training.trainer import train

SMALL = ["problem.n_users=4", "problem.channel.n_tx=8", "model.num_layers=3"]


def _problem(n_tx=8, K=4, snr=(0.0, 30.0), weights=None, correlated=False):
    src = (CorrelatedRayleigh(n_tx, K, snr) if correlated else IIDRayleigh(n_tx, K, snr))
    return MuMisoProblem(src, user_weights=weights)


def test_objective_is_the_sum_rate_definition():
    p = _problem(weights=[1.0, 2.0, 0.5, 1.5])
    inst = p.sample(6, 0)
    V = p.init(inst, "mrt")
    H, Vd, s2 = inst.H.to(torch.complex128), V.to(torch.complex128), inst.noise_var.double()
    expect = torch.zeros(6, dtype=torch.float64)
    for k in range(4):
        gains = (H[:, k:k + 1, :] @ Vd).abs().square().squeeze(1)          # (B, K): |h_k^H v_j|^2
        sinr = gains[:, k] / (gains.sum(-1) - gains[:, k] + s2)
        expect += p.weights[k] * torch.log2(1 + sinr)
    torch.testing.assert_close(p.objective(V, inst).double(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5, 1.5]])
def test_gradient_matches_autograd(weights):
    p = _problem(weights=weights)
    inst = p.sample(16, 1)
    V = (p.init(inst, "rzf") + 0.1 * p.init(inst, "mrt")).detach()
    # autograd in float64 (float32 autograd itself is off by ~1e-4 relative at 30 dB, more than ours)
    inst64 = ChannelBatch(inst.H.to(torch.complex128), inst.noise_var.double(), inst.snr_db.double())
    Vg = V.to(torch.complex128).requires_grad_(True)
    p.objective(Vg, inst64).sum().backward()
    torch.testing.assert_close(p.gradient(V, inst), Vg.grad.to(torch.complex64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_tx, K, snr", [(4, 3, 0.0), (6, 6, 20.0), (8, 4, 30.0), (3, 5, 10.0)])
def test_row_space_wmmse_equals_the_textbook_form(n_tx, K, snr):
    """One iteration in the K x K row-space form (eigendecomposition + Newton) and in the textbook
    n_tx x n_tx form (inverse + bisection) give the same precoder, including K > n_tx (a rank-
    deficient Gram matrix) and the case where the power constraint is not active."""
    p = _problem(n_tx, K, (snr, snr), weights=[1.0 + 0.3 * k for k in range(K)])
    inst = p.sample(12, 2)
    V = p.init(inst, "mrt")
    ours = WMMSE(newton_iterations=40).step(p, inst, State(V, V), {}).x.to(torch.complex128)
    book = wmmse_textbook(inst.H, V, inst.noise_var, p.user_weights(inst), p.power)
    book = book * torch.clamp(math.sqrt(p.power) / torch.linalg.vector_norm(book, dim=(-2, -1), keepdim=True), max=1.0)
    torch.testing.assert_close(ours, book, rtol=2e-3, atol=2e-4)
    # the sum rate of an iteration never decreases (WMMSE is a block-coordinate ascent)
    assert (p.objective(ours.to(torch.complex64), inst) >= p.objective(V, inst) - 1e-4).all()


def test_power_multiplier_meets_the_power_exactly():
    g = torch.Generator().manual_seed(0)
    lam = torch.rand(64, 6, generator=g) * torch.logspace(-4, 2, 6)
    phi = torch.rand(64, 6, generator=g)
    for P in (1e-3, 1.0, 1e3):
        mu = power_multiplier(lam, phi, P, iterations=30)
        power = (lam.double() * phi.double() / (lam.double() + mu.unsqueeze(-1)).square()).sum(-1)
        constrained = mu > 0
        torch.testing.assert_close(power[constrained], torch.full_like(power[constrained], P), rtol=1e-6, atol=0)
        assert (power[~constrained] <= P * (1 + 1e-9)).all()


def test_reference_runs_its_starts_stacked_and_keeps_each_samples_best():
    """The reference solves its three starts as one stacked batch (each sample stopping on its own):
    per sample it is the best of the three separate solves, up to the last digits a per-sample solve
    owes to its batch's composition, and never the wrong sample's solution."""
    from autounfold.algorithms.reference import _solve_per_sample
    from autounfold.plugins import ALGORITHMS
    p = _problem(8, 4)
    inst = p.sample(48, 12)
    decl = p.reference_solver
    assert decl.per_sample and len(decl.inits) == 3
    algo = ALGORITHMS.get(decl.algorithm).for_reference(decl)
    separate = torch.stack([p.objective(_solve_per_sample(p, inst, algo, {}, decl, p.init(inst, m)), inst)
                            for m in decl.inits])                                     # (3, B)
    ref = reference(p, inst)
    got, best = p.objective(ref, inst), separate.max(0).values
    # (any one start alone: 71-83 % of the samples within 1e-5 of the best, on three seeds tried)
    assert (got >= best * (1 - 1e-5)).float().mean() >= 0.95
    assert abs(float(got.mean() / best.mean()) - 1.0) < 2e-5
    assert (ref.abs().square().sum((-2, -1)) <= p.power * (1 + 1e-4)).all()


def test_reference_beats_every_solver_and_everything_is_feasible():
    cfg = load_config("preset:mu_miso", SMALL)
    model = build_model(cfg)
    p = model.problem
    inst = p.sample(128, 5)
    ref = reference(p, inst)
    assert p.feasible(ref, inst).all()
    r_ref = p.objective(ref, inst).mean()
    with torch.no_grad():
        outs = {name: solver(p, inst, 5) for name, (_, solver) in CLASSICAL.items() if name in p.classical}
        outs["wmmse-50"] = CLASSICAL["wmmse"][1](p, inst, 50)
        outs["model"] = model(inst.H, inst.noise_var)
    for name, V in outs.items():
        assert V.shape == (128, 8, 4) and V.dtype == torch.complex64, name
        assert p.feasible(V, inst).all(), name
        assert p.objective(V, inst).mean() <= r_ref * (1 + 1e-6), name


@pytest.mark.parametrize("layer", ["wmmse_relax", "uwmmse", "uwmmse_gnn"])
def test_unfolded_wmmse_at_its_initial_parameters_is_classical_wmmse(layer):
    cfg = load_config("preset:mu_miso", SMALL + [f"model.layer={layer}", "model.step_init=1.0"])
    model = build_model(cfg)
    p = model.problem
    inst = p.sample(32, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(inst.H, inst.noise_var), solve(p, inst, WMMSE(), {}, 3).x, rtol=1e-5, atol=1e-6)


def test_unfolded_pga_at_its_initial_parameters_is_classical_pga():
    cfg = load_config("preset:mu_miso", SMALL + ["model.layer=momentum", "model.step_init=0.2", "model.momentum_init=0.4"])
    model = build_model(cfg)
    p = model.problem
    inst = p.sample(32, 3)
    classical = solve(p, inst, ProximalGradient(normalize="norm"), {"step": 0.2, "momentum": 0.4}, 3).x
    with torch.no_grad():
        torch.testing.assert_close(model(inst.H, inst.noise_var), classical, rtol=1e-5, atol=1e-6)


def test_weighted_wmmse_serves_the_weights():
    """With unequal user weights the weighted sum rate WMMSE reaches beats the weighted rate of the
    unweighted solution: the weights reach the update."""
    weighted = _problem(weights=[4.0, 1.0, 1.0, 0.25], snr=(10.0, 10.0))
    plain = _problem(snr=(10.0, 10.0))
    inst = weighted.sample(128, 4)
    Vw = solve(weighted, inst, WMMSE(), {}, 30).x
    Vp = solve(plain, inst, WMMSE(), {}, 30).x
    assert weighted.objective(Vw, inst).mean() > weighted.objective(Vp, inst).mean() * 1.01


def test_training_runs_the_wmmse_layers_and_keeps_the_best():
    cfg = load_config("preset:mu_miso", SMALL + ["training.steps=20", "training.validate_every=10",
                                                 "training.validation_batch=128", "training.batch_size=64"])
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, cfg.training, 0, progress=False)
    assert math.isfinite(result.best_score) and len(result.history) >= 2
    assert result.best_score >= result.history[0]["val_score"]          # step 0 is classical WMMSE
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_learned_parameters_have_no_size_and_transfer(tmp_path):
    """A model built for 8 x 4 runs on 16 x 8 (evaluate's scenario) with the same parameters."""
    cfg = load_config("preset:mu_miso", SMALL + ["model.layer=uwmmse_gnn", "training.steps=0"])
    model = build_model(cfg)
    rows = evaluate_model(model, ["nominal", "16x8"], batch=64)
    assert {r["scenario"] for r in rows} == {"nominal", "16x8"}
    assert all(r["feasible"] for r in rows)
    methods = {r["method"] for r in rows}
    assert {"uwmmse_gnn-3 (this model)", "WMMSE-3", "WMMSE, tuned relaxation-3", "PGA, tuned step and momentum-3",
            "RZF (closed form)"} <= methods


def test_saved_model_api_and_input_errors(tmp_path):
    cfg = load_config("preset:mu_miso", SMALL)
    model = build_model(cfg)
    autounfold.save(model, tmp_path / "m", cfg)
    loaded = autounfold.load(tmp_path / "m")
    assert (loaded.problem.n_tx, loaded.problem.n_users) == (8, 4)
    inst = loaded.problem.sample(5, 0)
    V = loaded(inst.H, inst.noise_var)
    assert V.shape == (5, 8, 4) and V.dtype == torch.complex64
    assert (V.abs().square().sum((-2, -1)) <= loaded.problem.power * (1 + 1e-5)).all()
    with pytest.raises(InputError, match="n_users=4"):
        loaded(inst.H[:, :3], inst.noise_var)
    with pytest.raises(InputError, match="n_tx=8"):
        loaded(inst.H[..., :6], inst.noise_var)


@pytest.mark.parametrize("overrides, message", [
    (["problem.channel.n_rx=5"], "must equal n_users"),
    (["problem.user_weights=[1, 2]"], "user_weights must be 8 positive numbers"),
    (["problem.user_weights=[1, 1, 1, 1, 1, 1, 1, -1]"], "user_weights"),
    (["model.algorithm=pgd"], "does not run layer 'uwmmse'"),
    (["model.algorithm=nope"], "unknown algorithm 'nope'"),
    (["model.algorithm=admm"], "does not run layer 'uwmmse'"),
    (["model.layer=signed"], "model.layer 'signed' does not apply to mu_miso"),
    (["problem.init=rzf_sel"], "problem.init: .*'rzf_select'"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("preset:mu_miso", overrides)


def test_cli_train_and_evaluate(tmp_path):
    out = tmp_path / "model"
    run = subprocess.run([sys.executable, "-m", "autounfold.cli", "train", "preset:mu_miso", "--out", str(out), "--quiet",
                          *sum((["--set", s] for s in SMALL + ["training.steps=10", "training.validation_batch=64",
                                                              "training.batch_size=32"]), [])],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    ev = subprocess.run([sys.executable, "-m", "autounfold.cli", "evaluate", str(out), "--scenario", "16x8",
                         "--batch", "64", "--json", str(tmp_path / "ev.json")], capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    rows = json.loads((tmp_path / "ev.json").read_text())
    assert {r["scenario"] for r in rows} == {"16x8"} and all(0 < r["pct_of_reference"] <= 100.0001 for r in rows)


@pytest.mark.parametrize("n_tx, K", [(8, 4), (6, 6), (3, 5)])
def test_the_differentiable_transmit_update_equals_the_eigen_form(n_tx, K):
    """Training forms the WMMSE update by a linear solve (the complex eigendecomposition has no usable
    backward); it must be the update the classical solver computes, and its gradient finite."""
    from autounfold.algorithms.wmmse import receivers, transmit
    p = _problem(n_tx, K, (0.0, 30.0))
    inst = p.sample(16, 6)
    V = p.init(inst, "mrt")
    u, w = receivers(inst.H, V, inst.noise_var)
    with torch.no_grad():
        plain = transmit(inst.H, w, u, p.power)
    scale = torch.ones(1, requires_grad=True)
    trained = transmit(inst.H, w * scale, u, p.power)
    torch.testing.assert_close(trained.detach(), plain, rtol=1e-3, atol=1e-4)
    p.objective(trained, inst).sum().backward()
    assert torch.isfinite(scale.grad).all()


@pytest.mark.parametrize("layer", ["uwmmse_gnn", "momentum"])
def test_torchscript_export_matches_eager(tmp_path, layer):
    from autounfold.deploy.export import export_torchscript, load_torchscript
    extra = ["model.step_init=0.1"] if layer == "momentum" else []
    cfg = load_config("preset:mu_miso", SMALL + [f"model.layer={layer}"] + extra)
    model = build_model(cfg).eval()
    path = export_torchscript(model, tmp_path / "m.pt")
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    assert meta["inputs"]["H_real"] == ["B", 4, 8, 2] and meta["output"]["W_real"] == ["B", 8, 4, 2]
    inst = model.problem.sample(11, 9)
    got = torch.view_as_complex(load_torchscript(path)(torch.view_as_real(inst.H).contiguous(), inst.noise_var))
    with torch.no_grad():
        torch.testing.assert_close(got, model(inst.H, inst.noise_var), rtol=1e-4, atol=1e-5)


def test_tuned_start_is_the_tuned_classical_solver_and_is_saved_as_numbers(tmp_path):
    """step_init: tuned resolves to the validation-best constants of the solver the layer unrolls, at
    the model's depth; the network then starts exactly as that classical solver, and the saved config
    holds the numbers (loading does not tune again)."""
    from autounfold.algorithms import evaluation_reference
    from autounfold.algorithms.tuning import MOMENTA, tune_pgd
    from autounfold.seeding import generator
    cfg = load_config("preset:mu_miso", SMALL + ["model.layer=momentum", "model.step_init=tuned",
                                                 "training.validation_batch=64"])
    model = build_model(cfg)
    m = model.config.model
    assert isinstance(m.step_init, float) and isinstance(m.momentum_init, float)
    p = model.problem
    val = p.sample(64, generator(cfg.seed, "validation"))
    best, score = tune_pgd(p, val, evaluation_reference(p, val), 3, momenta=MOMENTA, normalize="norm")
    assert (m.step_init, m.momentum_init) == (best["step"], best["momentum"])
    with torch.no_grad():
        start = p.score(p.summarize(model.run(val), val, evaluation_reference(p, val)))
    assert start == pytest.approx(score, abs=1e-6)
    autounfold.save(model, tmp_path / "m", model.config)
    assert "tuned" not in (tmp_path / "m" / "config.yaml").read_text()
    wm = build_model(load_config("preset:mu_miso", SMALL + ["training.validation_batch=64"]))
    assert isinstance(wm.config.model.step_init, float)                 # the preset's uwmmse: a relaxation


def test_tuned_start_needs_a_layer_that_has_one():
    with pytest.raises(ConfigError, match="step_init 'tuned' applies to layers"):
        load_config("preset:auto_pgd", ["model.layer=signed", "model.step_init=tuned"])


def test_monitor_sees_a_covariance_shift_of_the_users_channels(tmp_path):
    """The drift monitor on a mu_miso model: the transmit covariance of the users' channel rows moves
    when the angular spread does, and the shadow metric is the % of the reference sum rate."""
    from autounfold.monitoring import EventLog, MonitorConfig, compute_baseline, drifting_windows, monitor_windows
    from autounfold.monitoring.monitor import parse_synthetic
    cfg = load_config("preset:mu_miso", SMALL + ["problem.channel.model=correlated_rayleigh",
                                                 "problem.channel.angular_spread_deg=15"])
    model = build_model(cfg)
    baseline = compute_baseline(model, 512)
    spec = parse_synthetic("synthetic:angular_spread=15->40,windows=4,at=2")
    recs = monitor_windows(model, drifting_windows(model, spec, 128), MonitorConfig(window=128, trigger_patience=1),
                           baseline, EventLog(tmp_path / "events.jsonl"), "mu:v1")
    assert [("covariance_shift" in r["alerts"]) for r in recs] == [False, False, True, True]
    assert all(90 < r["shadow_pct"] <= 100.0001 for r in recs)


@pytest.mark.parametrize("args, message", [
    (["--sizes", "8by4"], "--sizes '8by4': expected comma-separated NTXxUSERS"),
    (["--sizes", "8x0"], "--sizes '8x0'"),
    (["--layers", "uwmmse,signed"], "--layers: 'signed' does not apply to mu_miso"),
    (["--layers", "momentum+snr1"], "--layers: 'momentum+snr1': after '+' expected snrN or condN, each once, N >= 2"),
    (["--layers", "signed+snr4"], "--layers: 'signed' does not apply to mu_miso"),
    (["--depths", "2,x"], "--depths: comma-separated integers expected"),
    (["--sections", "main,5g"], "--sections: choose among main, 3gpp (got 'main,5g')"),
    (["--sections", ","], "--sections: choose among main, 3gpp"),
])
def test_benchmark_bad_input_is_one_line_and_writes_nothing(tmp_path, cli, refuse, args, message):
    refuse("autounfold.evaluation.mu_miso_benchmark.run_mu_miso_benchmark")
    out = tmp_path / "bench"
    r = cli("benchmark-mu-miso", "--out", out, *args)
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (r.stderr, r.exception)
    assert not out.exists()


def test_benchmark_3gpp_section_alone_tests_users_of_another_pool(tmp_path, monkeypatch):
    """``sections=("3gpp",)``: Rayleigh-trained models applied unchanged and the same recipe trained on
    UMi users of pool_seed 0, tested on UMi / UMa users of pool_seed 1 beside WMMSE and the tuned
    baselines at the same depth; written alone (mu_miso_3gpp.json / .md), no main tables."""
    import dataclasses

    from autounfold.evaluation import mu_miso_benchmark as M
    small = ["training.validation_batch=16", "training.batch_size=16", "problem.channel.pool=32"]
    orig = M._overrides
    monkeypatch.setattr(M, "_overrides", lambda *a, **k: orig(*a, **k) + small)
    # a looser reference (its 2 x 2000 iterations per call are most of the time here); rows stay <= 100 %
    monkeypatch.setattr(MuMisoProblem, "reference_solver",
                        dataclasses.replace(MuMisoProblem.reference_solver, max_iterations=200))
    monkeypatch.setattr(M.baselines, "_TUNED", {})       # nor do its validation references outlive the test
    with pytest.raises(ConfigError, match="sections must be among main, 3gpp"):
        M.run_mu_miso_benchmark(tmp_path / "bad", sections=("3gpp", "all"))
    assert not (tmp_path / "bad").exists()
    r = M.run_mu_miso_benchmark(tmp_path / "b", steps=2, depth=1, layers=("momentum",), test_batch=16,
                                sections=("3gpp",), gpp_size=(4, 2), quiet=True)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["mu_miso_3gpp.json", "mu_miso_3gpp.md"]
    g = r["3gpp"]
    assert (g["n_tx"], g["n_users"], g["depth"], g["steps"]) == (4, 2, 1, 2)
    assert g["train_channel"] == "umi" and g["train_pool_seed"] == 0 and g["test_pool_seed"] == 1
    assert [(c["channel"], c["test_pool_seed"]) for c in g["cells"]] == [("iid_rayleigh", None), ("umi", 1), ("uma", 1)]
    for c in g["cells"]:
        got = {(x["method"], x["trained_on"]) for x in c["rows"]}
        assert got >= {("unfolded PGA-1", "i.i.d. Rayleigh"), ("unfolded PGA-1", "UMi (pool 0)"), ("WMMSE-1", "-"),
                       ("WMMSE, tuned relaxation-1", "i.i.d. Rayleigh"), ("WMMSE, tuned relaxation-1", "UMi (pool 0)"),
                       ("PGA, tuned step and momentum-1", "i.i.d. Rayleigh"),
                       ("PGA, tuned step and momentum-1", "UMi (pool 0)")}
        for x in c["rows"]:
            assert 0 < x["min_pct"] <= x["p5_pct"] <= x["pct_of_reference"] <= 100 + 1e-3
    assert json.loads((tmp_path / "b" / "mu_miso_3gpp.json").read_text())["3gpp"]["cells"][1]["test_pool_seed"] == 1
    md = (tmp_path / "b" / "mu_miso_3gpp.md").read_text()
    assert "### Tested on UMi, test users from pool_seed 1" in md and "### Tested on UMa" in md
    assert "| unfolded PGA-1 | unfolded | UMi (pool 0) |" in md and "users of pool_seed 0" in md
    # in the full run's Markdown: after the main tables (the committed full result with this section in it)
    from pathlib import Path
    full = json.loads((Path(__file__).parents[1] / "benchmarks" / "mu_miso_benchmark.json").read_text())
    assert "## 3GPP channels" not in M.markdown(full)
    full["3gpp"] = g
    md = M.markdown(full)
    assert md.index("## Latency") < md.index("## 3GPP channels") < md.index("### Tested on UMa") < md.index("Total time")


def _rzf_on(p, inst, keep):
    """RZF (regularisation K s2 / P of all K users) on the users in ``keep`` (K,) bool, by direct inversion
    of their own Gram matrix, at full power; the others' columns zero."""
    H = inst.H[:, keep]
    K = inst.H.shape[1]
    A = H @ H.mH + (K * inst.noise_var / p.power).view(-1, 1, 1) * torch.eye(H.shape[1], dtype=H.dtype)
    V = torch.zeros(inst.H.shape[0], p.n_tx, K, dtype=torch.complex64)
    V[:, :, keep] = H.mH @ torch.linalg.inv(A)
    return V * (p.power / (V.abs() ** 2).sum((-2, -1))).sqrt().view(-1, 1, 1)


@pytest.mark.parametrize("weights", [None, [1.0, 3.0, 0.5, 2.0]])
def test_rzf_select_is_the_best_of_rzf_and_rzf_without_a_user(weights):
    p = _problem(8, 4, (10.0, 10.0), weights=weights)
    inst = p.sample(256, 11)
    H = inst.H.clone()
    H[::2, 1] = H[::2, 0] + 0.05 * H[::2, 1]          # users 0 and 1 nearly parallel in every other channel
    inst = p.instance(H, inst.noise_var)
    V = p.init(inst, "rzf_select")
    assert V.shape == (256, 8, 4) and V.dtype == torch.complex64
    torch.testing.assert_close((V.abs() ** 2).sum((-2, -1)), torch.full((256,), p.power), rtol=1e-4, atol=0)
    r, r_rzf = p.objective(V, inst), p.objective(p.init(inst, "rzf"), inst)
    assert (r >= r_rzf * (1 - 1e-5)).all()
    # the candidates by brute force: RZF on all users and on every set of three
    cands = [_rzf_on(p, inst, torch.ones(4, dtype=torch.bool))]
    for i in range(4):
        keep = torch.ones(4, dtype=torch.bool)
        keep[i] = False
        cands.append(_rzf_on(p, inst, keep))
    rates = torch.stack([p.objective(c, inst) for c in cands], -1)
    # the candidates are RZF and RZF without each of the two users with the largest diag (G + K s2 / P I)^-1
    G = inst.H @ inst.H.mH
    M = torch.linalg.inv(G + (4 * inst.noise_var / p.power).view(-1, 1, 1) * torch.eye(4, dtype=G.dtype))
    top = torch.diagonal(M, dim1=-2, dim2=-1).real.topk(2, -1).indices
    best = torch.maximum(rates[:, 0], torch.maximum(rates.gather(1, 1 + top[:, :1]), rates.gather(1, 1 + top[:, 1:])).squeeze(1))
    torch.testing.assert_close(r, best, rtol=1e-4, atol=0)
    off = (V.abs() ** 2).sum(-2) == 0                                  # (B, K): users switched off, exactly
    assert off.sum(-1).max() <= 1
    dropped = off.any(-1)
    assert dropped[::2].float().mean() > 0.3 and dropped[::2].sum() > dropped[1::2].sum()
    for b in torch.nonzero(dropped).flatten().tolist():              # a dropped user: exactly RZF on the others
        i = int(off[b].nonzero())
        torch.testing.assert_close(V[b], cands[1 + i][b], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(V[~dropped], cands[0][~dropped], rtol=1e-3, atol=1e-4)


def test_rzf_select_with_one_user_is_rzf():
    p = _problem(4, 1, (10.0, 10.0))
    inst = p.sample(16, 2)
    torch.testing.assert_close(p.init(inst, "rzf_select"), p.init(inst, "rzf"), rtol=1e-5, atol=1e-6)


def test_rzf_select_with_two_users_and_one_channel():
    p = _problem(4, 2, (10.0, 10.0))
    inst = p.sample(1, 2)
    H = inst.H.clone()
    H[0, 1] = H[0, 0] + 1e-3 * H[0, 1]                  # parallel users: serve one of them
    inst = p.instance(H, inst.noise_var)
    V = p.init(inst, "rzf_select")
    assert V.shape == (1, 4, 2) and p.feasible(V, inst).all()
    assert int(((V.abs() ** 2).sum(-2) == 0).sum()) == 1
    assert p.objective(V, inst) > 1.05 * p.objective(p.init(inst, "rzf"), inst)


def test_a_switched_off_user_stays_off_and_the_reference_tries_the_selection():
    p = _problem(8, 4, (10.0, 10.0))
    inst = p.sample(64, 4)
    H = inst.H.clone()
    H[:, 1] = H[:, 0] + 0.02 * H[:, 1]
    inst = p.instance(H, inst.noise_var)
    V0 = p.init(inst, "rzf_select")
    off = (V0.abs() ** 2).sum(-2) == 0
    assert off.any()
    V = solve(p, inst, ProximalGradient(normalize="norm"), {"step": 0.1, "momentum": 0.5}, 5, x0=V0).x
    assert ((V.abs() ** 2).sum(-2)[off] == 0).all()                   # its gradient is zero: PGA keeps it off
    assert "rzf_select" in p.reference_solver.inits
    assert (p.objective(reference(p, inst), inst) >= p.objective(V, inst) * (1 - 1e-4)).all()


@pytest.mark.parametrize("snr, gain", [(-10.0, 1.0), (0.0, 0.01), (30.0, 100.0)])
def test_rzf_select_is_at_full_power_when_the_load_dwarfs_the_channel(snr, gain):
    p = _problem(16, 8, (snr, snr))
    inst = p.sample(512, 8)
    inst = p.instance(gain * inst.H, inst.noise_var)
    V = p.init(inst, "rzf_select")
    assert p.feasible(V, inst).all()
    torch.testing.assert_close((V.abs() ** 2).sum((-2, -1)), torch.full((512,), p.power), rtol=1e-5, atol=0)


# ---- projected gradient ascent in the row space (ProximalGradient's K x K path) -------------------

def _general_pga(p, inst, algo, params, x0, layers):
    """The general (n_tx x K) step of ``algo`` from the precoder x0, ``layers`` times."""
    state = algo.init_state(x0)
    for _ in range(layers):
        state = algo.step(p, inst, state, params)
    return state.x


@pytest.mark.parametrize("init", ["rzf", "rzf_select", "mrt", "zf"])
@pytest.mark.parametrize("extrapolation", ["heavy_ball", "nesterov"])
def test_row_space_pga_is_the_general_step(init, extrapolation):
    """From every start, with per-sample steps and momenta, weighted users and both extrapolations, the
    K x K path gives the iterates of the general step on the precoders (float32 rounding apart), inside
    the power set; the precoder it reads out at the start is ``problem.init``'s."""
    p = MuMisoProblem(IIDRayleigh(16, 8, (0.0, 30.0)), user_weights=[1.0 + 0.2 * k for k in range(8)], init=init)
    inst = p.sample(64, 11)
    algo = ProximalGradient(extrapolation=extrapolation, normalize="norm")
    g = torch.Generator().manual_seed(0)
    params = {"step": 0.02 + 0.1 * torch.rand(64, generator=g), "momentum": 0.5 * torch.rand(64, generator=g)}
    state = algo.start(p, inst)
    assert state is not None and state.X.shape == (64, 8, 8)
    torch.testing.assert_close(state.x, p.init(inst), rtol=1e-4, atol=1e-5)
    for _ in range(4):
        state = algo.step(p, inst, state, params)
    general = _general_pga(p, inst, algo, params, p.init(inst), 4)
    row = state.x
    assert bool(p.feasible(row, inst).all())
    gap = (p.objective(row, inst) - p.objective(general, inst)).abs()
    assert float(gap.mean()) < 2e-3 and float(gap.max()) < 5e-2, (float(gap.mean()), float(gap.max()))
    close = (row - general).norm(dim=(1, 2)) <= 1e-3 * general.norm(dim=(1, 2))
    assert float(close.float().mean()) > 0.9                   # a few ill-posed steps (a tiny gradient, normalised) drift
    # the state's own record of H V and ||V||^2 is what the precoder gives
    torch.testing.assert_close(state.Z, inst.H @ (inst.H.mH @ state.X), rtol=1e-3, atol=1e-3 * float(state.Z.abs().max()))
    torch.testing.assert_close(state.norm2, frob2_of(inst.H.mH @ state.X), rtol=1e-3, atol=1e-6)


def frob2_of(V):
    return torch.linalg.vector_norm(V, dim=(-2, -1)).square()


def test_row_space_pga_trains_like_the_general_step():
    """The loss of an unfolded PGA and its gradients with respect to the learned steps and momenta are the
    general step's: training goes through the K x K path."""
    p = MuMisoProblem(IIDRayleigh(8, 4, (0.0, 30.0)))
    inst = p.sample(32, 5)
    algo = ProximalGradient(normalize="norm")
    grads = []
    for row in (True, False):
        step = torch.full((3,), 0.1, requires_grad=True)
        mom = torch.full((3,), 0.3, requires_grad=True)
        state = algo.start(p, inst) if row else algo.init_state(p.init(inst))
        for k in range(3):
            state = algo.step(p, inst, state, {"step": step[k], "momentum": mom[k]})
        (-p.objective(state.x, inst).mean()).backward()
        grads.append(torch.cat([step.grad, mom.grad]))
    # float32 rounding moves the small components by ~0.3% in either path (against float64)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-3 * float(grads[1].abs().max()))


def test_a_layer_the_row_space_does_not_take_runs_the_general_step():
    """A parameter outside step and momentum (here a gradient transform) leaves the K x K path: the step
    then runs on the precoders the state reads out, as the general step does."""
    p = MuMisoProblem(IIDRayleigh(8, 4, (10.0, 10.0)))
    inst = p.sample(8, 2)
    algo = ProximalGradient(normalize="norm")
    params = {"step": 0.1, "momentum": 0.2, "transform": 0.5 * torch.eye(8, dtype=torch.complex64)}
    state = algo.step(p, inst, algo.start(p, inst), params)
    assert not hasattr(state, "X")
    torch.testing.assert_close(state.x, _general_pga(p, inst, algo, params, p.init(inst), 1), rtol=1e-4, atol=1e-5)


def test_classical_pga_takes_the_start_of_the_unfolded_network():
    """``solve`` starts from the rule's own start, so the classical solver runs the same K x K path."""
    p = MuMisoProblem(IIDRayleigh(8, 4, (0.0, 30.0)), init="rzf_select")
    inst = p.sample(16, 3)
    algo = ProximalGradient(normalize="norm")
    params = {"step": 0.1, "momentum": 0.3}
    state = algo.start(p, inst)
    for _ in range(3):
        state = algo.step(p, inst, state, params)
    torch.testing.assert_close(solve(p, inst, algo, params, 3).x, state.x, rtol=0, atol=0)


def test_the_batch_keeps_the_gram_matrix_and_rzf_inverse_for_one_call_only():
    """The Gram matrix and RZF's inverse are computed once per batch and shared (the start and the
    conditioning feature read the same tensors); a new batch (indexing, ``to``, ``dataclasses.replace``,
    a model call) starts without them."""
    import dataclasses
    p = _problem()
    inst = p.sample(4, 0)
    M = p.rzf_inverse(inst)
    assert p.rzf_inverse(inst) is M and p.gram(inst) is inst.derived["gram"]
    eye = torch.eye(4, dtype=torch.complex128)
    A = (inst.H @ inst.H.mH).to(torch.complex128) + (4 * inst.noise_var / p.power).double().view(-1, 1, 1) * eye
    torch.testing.assert_close(M.to(torch.complex128) @ A, eye.expand(4, 4, 4), rtol=0, atol=1e-4)
    for other in (inst[:], inst.to("cpu"), dataclasses.replace(inst, H=2 * inst.H)):
        assert other.derived == {}
    assert p.instance(inst.H, inst.noise_var).derived == {}


def test_the_conditioning_feature_is_that_of_rzf_gram_matrix():
    """``log_condition`` is log10 tr(A) tr(A^-1) / K^2 for A = H H^H + K s2 / P I: ``problems.base.log_condition``
    of [H, sqrt(K s2 / P) I] (whose Gram matrix is A); near the unregularised feature at high SNR, smaller at
    low SNR."""
    from autounfold.problems.base import log_condition
    for snr in (0.0, 30.0):
        p = _problem(8, 6, (snr, snr))
        inst = p.sample(64, 4)
        load = (6 * inst.noise_var / p.power).sqrt().view(-1, 1, 1)
        stacked = torch.cat([inst.H, load * torch.eye(6, dtype=torch.complex64).expand(64, 6, 6)], -1)
        got = p.log_condition(inst)
        torch.testing.assert_close(got, log_condition(stacked), rtol=1e-3, atol=1e-4)
        plain = log_condition(inst.H)
        assert bool((got <= plain + 1e-4).all())
        if snr == 30.0:
            assert float((plain - got).max()) < 0.05
        else:
            assert float((plain - got).mean()) > 0.1


def test_rzf_select_rows_gives_the_received_signals_of_its_choice():
    """``rzf_select_rows(..., with_signals=True)``'s Z is G X (checked in float64), the dropped user's
    column of both exactly zero."""
    from autounfold.problems.mu_miso import rzf_select_rows
    p = _problem(8, 6, (20.0, 20.0))
    inst = p.sample(128, 6)
    X, Z = rzf_select_rows(p.rzf_inverse(inst), p.rzf_load(inst), inst.noise_var, p.power, None, with_signals=True)
    G = (inst.H @ inst.H.mH).to(torch.complex128)
    torch.testing.assert_close(Z.to(torch.complex128), G @ X.to(torch.complex128), rtol=0, atol=1e-4)
    off = (X.abs().sum(1) == 0)                                              # (B, K) dropped users
    assert bool(off.any()) and bool((Z.abs().sum(1)[off] == 0).all())


def test_benchmark_main_section_times_latency_in_rounds_over_the_run(tmp_path, monkeypatch):
    """The main tables at a toy size: the latency table holds ``LATENCY_ROUNDS`` rounds taken at different
    points of the run; each method's speed-up is the median of its per-round ratios to WMMSE-100 (between
    the lowest and highest round), its time the median of its round medians; the Markdown says so."""
    import dataclasses
    import statistics

    from autounfold.evaluation import mu_miso_benchmark as M
    orig = M._overrides
    monkeypatch.setattr(M, "_overrides", lambda *a, **k: orig(*a, **k) + ["training.validation_batch=16", "training.batch_size=16"])
    monkeypatch.setattr(MuMisoProblem, "reference_solver",
                        dataclasses.replace(MuMisoProblem.reference_solver, max_iterations=200))
    monkeypatch.setattr(M.baselines, "_TUNED", {})
    r = M.run_mu_miso_benchmark(tmp_path / "b", steps=2, depth=1, layers=("momentum",), test_batch=16, latency_batch=8,
                                repeats=2, sizes=((4, 2),), depths=(1,), sections=("main",), quiet=True)
    la = r["latency"]
    assert la["rounds"] == M.LATENCY_ROUNDS == 3 and la["batch"] == 8
    rows = {x["method"]: x for x in la["rows"]}
    assert set(rows) == {"unfolded PGA-1", "WMMSE-1", "WMMSE-100", "RZF", "RZF with user selection"}
    for x in rows.values():
        ratios = [y["speedup_vs_wmmse100"] for y in x["rounds"]]
        assert len(ratios) == 3 and x["speedup_vs_wmmse100"] == statistics.median(ratios)
        assert x["speedup_min"] <= x["speedup_vs_wmmse100"] <= x["speedup_max"]
        assert x["median_ms"] == statistics.median(y["median_ms"] for y in x["rounds"])
        assert 0 < x["pct_of_reference"] <= 100 + 1e-3
    assert rows["WMMSE-100"]["speedup_vs_wmmse100"] == 1.0
    md = (tmp_path / "b" / "mu_miso_benchmark.md").read_text()
    assert "3 rounds spread over the run, median over rounds" in md and "| lowest - highest round |" in md


def test_gradients_reach_the_channel_through_the_start_and_the_steps():
    """With a channel that carries a gradient (a channel model or estimator trained end to end), the start
    stays differentiable (RZF's inverse is not detached, nor kept on the batch) and the solver takes the
    general step, whose products with H carry the gradient; its iterates are the row-space path's."""
    p = MuMisoProblem(IIDRayleigh(8, 4, (10.0, 10.0)), init="rzf")
    inst = p.sample(8, 3)
    H = inst.H.clone().requires_grad_(True)
    g_inst = ChannelBatch(H, inst.noise_var, inst.snr_db)
    V = p.init(g_inst)
    p.objective(V, g_inst).sum().backward()
    H2 = inst.H.clone().requires_grad_(True)
    load = (4 * inst.noise_var / p.power).view(-1, 1, 1)
    V2 = H2.mH @ torch.linalg.inv(H2 @ H2.mH + load * torch.eye(4))                # RZF written out
    V2 = V2 / torch.linalg.vector_norm(V2, dim=(-2, -1), keepdim=True) * math.sqrt(p.power)
    p.objective(V2, ChannelBatch(H2, inst.noise_var, inst.snr_db)).sum().backward()
    torch.testing.assert_close(H.grad, H2.grad, rtol=1e-3, atol=1e-3 * float(H2.grad.abs().max()))
    assert g_inst.derived == {}
    p.log_condition(g_inst)                          # under no_grad: still not kept for the next call
    assert g_inst.derived == {}
    algo = ProximalGradient(normalize="norm")
    assert algo.start(p, g_inst) is None
    state = algo.init_state(p.init(g_inst))
    for _ in range(3):
        state = algo.step(p, g_inst, state, {"step": 0.1, "momentum": 0.3})
    (dH,) = torch.autograd.grad(p.objective(state.x, g_inst).sum(), H)
    assert torch.isfinite(dH).all() and float(dH.abs().max()) > 0
    with torch.no_grad():
        row = solve(p, inst, algo, {"step": 0.1, "momentum": 0.3}, 3).x
    torch.testing.assert_close(state.x.detach(), row, rtol=1e-3, atol=1e-4)


def test_row_space_step_of_a_zero_channel_stays_finite():
    """A sample with H = 0 (no gradient, nothing received) keeps a finite state and reads out V = 0, as the
    general step does; the other samples are unaffected."""
    p = _problem(8, 4, (10.0, 10.0))
    inst = p.sample(4, 2)
    H = inst.H.clone()
    H[1] = 0
    inst = ChannelBatch(H, inst.noise_var, inst.snr_db)
    algo = ProximalGradient(normalize="norm")
    state = algo.start(p, inst)
    for _ in range(2):
        state = algo.step(p, inst, state, {"step": 0.1, "momentum": 0.3})
    assert torch.isfinite(torch.view_as_real(state.X)).all() and float(state.x[1].abs().max()) == 0.0
    assert bool(p.feasible(state.x, inst).all())

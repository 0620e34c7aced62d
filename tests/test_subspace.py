"""The safeguarded subspace rule (``subspace`` layer, the Auto-PGD preset): the safeguard property on
spectra built to break learned steps, the classical limits it reduces to, several streams, any shape,
and ``evaluate --set``."""
import math

import pytest
import torch
from typer.testing import CliRunner

import autounfold
from autounfold.algorithms import ProximalGradient, Subspace, solve
from autounfold.algorithms.subspace import SubspaceState
from autounfold.build import build_model
from autounfold.channels.rayleigh import CorrelatedRayleigh
from autounfold.cli import app
from autounfold.config import parse_config
from autounfold.errors import ConfigError
from autounfold.evaluation import baselines
from autounfold.evaluation.evaluate import evaluate_model
from autounfold.problems.beamforming import BeamformingProblem
from autounfold.unfolding.unfolded import Unfolded


def _rq(W, H):
    """Rayleigh quotient w^H A w / w^H w per sample, float64 (S = 1)."""
    W, H = W.to(torch.complex128), H.to(torch.complex128)
    return ((H @ W).abs().square().sum((-2, -1)) / W.abs().square().sum((-2, -1)))


def _channels_with_spectrum(sv: torch.Tensor, n_tx: int, seed: int) -> torch.Tensor:
    """H (B, n_rx, n_tx) = U diag(sv) V^H with random unitary U, V and the given singular values (B, n_rx)."""
    g = torch.Generator().manual_seed(seed)
    B, n_rx = sv.shape

    def unitary(n):
        Z = torch.complex(torch.randn(B, n, n, generator=g), torch.randn(B, n, n, generator=g))
        return torch.linalg.qr(Z)[0]

    V = unitary(n_tx)[..., :n_rx]
    return (unitary(n_rx) * sv.to(torch.complex64).unsqueeze(-2)) @ V.mH


def _adversarial(B=64, n_rx=8, n_tx=32):
    """Spectra that break fixed signed steps: rank one (one receive antenna, or a single path), two
    equal top values, a flat spectrum, a huge gap, and random ones."""
    base = torch.rand(B, n_rx).sort(-1, descending=True).values + 0.01
    sv = base.clone()
    sv[0:8, 1:] = 0.0                                   # rank one
    sv[8:16, 1] = sv[8:16, 0]                           # degenerate top pair
    sv[16:24] = 1.0 + 1e-3 * torch.rand(8, n_rx)        # flat
    sv[24:32, 1:] *= 1e-3                               # huge gap
    sv[32:40] = torch.logspace(0, -6, n_rx)             # geometric
    return _channels_with_spectrum(sv, n_tx, seed=3)


@pytest.mark.parametrize("steps", [[-0.5, -1.0, -1.9, -1.0, -0.99], [-1.0] * 5, [-3.0, 2.0, -0.2, -50.0, -1.0]])
def test_each_safeguarded_step_is_at_least_a_power_iteration_step(steps):
    H = _adversarial()
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8))
    inst = problem.instance(H, torch.full((H.shape[0],), 0.1))
    rule = Subspace()
    state = rule.init_state(problem.init(inst))
    for alpha in steps:
        pi = rule.step(problem, inst, state, {"step": math.inf})          # the power-iteration step from here
        nxt = rule.step(problem, inst, state, {"step": alpha})
        assert (_rq(nxt.W, H) >= _rq(pi.W, H) * (1 - 1e-5)).all()
        assert (_rq(nxt.W, H) >= _rq(state.W, H) * (1 - 1e-5)).all()    # and the quotient never falls
        state = nxt


def test_the_unsafeguarded_step_does_fall_below_power_iteration_there():
    """The safeguard is not vacuous: the raw learned step loses to power iteration on these spectra."""
    H = _adversarial()
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8))
    inst = problem.instance(H, torch.full((H.shape[0],), 0.1))
    steps = {"step": [-1.0] * 5}                                            # root on the top eigenvalue
    raw = solve(problem, inst, Subspace(safeguard=False), steps, 5).x
    safe = solve(problem, inst, Subspace(), steps, 5).x
    pi = baselines.power_iteration(problem, inst, 5)
    assert (_rq(raw, H) < 0.9 * _rq(pi, H)).any()
    assert (_rq(safe, H) >= _rq(pi, H) * (1 - 1e-4)).all()


def test_classical_limits():
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8))
    inst = problem.sample(16, 0)
    # a huge step is power iteration: W <- A W / ||A W||
    W = problem.init(inst)
    for _ in range(3):
        W = inst.H.mH @ (inst.H @ W)
    W = W / W.norm(dim=(-2, -1), keepdim=True) * math.sqrt(problem.power)
    torch.testing.assert_close(solve(problem, inst, Subspace(), {"step": 1e7}, 3).x, W, atol=1e-5, rtol=1e-4)
    # without the safeguard, a fixed step is projected gradient with the Rayleigh scaling (the signed
    # layer) in direction; the update is homogeneous in w, so only the power differs (PGD's projection
    # onto the ball never raises the power, the rule returns full power)
    pgd = solve(problem, inst, ProximalGradient(normalize="rayleigh"), {"step": -0.7}, 4).x
    raw = solve(problem, inst, Subspace(safeguard=False), {"step": -0.7}, 4).x
    torch.testing.assert_close(raw, pgd / pgd.norm(dim=(-2, -1), keepdim=True) * math.sqrt(problem.power),
                               atol=1e-5, rtol=1e-4)
    assert (problem.objective(raw, inst) >= problem.objective(pgd, inst) - 1e-5).all()


@pytest.mark.parametrize("streams", [2, 3])
def test_several_streams_reach_water_filling_and_survive_rank_one(streams):
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=16, n_rx=6, snr_db=(0.0, 20.0)), n_streams=streams)
    inst = problem.sample(32, 1)
    W = solve(problem, inst, Subspace(), {"step": 1e7}, 300).x      # block power iteration, converged
    opt = problem.optimum_total_power(inst, torch.complex64)
    assert bool(problem.feasible(W, inst).all())
    torch.testing.assert_close(problem.objective(W, inst), problem.objective(opt, inst), atol=1e-4, rtol=1e-4)
    # a rank-one channel (every row the same direction): the extra streams get no power, nothing breaks
    sv = torch.zeros(32, 6)
    sv[:, 0] = 2.0
    H1 = _channels_with_spectrum(sv, 16, seed=5)
    inst1 = problem.instance(H1, torch.full((32,), 0.5))
    net = Unfolded(problem, Subspace(), 4, "subspace", step_init=[-1.0, -1.5, -0.5, -1.0])
    W1 = net.run(inst1)
    assert torch.isfinite(torch.view_as_real(W1)).all() and bool(problem.feasible(W1, inst1).all())
    torch.testing.assert_close(problem.objective(W1, inst1), problem.objective(
        problem.optimum_total_power(inst1, torch.complex64), inst1), atol=1e-4, rtol=1e-4)


def test_one_model_any_antenna_count_and_gradients_flow():
    cfg = parse_config({"problem": {"channel": {"n_tx": 16, "n_rx": 4}}, "model": {"num_layers": 3, "layer": "subspace"}})
    model = build_model(cfg)
    for n_rx, n_tx in ((4, 16), (1, 8), (12, 5), (2, 64)):
        H = torch.randn(5, n_rx, n_tx, dtype=torch.complex64)
        W = model(H, torch.full((5,), 0.3))
        assert W.shape == (5, n_tx, 1) and bool(model.problem.feasible(W, None).all())
        pi = baselines.power_iteration(model.problem, model.problem.instance(H, torch.full((5,), 0.3)), 3)
        assert (_rq(W, H) >= _rq(pi, H) * (1 - 1e-4)).all()
    inst = model.problem.sample(8, 0)
    loss = -model.problem.objective(model.run(inst), inst).mean()
    loss.backward()
    grad = model.params["step"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_subspace_rule_refuses_per_antenna_power():
    with pytest.raises(ConfigError, match="total-power"):
        build_model(parse_config({"problem": {"constraint": "per_antenna", "channel": {"n_tx": 8, "n_rx": 2}},
                                  "model": {"layer": "subspace", "num_layers": 2}}))


def test_evaluate_set_changes_the_problem_only(tmp_path):
    cfg = parse_config({"problem": {"channel": {"n_tx": 16, "n_rx": 4}},
                        "model": {"num_layers": 3, "layer": "subspace"}, "training": {"steps": 0}})
    model = build_model(cfg)
    rows = evaluate_model(model, ["nominal", "iid"], batch=64, overrides=["problem.channel.n_tx=48"])
    assert {r["scenario"] for r in rows} == {"nominal", "iid"}
    mine = [r for r in rows if "this model" in r["method"]]
    pi = [r for r in rows if r["method"].startswith("power iteration")]
    assert len(mine) == 2 and all(m["pct_of_optimum"] >= p["pct_of_optimum"] - 1e-3 for m, p in zip(mine, pi))
    # the classical solver a learned beamformer has to beat at its cost is listed beside it: PGD with its
    # step and momentum tuned on a validation draw of that scenario, at least power iteration there
    tuned = [r for r in rows if r["method"].startswith("PGD, tuned signed step and momentum")]
    assert len(tuned) == 2 and all(t["pct_of_optimum"] >= p["pct_of_optimum"] - 1e-3 for t, p in zip(tuned, pi))
    path = autounfold.save(model, tmp_path / "m", cfg)
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(path), "--batch", "32", "--set", "problem.channel.n_rx=2",
                            "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e.json").exists()
    r = runner.invoke(app, ["evaluate", str(path), "--set", "model.num_layers=9"])
    assert r.exit_code == 2 and "changes the problem only" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_power_stays_feasible_where_steps_cancel_most_of_the_iterate():
    """A near rank-one channel (i.i.d. 256 x 2) with the preset's kind of steps: most of each candidate
    cancels, and rounding in the predicted norms must not build up into excess power (it once gave
    1.07 P and a 'better than optimal' score)."""
    from autounfold.channels.rayleigh import IIDRayleigh
    problem = BeamformingProblem(IIDRayleigh(n_tx=256, n_rx=2, snr_db=(0.0, 30.0)))
    inst = problem.sample(256, 0)
    net = Unfolded(problem, Subspace(), 5, "subspace", step_init=[-0.93, -1.06, -1.11, -1.30, -41.5])
    with torch.no_grad():
        iterates = net.run(inst, return_all=True)
        pi = baselines.power_iteration(problem, inst, 5)
    for W in iterates:
        assert bool(problem.feasible(W, inst).all())
    assert (_rq(iterates[-1], inst.H) >= _rq(pi, inst.H) * (1 - 1e-5)).all()


def test_the_input_check_feeds_the_start_and_still_refuses_bad_channels():
    """The call's one pass over H (the finiteness check) measures the row energies the matched-filter
    start reuses: the start equals the one computed from H alone, a NaN anywhere is refused, and a
    finite H whose energies sum past float32's range is accepted (the element-wise check decides)."""
    from autounfold.errors import InputError
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8, snr_db=(0.0, 30.0)))
    drawn = problem.sample(64, 0)
    inst = problem.instance(drawn.H, drawn.noise_var)
    assert inst.row_energy is not None
    assert torch.allclose(inst.row_energy, drawn.H.abs().square().sum(-1), rtol=1e-5)
    bare = type(inst)(inst.H, inst.noise_var, inst.snr_db)          # no energies: measured from H
    assert torch.equal(problem.init(inst), problem.init(bare))
    assert torch.equal(problem.init(inst[5:9]), problem.init(bare[5:9]))
    assert bool(problem.feasible(problem.init(inst), inst).all())
    net = Unfolded(problem, Subspace(), 3, "subspace", step_init=-1.0).eval()
    bad = drawn.H.clone()
    bad[7, 3, 11] = complex(float("nan"), 0.0)
    with pytest.raises(InputError, match="NaN or Inf"):
        net(bad, drawn.noise_var)
    for nv in (torch.zeros(64), torch.full((64,), float("nan")), torch.full((64,), float("inf"))):
        with pytest.raises(InputError, match="noise_var"):
            net(drawn.H, nv)
    for value in (float("nan"), -0.1, float("inf")):                    # one bad entry among good ones
        nv = drawn.noise_var.clone()
        nv[40] = value
        with pytest.raises(InputError, match="noise_var"):
            net(drawn.H, nv)
    # the start is the conjugate of the strongest row at full power, also for a conjugated view of H
    k = drawn.H.abs().square().sum(-1).argmax(-1)
    rows = drawn.H[torch.arange(64), k]
    expect = (rows.conj() / rows.norm(dim=-1, keepdim=True)).unsqueeze(-1) * problem.power ** 0.5
    assert torch.allclose(problem.init(inst), expect, atol=1e-6)
    view = drawn.H.conj().resolve_conj().conj()                        # same values, conj bit set
    assert view.is_conj()
    assert torch.allclose(problem.init(problem.instance(view, drawn.noise_var)), expect, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(net(view, drawn.noise_var), net(drawn.H, drawn.noise_var))
    huge = problem.instance(drawn.H * 1e18, drawn.noise_var)           # the energies' sum overflows
    assert torch.isinf(huge.row_energy.sum()) and bool(torch.isfinite(huge.row_energy).all())
    weak = problem.instance(drawn.H * 1e-16, drawn.noise_var)          # |h|^2 near float32's smallest
    assert torch.allclose(problem.init(weak).abs().square().sum((-2, -1)), torch.ones(64), rtol=1e-3)
    with torch.no_grad():                                              # an empty batch passes through
        assert net(drawn.H[:0], drawn.noise_var[:0]).shape == (0, 32, 1)


@pytest.mark.parametrize("args, needle", [(["--streams", "0"], "stream counts must be >= 1"),
                                          (["--streams", "two"], "comma-separated integers"),
                                          (["--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "device"),
                                          (["--device", "tpu"], "not a device name")])
def test_benchmark_auto_pgd_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "bench"
    r = CliRunner().invoke(app, ["benchmark-auto-pgd", "--out", str(out), *args])
    assert r.exit_code == 2 and needle in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_benchmark_latency_table_runs_through_the_device_path_on_cpu():
    """The latency table's code path (device resolution, loaded model moved to the device, measure_latency
    with the device, peak on the device) on the CPU; on a GPU machine the same call takes "cuda"."""
    from autounfold.evaluation.auto_pgd_benchmark import latency
    model = build_model(parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 2}},
                                      "model": {"num_layers": 2, "layer": "subspace_momentum"}}))
    signed = build_model(parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 2}}, "model": {"num_layers": 2}}))
    plain = build_model(parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 2}}, "model": {"num_layers": 2, "layer": "subspace"}}))
    out = latency(model, signed, model.problem, batch=4, repeats=1, seed=0, quiet=True, device="cpu", plain=plain)
    assert out["device"] == "cpu" and out["speedup_vs_closed_form"] > 0 and out["model_gflops"] > 0
    assert set(out["methods"]) >= {"PGD-200, same code path (200 layers of subspace_momentum at a fixed step)",
                                   "Auto-PGD-2 without momentum (autounfold.load, layer subspace)",
                                   "PGD-200 through layer subspace (cheaper per layer)"}
    assert out["layer"] == "subspace_momentum" and out["plain_speedup_vs_closed_form"] > 0
    assert out["speedup_vs_pgd200_plain_path"] > 0


def test_benchmark_auto_pgd_3gpp_rows_test_users_of_another_pool_and_render():
    """The 3GPP section: the nominal model and the recipe trained on UMi (pool_seed 0, same steps),
    tested on UMi / UMa users of pool_seed 1 (no training terminal among them) beside the classical
    solvers at the same depth; its Markdown renders between robustness and latency."""
    import json
    from pathlib import Path

    from autounfold.algorithms import reference
    from autounfold.build import build_problem
    from autounfold.evaluation import auto_pgd_benchmark as A
    from autounfold.seeding import generator
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 2, "pool": 16}},
                        "model": {"num_layers": 2, "layer": "subspace"},
                        "training": {"steps": 3, "batch_size": 16, "validation_batch": 32}})
    preset = A._train(cfg, 0, True)
    p = preset.problem
    val = p.sample(32, generator(0, "validation"))
    tuned, _ = baselines.tune_fixed_step(p, val, reference(p, val), 2, momentum_grid=baselines.PGD_MOMENTA)
    g = A.three_gpp(preset, tuned, 16, 0, True, channels=("umi", "uma"))
    assert [r["key"] for r in g["rows"]] == ["nominal", "umi", "uma"]
    assert g["train_channel"] == "umi" and g["train_pool_seed"] == 0 and g["steps"] == 3
    assert [r["test_pool_seed"] for r in g["rows"]] == [None, 1, 1]
    labels = g["models"]
    for r in g["rows"]:
        assert set(r["cells"]) == {"power iteration", "Lanczos", "PGD tuned (nominal)", "PGD tuned (UMi, pool 0)",
                                   labels["rayleigh"], labels["gpp"]}
        for c in r["cells"].values():
            assert 0 < c["min_pct"] <= c["p5_pct"] <= c["pct_of_optimum"] <= 100 + 1e-3
    # the test users are other terminals than the training ones (|H| is blind to the per-draw phase)
    train_p = build_problem(A.with_problem_change(cfg, {"channel": {"model": "umi", "pool_seed": 0}}, "t").problem)
    test_cfg = A._gpp_test_config(cfg, "umi")
    assert test_cfg.problem.channel.pool_seed == 1
    seen = train_p.sample(256, generator(0, "t")).H.abs()
    new = build_problem(test_cfg.problem).sample(16, generator(0, "u")).H.abs()
    gap = (seen.unsqueeze(0) - new.unsqueeze(1)).abs().amax((-2, -1)).amin(1)
    assert bool((gap > 1e-3).all())
    lines = "\n".join(A.gpp_markdown(g, 16, 2))
    assert "## 3GPP channels" in lines and "| 3GPP UMa (Sionna, 3.5 GHz) | 1 |" in lines and labels["gpp"] in lines
    result = json.loads((Path(__file__).parents[1] / "benchmarks" / "auto_pgd_benchmark.json").read_text())
    result["3gpp"] = g
    md = A.markdown(result)
    assert md.index("## Robustness") < md.index("## 3GPP channels") < md.index("## Latency")
    result.pop("3gpp")
    assert "## 3GPP channels" not in A.markdown(result)


def test_gradients_reach_the_channel_through_the_check_and_the_start():
    """A differentiable H (end-to-end training through a channel model or an estimator in front of
    the precoder) stays differentiable: the input check reads detached values (no warning) and the
    start builds no in-place op on a tensor autograd needs."""
    import warnings
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=16, n_rx=4, snr_db=(0.0, 20.0)))
    drawn = problem.sample(8, 3)
    net = Unfolded(problem, Subspace(), 3, "subspace", step_init=-1.0)
    H = drawn.H.clone().requires_grad_()
    nv = drawn.noise_var.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        W = net(H, nv)
        problem.objective(W, problem.instance(H, nv)).sum().backward()
    assert H.grad is not None and bool(torch.isfinite(torch.view_as_real(H.grad)).all())
    assert float(H.grad.abs().sum()) > 0


def test_the_start_shortcut_is_the_generic_start_up_to_scale():
    """``Subspace.start`` (the strongest row from the input check's energies, unscaled, its energy as
    ||W||^2) gives what ``init_state(problem.init(inst))`` gives, layer by layer, to float32 rounding;
    where it does not apply (random start, several streams, one receive antenna) it declines and the
    network takes the generic path."""
    H = _adversarial()
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8, snr_db=(0.0, 30.0)))
    inst = problem.instance(H, torch.full((H.shape[0],), 0.1))
    alg = Subspace()
    state = alg.start(problem, inst)
    generic = alg.init_state(problem.init(inst))
    assert state is not None and state.norm2 is not None
    assert torch.equal(state.norm2, inst.row_energy.amax(-1))
    assert torch.allclose(state.norm2, state.W.abs().square().sum((-2, -1)), rtol=1e-5)
    assert torch.allclose(state.W * (problem.power / state.norm2).sqrt().view(-1, 1, 1), generic.W, atol=1e-6)
    drawn = problem.sample(256, 1)
    for steps in ([-1.0, -1.9, -0.5, -50.0, 2.0], [-1.0] * 5):
        fast = Unfolded(problem, Subspace(), 5, "subspace", step_init=steps).eval()
        slow_alg = Subspace()
        slow_alg.start = None                                   # the generic path, same steps
        slow = Unfolded(problem, slow_alg, 5, "subspace", step_init=steps).eval()
        with torch.no_grad():
            # drawn channels: the same precoders; the adversarial spectra put the safeguard's test on
            # a knife edge (equal top values, flat spectra), where rounding may pick the other of two
            # candidates of equal quotient: the same rate then, not the same vector
            for x, y in zip(fast(drawn.H, drawn.noise_var, return_all=True), slow(drawn.H, drawn.noise_var, return_all=True)):
                assert torch.allclose(x, y, atol=1e-5)
            for x, y in zip(fast.run(inst, return_all=True), slow.run(inst, return_all=True)):
                assert torch.allclose(problem.objective(x, inst), problem.objective(y, inst), rtol=1e-4)
                assert bool(problem.feasible(x, inst).all())
    strided = torch.view_as_complex(torch.view_as_real(H).transpose(1, 2).contiguous().transpose(1, 2))
    assert not strided.is_contiguous() and torch.equal(strided, H)
    assert torch.equal(alg.start(problem, problem.instance(strided, inst.noise_var)).W, state.W)
    rand = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8), init="random")
    two = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8), n_streams=2)
    one = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=1))
    per_antenna = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8), constraint="per_antenna")
    for p in (rand, two, one, per_antenna):
        d = p.sample(4, 0)
        assert alg.start(p, p.instance(d.H, d.noise_var)) is None
    bare = type(inst)(inst.H, inst.noise_var, inst.snr_db)             # no energies measured
    assert alg.start(problem, bare) is None


@pytest.mark.parametrize("steps, momenta", [([-2.2, -2.3, -1.9, -4.2, -42.5], [0.0, 0.2, 0.2, 1.0, 2.1]),
                                            ([-1.0] * 5, [0.0, 0.9, -0.9, 3.0, 0.5]),
                                            ([-3.0, 2.0, -0.2, -50.0, -1.0], [0.0, -2.0, 5.0, 0.3, 0.0])])
def test_momentum_steps_keep_the_safeguard_and_their_bookkeeping(steps, momenta):
    """With the heavy-ball term: every step is at least a power-iteration step from the same point and
    never lowers the quotient, on the adversarial spectra; the carried image is U = H W and the
    iterate has unit norm (the candidate's norms come from scalars, not measured); the momentum is
    inert where beta = 0 (the subspace layer's iterates to rounding); the readout meets the power."""
    H = _adversarial()
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8))
    inst = problem.instance(H, torch.full((H.shape[0],), 0.1))
    rule = Subspace()
    state = rule.start(problem, inst)
    plain = rule.start(problem, inst)
    for alpha, beta in zip(steps, momenta):
        pi = rule.step(problem, inst, state, {"step": math.inf})
        nxt = rule.step(problem, inst, state, {"step": alpha, "momentum": beta})
        assert (_rq(nxt.W, H) >= _rq(pi.W, H) * (1 - 1e-5)).all()
        assert (_rq(nxt.W, H) >= _rq(state.W, H) * (1 - 1e-5)).all()
        assert torch.allclose(nxt.U, H @ nxt.W, atol=1e-4)
        # unit norm up to the cancellation the safeguard admits (a candidate down to 1e-4 of its parts:
        # ~1e-3 relative error in float32; the readout re-measures it)
        assert torch.allclose(nxt.W.abs().square().sum((-2, -1)), torch.ones(H.shape[0]), atol=2e-3)
        # the previous iterate at unit scale (the start is kept unscaled, with its factor), and the
        # norms and cross products carried as scalars equal the measured ones (to the cancellation the
        # safeguard admits: they are exact for the exact iterate, the stored one carries its rounding)
        Wp = nxt.W_prev if nxt.prev_scale is None else nxt.W_prev * nxt.prev_scale.view(-1, 1, 1)
        Up = nxt.U_prev if nxt.prev_scale is None else nxt.U_prev * nxt.prev_scale.view(-1, 1, 1)
        assert torch.allclose(Wp.abs().square().sum((-2, -1)), torch.ones(H.shape[0]), atol=2e-3)
        measured = ((Wp.abs().square().sum((-2, -1)), Up.abs().square().sum((-2, -1))),
                    ((nxt.W.conj() * Wp).sum((-2, -1)).real, (nxt.U.conj() * Up).sum((-2, -1)).real))
        for got, want in zip((*nxt.prev_norms, *nxt.prev_cross), (*measured[0], *measured[1])):
            assert torch.allclose(got, want, rtol=2e-3, atol=2e-3 * float(want.abs().max()))
        assert bool(problem.feasible(nxt.x, inst).all())
        state = nxt
        zero = rule.step(problem, inst, plain, {"step": alpha, "momentum": 0.0})
        ref = rule.step(problem, inst, SubspaceState(plain.W, plain.U, plain.power, plain.noise_var, plain.norm2), {"step": alpha})
        assert torch.allclose(zero.W, ref.W, atol=1e-6) and ref.W_prev is None
        plain = zero
    # the momentum moves the iterate somewhere: not the momentum-free sequence
    free = solve(problem, inst, Subspace(), {"step": steps}, 5).x
    assert not torch.allclose(state.x, free, atol=1e-3)


def test_momentum_layer_trains_and_runs_several_streams():
    """The momentum layer trains its betas; with several streams the heavy-ball term moves the basis,
    which stays orthonormal with U = H W, every step at least power iteration's sum of Ritz values,
    and beta = 0 is the subspace layer's subspace (the same objective)."""
    from autounfold.config import load_config
    from autounfold.training import train
    cfg = load_config("preset:auto_pgd", ["model.layer=subspace_momentum", "problem.channel.n_tx=16", "problem.channel.n_rx=4",
                                          "training.steps=20", "training.batch_size=64", "training.validation_batch=128",
                                          "training.validate_every=10"])
    model = build_model(cfg)
    assert model.scalar_parameters()["momentum"] == [0.0] * 5
    train(model, cfg.training, seed=0, progress=False)
    assert any(abs(v) > 1e-4 for v in model.scalar_parameters()["momentum"][1:])
    two = build_model(load_config("preset:auto_pgd", ["model.layer=subspace_momentum", "problem.n_streams=2"]))
    assert two.problem.n_streams == 2
    for S in (2, 3):
        problem = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8), n_streams=S)
        H = _adversarial()
        inst = problem.instance(H, torch.full((H.shape[0],), 0.1))
        rule = Subspace()
        state = plain = rule.init_state(problem.init(inst))
        moved = False
        for alpha, beta in zip([-2.2, -1.0, -3.0, -1.2, -40.0], [0.0, 0.9, -0.7, 3.0, 0.5]):
            pi = rule.step(problem, inst, state, {"step": math.inf})
            nxt = rule.step(problem, inst, state, {"step": alpha, "momentum": beta})
            ritz = lambda st: st.U.abs().square().sum((-2, -1)).double()      # tr W^H A W, W orthonormal
            assert (ritz(nxt) >= ritz(pi) * (1 - 1e-5)).all()
            assert torch.allclose(nxt.W.mH @ nxt.W, torch.eye(S, dtype=nxt.W.dtype).expand(H.shape[0], S, S), atol=1e-5)
            assert torch.allclose(nxt.U, H @ nxt.W, atol=1e-4)
            assert bool(problem.feasible(nxt.x, inst).all())
            zero = rule.step(problem, inst, plain, {"step": alpha, "momentum": 0.0})
            ref = rule.step(problem, inst, SubspaceState(plain.W, plain.U, plain.power, plain.noise_var), {"step": alpha})
            assert torch.allclose(problem.objective(zero.x, inst), problem.objective(ref.x, inst), rtol=1e-4)
            moved = moved or not torch.allclose(problem.objective(nxt.x, inst), problem.objective(zero.x, inst), rtol=1e-4)
            state, plain = nxt, zero
        assert moved

@pytest.mark.parametrize("n_tx, n_rx", [(64, 16), (32, 2), (16, 64), (32, 1)])
def test_single_stream_lanczos_is_rayleigh_ritz_over_the_krylov_space(n_tx, n_rx):
    """The fast single-stream Lanczos (three-term recurrence, one Gram-Schmidt pass, the tridiagonal's
    top eigenpair by its own recurrence) reaches the Rayleigh quotient of the best vector of
    span{w0, A w0, .., A^K w0}, computed here in float64 from the monomial basis, also where the
    Krylov space ends early (n_rx < K + 1, rank one) and on the adversarial spectra."""
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=n_tx, n_rx=n_rx))
    drawn = problem.sample(128, 0)
    cases = [problem.instance(drawn.H, drawn.noise_var)]
    if (n_tx, n_rx) == (64, 16):
        H = _adversarial()
        adv = BeamformingProblem(CorrelatedRayleigh(n_tx=32, n_rx=8))
        cases.append(adv.instance(H, torch.full((H.shape[0],), 0.1)))
    for inst in cases:
        H = inst.H.to(torch.complex128)
        A = H.mH @ H
        for K in (1, 3, 5, 8):
            x = baselines.lanczos(problem, inst, K)
            assert x.shape == (H.shape[0], H.shape[-1], 1) and bool(problem.feasible(x, inst).all())
            cols = [problem.init(inst).to(torch.complex128)]
            for _ in range(K):
                v = A @ cols[-1]
                cols.append(v / torch.linalg.vector_norm(v, dim=(-2, -1), keepdim=True).clamp_min(1e-300))
            Q, _ = torch.linalg.qr(torch.cat(cols, -1))
            best = torch.linalg.eigvalsh(Q.mH @ A @ Q)[..., -1]
            got = _rq(x, inst.H)
            # float32 resolves the quotient of near-degenerate spectra (flat, equal top pair) to ~1e-4
            assert torch.allclose(got, best, rtol=1e-4, atol=1e-9), (K, float(((got - best) / best).abs().max()))
            assert (got >= _rq(baselines.power_iteration(problem, inst, K), inst.H) * (1 - 1e-5)).all()

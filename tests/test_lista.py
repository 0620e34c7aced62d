"""Sparse recovery at the state of the art: support selection, ALISTA's analytic weight, the oracle
bound, lambda-tuned ISTA / FISTA, stagewise training and the LISTA-CPSS / ALISTA / TiLISTA layers."""
import math

import pytest
import torch

import autounfold
from autounfold.algorithms import ProximalGradient, solve
from autounfold.algorithms.tuning import lasso_solve, tune_lasso
from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.errors import ConfigError
from autounfold.problems.lasso import LassoProblem
from autounfold.seeding import generator
from autounfold.training import train
from autounfold.training.trainer import STAGE_RATES, _phases
from autounfold.unfolding import Unfolded
from autounfold.unfolding.layers import support_schedule


def _nmse(x, x_true):
    return 10 * math.log10(float((x - x_true).square().sum() / x_true.square().sum()))


@pytest.fixture(scope="module")
def problem():
    return LassoProblem(n=40, m=20, sparsity=4, snr_db=30.0, lam=0.05)


def test_support_selection_keeps_the_largest_entries_unshrunk(problem):
    z = torch.tensor([[3.0, -2.0, 0.5, -0.05, 1.0] + [0.0] * 35])
    plain = problem.prox(z, None, 0.1)
    assert torch.allclose(plain[0, :5], torch.tensor([2.9, -1.9, 0.4, 0.0, 0.9]))
    ss = problem.prox(z, None, 0.1, support=2 / 40)                # the 2 largest pass through
    assert torch.allclose(ss[0, :5], torch.tensor([3.0, -2.0, 0.4, 0.0, 0.9]))
    assert torch.equal(problem.prox(z, None, 0.1, support=0.0), plain)
    # never an entry below the threshold, however large the share
    assert problem.prox(z, None, 0.1, support=1.0)[0, 3] == 0 and problem.prox(z, None, 0.1, support=1.0)[0, 0] == 3.0


def test_support_schedule_grows_to_its_cap():
    assert support_schedule(4, (0.05, 0.12)) == pytest.approx([0.05, 0.1, 0.12, 0.12])
    assert support_schedule(2) == pytest.approx([0.012, 0.024])


def test_alista_weight_solves_its_program(problem):
    A, W = problem.A.double(), problem.alista_weight().double()
    assert torch.allclose((W * A).sum(0), torch.ones(problem.n, dtype=torch.float64), atol=1e-5)   # unit diagonal of W^T A
    g = torch.Generator().manual_seed(0)
    for i in (0, 7, 31):                      # optimal: any feasible move (v with v^T a_i = 0) raises ||A^T w||
        v = torch.randn(problem.m, generator=g, dtype=torch.float64)
        v -= (v @ A[:, i]) / (A[:, i] @ A[:, i]) * A[:, i]
        base = (A.T @ W[:, i]).square().sum()
        assert (A.T @ (W[:, i] + 0.01 * v)).square().sum() > base
    off = lambda M: torch.linalg.matrix_norm(M - torch.diag(torch.diag(M)))          # noqa: E731
    assert off(W.T @ A) < off(A.T @ A)           # less total cross-talk than A's own (the program's objective)


def test_oracle_is_exact_without_noise_and_the_best_on_average():
    quiet = LassoProblem(n=40, m=20, sparsity=4, snr_db=200.0)
    inst = quiet.sample(16, seed=1)
    assert _nmse(quiet.oracle(inst), inst.x_true) < -60
    noisy = LassoProblem(n=40, m=20, sparsity=4, snr_db=20.0)
    inst = noisy.sample(500, seed=2)
    fista = lasso_solve(noisy, inst, 500, noisy.lam, "fista").x
    assert _nmse(noisy.oracle(inst), inst.x_true) < _nmse(fista, inst.x_true) - 1


def test_tuned_lambda_beats_the_default_and_generalises(problem):
    val, test = problem.sample(256, seed=3), problem.sample(256, seed=4)
    lam, score = tune_lasso(problem, val, val.x_true, 8, "ista")
    default = problem.score(problem.summarize(lasso_solve(problem, val, 8, problem.lam).x, val, val.x_true))
    assert score >= default and lam != problem.lam        # 8 iterations want another weight than the LASSO's
    assert _nmse(lasso_solve(problem, test, 8, lam).x, test.x_true) < _nmse(lasso_solve(problem, test, 8, problem.lam).x, test.x_true)
    # FISTA and ISTA through the platform's update rule: the classical baselines are that code
    ista = solve(problem, test, ProximalGradient(normalize="lipschitz"), {"step": 1.0}, 8).x
    assert torch.allclose(lasso_solve(problem, test, 8, problem.lam).x, ista)
    with pytest.raises(ValueError, match="method must be"):
        tune_lasso(problem, val, val.x_true, 8, "admm")


def test_stagewise_phases_follow_the_lista_cpss_recipe():
    cfg = load_config("preset:lista", ["training.steps=120", "model.num_layers=4"])
    phases = _phases(cfg.training, 4)
    assert len(phases) == 3 * 4 and sum(p[1] for p in phases) == 120
    assert [p[0] for p in phases] == [k for k in (1, 2, 3, 4) for _ in STAGE_RATES]
    assert [p[3] for p in phases] == [v for k in range(4) for v in (k, None, None)]   # layer k alone, then all
    assert [p[4] for p in phases] == list(STAGE_RATES) * 4
    assert all(p[2][-1] == 1.0 and sum(p[2]) == 1.0 for p in phases)                  # the loss of layer k


def test_the_new_layer_alone_stage_leaves_other_layers_untouched(problem):
    net = Unfolded(problem, ProximalGradient(normalize="lipschitz"), 3, "lista_cpss", step_init=1.0)
    before = {k: v.detach().clone() for k, v in net.params.items()}
    inst = problem.sample(32, seed=5)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        net.problem.supervised_loss(net.run(inst, num_layers=2), inst, inst.x_true).mean().backward()
        net.restrict_grad(1)
        opt.step()
    for key, p in net.params.items():
        if p.requires_grad:
            assert torch.equal(p[0], before[key][0]) and torch.equal(p[2], before[key][2]), key
            assert not torch.equal(p[1], before[key][1]), key
        else:
            assert torch.equal(p, before[key])                  # the support schedule is never trained


def test_alista_learns_two_scalars_per_layer_and_keeps_its_matrix(problem):
    cfg = load_config("preset:lista", ["problem.n=40", "problem.m=20", "problem.sparsity=4", "problem.snr_db=30",
                                       "model.layer=alista", "model.num_layers=4", "training.steps=1200",
                                       "training.validate_every=300", "training.validation_batch=256"])
    model = build_model(cfg)
    assert model.num_parameters() == 2 * 4
    W0 = model.params["operator__backproj"].detach().clone()
    assert W0.shape == (1, 40, 20) and not model.params["operator__backproj"].requires_grad
    res = train(model, cfg.training, seed=0, progress=False)
    assert torch.equal(model.params["operator__backproj"], W0)
    assert set(model.scalar_parameters()) == {"threshold", "step", "support"}
    test = model.problem.sample(512, generator(0, "test"))
    val = model.problem.sample(256, generator(0, "validation"))
    lam, _ = tune_lasso(model.problem, val, val.x_true, 4, "fista")
    with torch.no_grad():
        assert _nmse(model(test.y), test.x_true) < _nmse(lasso_solve(model.problem, test, 4, lam, "fista").x, test.x_true) - 2
    assert res.best_score == max(h["val_score"] for h in res.history)


@pytest.mark.parametrize("layer", ["lista_cpss", "tilista"])
def test_learned_matrix_layers_train_and_reload(tmp_path, layer):
    cfg = load_config("preset:lista", ["problem.n=40", "problem.m=20", "problem.sparsity=4", "problem.snr_db=30",
                                       f"model.layer={layer}", "model.num_layers=3", "training.steps=90",
                                       "training.validate_every=30", "training.validation_batch=256"])
    model = build_model(cfg)
    shape = (1, 40, 20) if layer == "tilista" else (3, 40, 20)
    assert model.params["operator__backproj"].shape == shape and model.params["operator__backproj"].requires_grad
    res = train(model, cfg.training, seed=0, progress=False)
    assert res.best_score > res.history[0]["val_score"]
    autounfold.save(model, tmp_path / "m")
    loaded = autounfold.load(tmp_path / "m")
    y = model.problem.sample(8, seed=9).y
    with torch.no_grad():
        assert torch.equal(loaded(y), model(y))


@pytest.mark.parametrize("overrides, message", [
    (["model.layer=ista", "model.support=[0.01,0.1]"], "model.support applies to layers"),
    (["model.support=[0.01,1.5]"], "both shares in"),
    (["training.scalar_lr=0"], "scalar_lr"),
])
def test_bad_sparse_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("preset:lista", overrides)


def test_scalar_lr_gives_scalars_their_own_rate():
    from autounfold.training.trainer import _optimizer
    cfg = load_config("preset:lista", ["model.num_layers=2"])
    model = build_model(cfg)
    opt = _optimizer(cfg.training, model, 0.2)
    rates = sorted((g["lr"], sum(p.numel() for p in g["params"])) for g in opt.param_groups)
    assert rates == [(pytest.approx(0.2 * cfg.training.lr), 2 * 50 * 25), (pytest.approx(0.2 * cfg.training.scalar_lr), 2)]


def test_benchmark_lista_rejects_bad_options_before_work(tmp_path, cli, refuse):
    refuse("autounfold.evaluation.lista_benchmark.run_lista_benchmark")
    for args, what in [(["--settings", "huge"], "--settings"), (["--layers", "signed"], "--layers"),
                       (["--textbook-depths", "0"], "--textbook-depths")]:
        r = cli("benchmark-lista", "--out", tmp_path / "o", *args)
        assert r.exit_code == 2 and what in r.stderr + r.stdout, (r.stderr, r.exception)
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("layer, hook", [("alista_correction", "correction"), ("alista_prox", "proxnet")])
def test_paradigm_3_and_4_start_as_alista_and_learn(layer, hook):
    """The learned correction term (3) and the learned prox (4) on the same unrolled loop: at the
    start they are ALISTA exactly; trained, their per-entry networks change and the NMSE drops."""
    over = ["problem.n=40", "problem.m=20", "problem.sparsity=4", "problem.snr_db=30", "model.num_layers=4"]
    alista = build_model(load_config("preset:lista", over + ["model.layer=alista"]))
    cfg = load_config("preset:lista", over + [f"model.layer={layer}", "training.steps=240", "training.validate_every=60",
                                              "training.validation_batch=256"])
    model = build_model(cfg)
    y = model.problem.sample(16, seed=3).y
    with torch.no_grad():
        assert torch.allclose(model(y), alista(y), atol=1e-6)
    assert model.num_parameters() == alista.num_parameters() + 4 * (8 * (2 if hook == "correction" else 1) + 8 + 8 + 1)
    res = train(model, cfg.training, seed=0, progress=False)
    assert res.best_score > res.history[0]["val_score"] + 0.2
    with torch.no_grad():                       # the trained network is part of the map: removing it changes the output
        trained = model(y)
        model.params[f"{hook}__w2"].zero_()
        assert (model(y) - trained).abs().max() > 1e-4


def test_robustness_rows_cover_every_condition_and_summary_finds_the_worst():
    """The benchmark's off-nominal table: every (condition, network) row, the same matrix A, FISTA
    re-tuned per condition never worse than with the nominal lambda on its own validation choice,
    and the summary picks the condition with the largest margin."""
    from autounfold.evaluation.lista_benchmark import ROBUSTNESS, robustness, robustness_summary
    from autounfold.problems.lasso import LassoProblem
    problem = LassoProblem(n=20, m=10, sparsity=2, snr_db=20.0, lam=0.05)
    cfg = load_config("preset:lista", ["problem.n=20", "problem.m=10", "problem.sparsity=2", "model.layer=alista",
                                       "model.num_layers=4"])
    model = build_model(cfg).eval()
    rows = robustness("textbook", problem, {"ALISTA-4": model}, {4: 0.05}, 200, 200, 0, quiet=True)
    assert [r["condition"] for r in rows] == ["nominal"] + [c for c, _ in ROBUSTNESS["textbook"]]
    assert all(math.isfinite(r["nmse_db"]) and r["oracle_nmse_db"] < r["fista_retuned_db"] for r in rows)
    lo = next(r for r in rows if r["condition"] == "SNR 10 dB")
    hi = next(r for r in rows if r["condition"] == "SNR 40 dB")
    assert hi["oracle_nmse_db"] < lo["oracle_nmse_db"] - 20          # the condition really changed the data
    summary = robustness_summary(rows)
    off = [r for r in rows if r["condition"] != "nominal"]
    assert summary[0]["worst_margin_vs_fista_retuned_db"] == max(r["nmse_db"] - r["fista_retuned_db"] for r in off)

"""Robust PCA (the survey's comparative study): the data model, the alternating update of eqs.
(25)-(27), the classical solver's tuning, and the four unfolded variants (one per paradigm)."""
import math

import pytest
import torch

import autounfold
from autounfold.algorithms import solve
from autounfold.algorithms.rpca import RPCAStep
from autounfold.algorithms.tuning import rpca_params, tune_rpca
from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.errors import ConfigError, InputError
from autounfold.plugins import LAYERS as LAYERS_TABLE
from autounfold.problems.rpca import RPCAProblem
from autounfold.seeding import generator
from autounfold.training import train

SMALL = ["problem.n1=30", "problem.n2=24", "problem.rank=2"]


@pytest.fixture(scope="module")
def problem():
    return RPCAProblem(n1=30, n2=24, rank=2, sparsity=0.1)


def test_samples_follow_the_model(problem):
    inst = problem.sample(64, generator(0, "t"))
    assert inst.X.shape == (64, 30, 24) and inst.X.dtype == torch.float32
    assert torch.allclose(inst.X, inst.V + problem.Psi @ inst.Y, atol=1e-5)
    assert torch.linalg.matrix_rank(inst.V[0]).item() == 2
    share = float((inst.Y != 0).float().mean())
    assert abs(share - 0.1) < 0.01
    assert torch.allclose(problem.Psi @ problem.Psi.T, torch.eye(30), atol=1e-5)      # orthogonal
    assert torch.equal(problem.Psi_hat, problem.Psi)                                  # case (a): the solver is told the truth
    # same seed, same draw
    assert torch.equal(problem.sample(4, generator(5, "t")).X, problem.sample(4, generator(5, "t")).X)


def test_init_is_the_truncated_svd_with_no_outliers(problem):
    inst = problem.sample(3, generator(1, "t"))
    L, R, Y = problem.unpack(problem.init(inst), inst)
    assert L.shape == (3, 30, 2) and R.shape == (3, 24, 2) and not Y.any()
    U, S, Vh = torch.linalg.svd(inst.X)
    best = (U[:, :, :2] * S[:, None, :2]) @ Vh[:, :2]
    assert torch.allclose(L @ R.transpose(1, 2), best, atol=1e-4)


def test_unit_steps_at_the_objectives_weight_descend_eq24(problem):
    """With step 1 and threshold lam the Y update (Psi orthogonal) and the L update are exact block
    minimisations of eq. 24; R's (eq. 27 as written: gradient at the old L, the new L's Gram) is not,
    yet the objective never rises on these draws and falls by 10 %."""
    inst = problem.sample(8, generator(2, "t"))
    res = solve(problem, inst, RPCAStep(), rpca_params(1.0, problem.lam), 15, trajectory=True)
    objs = [problem.objective(problem.init(inst), inst)] + [problem.objective(x, inst) for x in res.trajectory]
    for a, b in zip(objs, objs[1:]):
        assert (b <= a * (1 + 1e-5) + 1e-4).all()
    assert (objs[-1] < 0.9 * objs[0]).all()


def test_decaying_threshold_recovers_the_low_rank_part():
    problem = RPCAProblem(n1=60, n2=50, rank=2)
    inst = problem.sample(8, generator(3, "t"))
    fixed = solve(problem, inst, RPCAStep(), rpca_params(0.9, 0.3), 30).x
    decay = solve(problem, inst, RPCAStep(), rpca_params(0.9, 0.3, 0.8), 30).x
    init = problem.summarize(problem.init(inst), inst)["lowrank_nmse_db"]
    s_fixed = problem.summarize(fixed, inst)["lowrank_nmse_db"]
    s_decay = problem.summarize(decay, inst)["lowrank_nmse_db"]
    assert s_fixed < init - 5                       # a fixed threshold leaves the lam bias
    assert s_decay < s_fixed - 20 and s_decay < -40


def test_tuning_picks_from_the_grid_and_beats_the_default(problem):
    val = problem.sample(8, generator(0, "validation"))
    best, score = tune_rpca(problem, val, 5)
    off_grid = problem.score(problem.summarize(solve(problem, val, RPCAStep(), rpca_params(0.4, 2.0), 5).x, val))
    assert score > off_grid + 3 and best["decay"] < 1.0          # a decaying threshold wins at 5 iterations
    # the tuned constants carry to a fresh draw
    test = problem.sample(8, generator(1, "test"))
    tuned = problem.summarize(solve(problem, test, RPCAStep(), rpca_params(**best), 5).x, test)["lowrank_nmse_db"]
    naive = problem.summarize(solve(problem, test, RPCAStep(), rpca_params(0.4, 2.0), 5).x, test)["lowrank_nmse_db"]
    assert tuned < naive - 3


def test_mismatched_psi_caps_the_classical_solver():
    good = RPCAProblem(n1=60, n2=50, rank=2)
    bad = RPCAProblem(n1=60, n2=50, rank=2, psi_mismatch=0.3)
    assert torch.equal(good.Psi, bad.Psi) and not torch.equal(bad.Psi_hat, bad.Psi)
    inst = good.sample(8, generator(4, "t"))
    p = rpca_params(0.9, 0.3, 0.8)
    s_good = good.summarize(solve(good, inst, RPCAStep(), p, 30).x, inst)["lowrank_nmse_db"]
    s_bad = bad.summarize(solve(bad, inst, RPCAStep(), p, 30).x, inst)["lowrank_nmse_db"]
    assert s_bad > s_good + 20


LAYERS = ["rpca_hyper", "rpca_objective", "rpca_correction", "rpca_dnn"]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_variant_starts_as_the_classical_solver(layer):
    cfg = load_config("preset:rpca", SMALL + [f"model.layer={layer}", "model.num_layers=4", "problem.psi_mismatch=0.2"])
    model = build_model(cfg)
    p = model.problem
    inst = p.sample(4, generator(6, "t"))
    classical = solve(p, inst, RPCAStep(), rpca_params(cfg.model.step_init, p.lam, p.lam_decay), 4).x
    with torch.no_grad():
        V, Y = model(inst.X)
    V_ref, Y_ref = p.output(classical, inst)
    assert torch.allclose(V, V_ref, atol=1e-4) and torch.allclose(Y, Y_ref, atol=1e-4)


def test_parameter_counts_and_fixed_dimensions():
    counts, fixes = {}, {}
    for layer in LAYERS:
        model = build_model(load_config("preset:rpca", SMALL + [f"model.layer={layer}", "model.num_layers=3"]))
        counts[layer] = model.num_parameters()
        fixes[layer] = LAYERS_TABLE.get(layer).fixes
    assert counts["rpca_hyper"] == 3 * 3
    assert counts["rpca_objective"] == 3 * (3 + 2 * 30 * 30)
    assert counts["rpca_correction"] > counts["rpca_hyper"] and counts["rpca_dnn"] > counts["rpca_objective"]
    assert fixes["rpca_hyper"] == () and fixes["rpca_objective"] == ("n1",)


def test_variants_run_at_other_column_counts_and_psi_fixes_n1():
    """Psi (n1 x n1) belongs to the problem, so every variant is bound to n1; the scalar and CNN
    variants run at any n2."""
    hyper = build_model(load_config("preset:rpca", SMALL + ["model.num_layers=2"]))
    other = RPCAProblem(n1=30, n2=40, rank=2).sample(2, generator(7, "t"))
    with torch.no_grad():
        V, Y = hyper(other.X)
    assert V.shape == (2, 30, 40)
    objective = build_model(load_config("preset:rpca", SMALL + ["model.layer=rpca_objective", "model.num_layers=2"]))
    with pytest.raises(InputError, match=r"shape \(B, 30, n2\)"):      # Psi (n1 x n1) belongs to the problem
        objective(torch.randn(2, 20, 24))


@pytest.mark.parametrize("layer", LAYERS)
def test_each_paradigm_learns(tmp_path, layer):
    cfg = load_config("preset:rpca", SMALL + [f"model.layer={layer}", "model.num_layers=3", "training.steps=60",
                                              "training.validate_every=20", "training.validation_batch=16"])
    model = build_model(cfg)
    res = train(model, cfg.training, seed=0, progress=False)
    assert res.best_score > res.history[0]["val_score"] + 0.1
    autounfold.save(model, tmp_path / "m")
    loaded = autounfold.load(tmp_path / "m")
    X = model.problem.sample(2, seed=9).X
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(X), model(X)))


@pytest.mark.parametrize("overrides, message", [
    (["problem.rank=30"], "rank"),
    (["problem.sparsity=1.5"], "sparsity"),
    (["problem.lam_decay=0"], "lam_decay"),
    (["model.layer=ista"], "ista"),
])
def test_bad_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(load_config("preset:rpca", SMALL + overrides))


def test_bad_inputs_name_the_problem():
    model = build_model(load_config("preset:rpca", SMALL + ["model.num_layers=1"]))
    for X, what in [(torch.randn(2, 30), "shape"), (torch.randn(2, 30, 24, dtype=torch.complex64), "real"),
                    (torch.full((1, 30, 24), math.nan), "NaN")]:
        with pytest.raises(InputError, match=what):
            model(X)


def test_layerwise_recipe_is_each_layer_alone_then_end_to_end():
    from autounfold.training.trainer import _phases
    cfg = load_config("preset:rpca", SMALL + ["training.steps=100", "training.loss=layerwise"]).training
    phases = _phases(cfg, 5)
    assert [(k, n, only) for k, n, _, only, _ in phases] == [(1, 10, 0), (2, 10, 1), (3, 10, 2), (4, 10, 3), (5, 10, 4),
                                                            (5, 50, None)]
    assert sum(p[1] for p in phases) == 100


def test_benchmark_rpca_rejects_bad_options_before_work(tmp_path, cli, refuse):
    refuse("autounfold.evaluation.rpca_benchmark.run_rpca_benchmark")
    for args, what in [(["--cases", "c"], "--cases"), (["--layers", "ista"], "--layers"), (["--mismatch", "0"], "--mismatch"),
                       (["--n", "3"], "--n")]:
        r = cli("benchmark-rpca", "--out", tmp_path / "o", *args)
        assert r.exit_code == 2 and what in r.stderr + r.stdout, (r.stderr, r.exception)
        assert not (tmp_path / "o").exists()


def test_robustness_rows_move_the_data_and_the_solver_as_declared():
    """Off-nominal rows: data conditions change the draw (20 % outliers is harder for the same
    solver), a Psi error reaches the network through transfer (its NMSE changes), and the summary
    reports the worst condition."""
    from autounfold.evaluation.rpca_benchmark import robustness, robustness_summary
    cfg = load_config("preset:rpca", ["problem.n1=20", "problem.n2=20", "problem.rank=2", "model.layer=rpca_hyper",
                                      "model.num_layers=3"])
    model = build_model(cfg).eval()
    rows = robustness("a", model.problem, {"hyper": model}, {"step": 1.0, "threshold": 0.3, "decay": 0.7}, 8, 0, True)
    by = {r["condition"]: r for r in rows}
    assert set(by) == {"nominal", "5 % outliers", "20 % outliers", "outliers 3x weaker", "true rank r + 1 (the solver assumes r)",
                       "Psi error 0.1"}
    assert all(math.isfinite(r["nmse_db"]) for r in rows)
    assert by["20 % outliers"]["classical_nominal_db"] > by["5 % outliers"]["classical_nominal_db"]
    assert by["Psi error 0.1"]["nmse_db"] != by["nominal"]["nmse_db"]
    s = robustness_summary(rows)[0]
    assert s["worst_nmse_db"] == max(r["nmse_db"] for r in rows if r["condition"] != "nominal")

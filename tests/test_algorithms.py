import pytest
import torch

from autounfold.algorithms import reference, ProximalGradient, fista_momentum, solve
from autounfold.errors import ConfigError
from autounfold.evaluation import baselines
from autounfold.problems import LassoProblem


def test_power_iteration_limit_reaches_the_optimum(small_problem):
    inst = small_problem.sample(64, seed=0)
    W = baselines.power_iteration(small_problem, inst, 200)
    ratio = small_problem.objective(W, inst) / small_problem.objective(reference(small_problem, inst), inst)
    assert ratio.min() > 0.9999


def test_ascent_direction_follows_the_objective(small_problem):
    inst = small_problem.sample(32, seed=1)
    W0 = small_problem.init(inst, "random", seed=0)
    W = solve(small_problem, inst, ProximalGradient(normalize="trace"), {"step": 0.5}, 1, x0=W0).x
    assert (small_problem.objective(W, inst) > small_problem.objective(W0, inst)).all()


def test_fista_momentum_sequence():
    assert fista_momentum(0) == 0.0
    t1 = (1 + 5 ** 0.5) / 2
    t2 = (1 + (1 + 4 * t1 * t1) ** 0.5) / 2
    assert fista_momentum(1) == pytest.approx((t1 - 1) / t2)
    assert all(0 <= fista_momentum(k) < 1 for k in range(50))


def test_lasso_gradient_matches_autograd():
    problem = LassoProblem(n=20, m=10, sparsity=3)
    inst = problem.sample(8, seed=0)
    x = torch.randn(8, 20, requires_grad=True)
    (0.5 * (inst.y - x @ problem.A.T).square().sum()).backward()
    torch.testing.assert_close(problem.gradient(x.detach(), inst), x.grad, rtol=1e-5, atol=1e-5)


def test_ista_descends_and_fista_reaches_a_fixed_point():
    problem = LassoProblem(n=50, m=25, sparsity=5, lam=0.05)
    inst = problem.sample(64, seed=1)
    traj = baselines.ista(problem, inst, 50, trajectory=True).trajectory
    objs = torch.stack([problem.objective(x, inst) for x in traj])
    assert (objs[1:] <= objs[:-1] + 1e-6).all()
    x = reference(problem, inst)
    L = problem.lipschitz
    fixed = problem.prox(x - problem.gradient(x, inst) / L, inst, problem.lam / L)
    assert (fixed - x).abs().max() < 1e-4
    assert (problem.objective(x, inst) <= objs[-1] + 1e-6).all()


def test_soft_threshold():
    problem = LassoProblem(n=4, m=2, sparsity=1)
    z = torch.tensor([[-2.0, -0.5, 0.5, 3.0]])
    torch.testing.assert_close(problem.prox(z, None, 1.0), torch.tensor([[-1.0, 0.0, 0.0, 2.0]]))


def test_per_iteration_parameters_and_errors(small_problem):
    inst = small_problem.sample(4, seed=0)
    algo = ProximalGradient(normalize="rayleigh")
    a = solve(small_problem, inst, algo, {"step": [1.0, -2.0, 5.0]}, 3).x
    b = solve(small_problem, inst, algo, {"step": lambda k: [1.0, -2.0, 5.0][k]}, 3).x
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="3 entries"):
        solve(small_problem, inst, algo, {"step": [1.0, 2.0, 3.0]}, 4)
    with pytest.raises(ConfigError, match="extrapolation"):
        ProximalGradient(extrapolation="polyak")


def test_tolerance_stop(small_problem):
    inst = small_problem.sample(8, seed=0)
    res = solve(small_problem, inst, ProximalGradient(normalize="rayleigh"), {"step": 1e6}, 5000, tol=1e-7)
    assert res.converged and res.iterations < 5000


@pytest.mark.parametrize("bad", [{"sparsity": 0}, {"sparsity": 60}, {"lam": 0.0}, {"n": 0}])
def test_bad_lasso_settings(bad):
    with pytest.raises(ConfigError):
        LassoProblem(**{"n": 50, "m": 25, **bad})

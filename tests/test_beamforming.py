import itertools
import math

import pytest
import torch

from autounfold.algorithms import reference, ProximalGradient, solve
from autounfold.channels import CorrelatedRayleigh, IIDRayleigh
from autounfold.errors import ConfigError
from autounfold.problems import BeamformingProblem, water_filling


def _autograd(problem, W, inst):
    W = W.clone().requires_grad_(True)
    problem.objective(W, inst).sum().backward()
    return W.grad


@pytest.mark.parametrize("streams", [1, 3])
def test_gradient_matches_autograd(streams):
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4), n_streams=streams)
    inst = problem.sample(16, seed=0)
    W = problem.init(inst, "random", seed=3)
    torch.testing.assert_close(problem.gradient(W, inst), _autograd(problem, W, inst), rtol=1e-4, atol=1e-5)


def test_objective_matches_log_det_definition(small_problem):
    inst = small_problem.sample(8, seed=1)
    W = small_problem.init(inst, "random", seed=2)
    H = inst.H.to(torch.complex128)
    M = torch.eye(4, dtype=H.dtype) + H @ W.to(H.dtype) @ W.to(H.dtype).mH @ H.mH / inst.noise_var.double().view(-1, 1, 1)
    torch.testing.assert_close(small_problem.objective(W, inst).double(), torch.linalg.slogdet(M).logabsdet / math.log(2),
                               rtol=1e-5, atol=1e-5)


def test_gradient_scalings(small_problem):
    inst = small_problem.sample(8, seed=1)
    W = small_problem.init(inst)
    A_w = inst.H.mH @ (inst.H @ W)
    g = small_problem.gradient(W, inst)
    fro = inst.H.abs().square().sum((-2, -1)).view(-1, 1, 1)
    torch.testing.assert_close(g / small_problem.curvature(W, inst, "trace").view(-1, 1, 1), A_w / fro, rtol=1e-4, atol=1e-6)
    rho = ((inst.H @ W).abs().square().sum((-2, -1)) / W.abs().square().sum((-2, -1))).view(-1, 1, 1)
    torch.testing.assert_close(g / small_problem.curvature(W, inst, "rayleigh").view(-1, 1, 1), A_w / rho, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="scaling"):
        small_problem.curvature(W, inst, "bogus")


def test_trace_bound_dominates_the_hessian(small_problem):
    inst = small_problem.sample(1, seed=4)
    W = small_problem.init(inst, "random", seed=1)
    x = torch.view_as_real(W).flatten().double()

    def f(v):
        return small_problem.objective(torch.view_as_complex(v.view(8, 1, 2).float()).unsqueeze(0), inst).double().sum()

    Hess = torch.autograd.functional.hessian(f, x)
    bound = small_problem.curvature(W, inst, "trace").double()
    assert torch.linalg.matrix_norm(Hess, ord=2) <= bound * (1 + 1e-3)


@pytest.mark.parametrize("n_rx, n_tx", [(4, 8), (8, 4)])
def test_closed_form_is_the_principal_eigenvector(n_rx, n_tx):
    problem = BeamformingProblem(IIDRayleigh(n_tx=n_tx, n_rx=n_rx))
    inst = problem.sample(32, seed=0)
    W = reference(problem, inst)
    lam = torch.linalg.eigvalsh((inst.H.mH @ inst.H).to(torch.complex128))[..., -1]
    torch.testing.assert_close(problem.objective(W, inst).double(), torch.log2(1 + lam / inst.noise_var.double()),
                               rtol=1e-5, atol=1e-5)
    assert problem.feasible(W, inst).all()


def test_optimum_beats_every_solver(small_problem):
    inst = small_problem.sample(64, seed=9)
    opt = small_problem.objective(reference(small_problem, inst), inst)
    algo = ProximalGradient(normalize="rayleigh")
    candidates = [small_problem.init(inst), small_problem.init(inst, "random", seed=1)]
    for step in (-3.0, 0.5, 10.0, 1e6):
        candidates.append(solve(small_problem, inst, algo, {"step": step}, 30).x)
    for W in candidates:
        assert small_problem.feasible(W, inst).all()
        assert (small_problem.objective(W, inst) <= opt + 1e-4).all()


def test_water_filling_against_brute_force():
    gains = torch.tensor([[10.0, 2.0, 0.1], [5.0, 4.0, 3.0], [1.0, 1e-3, 1e-4]])
    p = water_filling(gains, 1.0)
    torch.testing.assert_close(p.sum(-1), torch.ones(3))
    assert (p >= 0).all()
    grid = torch.linspace(0, 1, 201)
    for b in range(3):
        best = max(sum(math.log2(1 + g * q) for g, q in zip(gains[b].tolist(), (a, c, 1 - a - c)))
                   for a, c in itertools.product(grid.tolist(), grid.tolist()) if a + c <= 1)
        got = sum(math.log2(1 + g * q) for g, q in zip(gains[b].tolist(), p[b].tolist()))
        assert got >= best - 1e-4


def test_multi_stream_optimum_beats_solvers():
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4), n_streams=2)
    inst = problem.sample(32, seed=3)
    opt = problem.objective(reference(problem, inst), inst)
    W = solve(problem, inst, ProximalGradient(normalize="trace"), {"step": 1.0}, 300).x
    assert problem.feasible(W, inst).all()
    assert (problem.objective(W, inst) <= opt + 1e-4).all()
    assert (problem.objective(W, inst) >= opt - 0.05 * opt.abs()).all()   # PGD does get close


@pytest.mark.parametrize("constraint", ["total", "per_antenna"])
def test_projection_is_feasible_idempotent_and_keeps_interior(constraint):
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4, power=2.0), constraint=constraint)
    inst = problem.sample(8, seed=0)
    Z = 3 * torch.randn(8, 8, 1, dtype=torch.complex64)
    P = problem.prox(Z, inst)
    assert problem.feasible(P, inst).all()
    torch.testing.assert_close(problem.prox(P, inst), P)
    inside = 0.01 * Z
    torch.testing.assert_close(problem.prox(inside, inst), inside)


def test_per_antenna_reference_is_feasible_and_bracketed():
    problem = BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4), constraint="per_antenna")
    inst = problem.sample(16, seed=2)
    W = reference(problem, inst)
    assert problem.feasible(W, inst).all()
    se = problem.objective(W, inst)
    upper = problem.objective(problem.optimum_total_power(inst), inst)
    projected = problem.objective(problem.prox(problem.optimum_total_power(inst), inst), inst)
    assert (se <= upper + 1e-4).all() and (se >= projected - 1e-4).all()


def test_initialisations_are_feasible_at_full_power(small_problem):
    inst = small_problem.sample(8, seed=0)
    for method in ("matched_filter", "random"):
        W = small_problem.init(inst, method)
        torch.testing.assert_close(W.abs().square().sum((-2, -1)), torch.ones(8), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, needle", [({"n_streams": 9}, "n_streams"), ({"constraint": "peak"}, "constraint"),
                                            ({"init": "zero"}, "init")])
def test_bad_problem_settings(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4), **kwargs)

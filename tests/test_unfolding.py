import pytest
import torch

from autounfold.algorithms import ProximalGradient, solve
from autounfold.errors import ConfigError, InputError
from autounfold.evaluation import baselines
from autounfold.problems import LassoProblem
from autounfold.unfolding import Unfolded, chebyshev_steps


def test_unfolded_network_is_the_classical_solver_with_its_parameters(small_problem):
    """One update rule, two uses: with the classical parameters the network equals the solver."""
    inst = small_problem.sample(16, seed=0)
    algo = ProximalGradient(normalize="rayleigh")
    steps = [-1.5, -3.0, 20.0]
    net = Unfolded(small_problem, algo, 3, "signed", step_init=steps)
    with torch.no_grad():
        torch.testing.assert_close(net.run(inst), solve(small_problem, inst, algo, {"step": steps}, 3).x)
    mom = Unfolded(small_problem, algo, 3, "momentum", step_init=2.0, momentum_init=0.3)
    with torch.no_grad():
        torch.testing.assert_close(mom.run(inst), solve(small_problem, inst, algo, {"step": 2.0, "momentum": 0.3}, 3).x,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["lista", "lista_cp", "ista"])
def test_lista_family_at_initialisation_is_ista(layer):
    problem = LassoProblem(n=20, m=10, sparsity=3)
    inst = problem.sample(8, seed=0)
    net = Unfolded(problem, ProximalGradient(normalize="lipschitz"), 6, layer, step_init=1.0)
    with torch.no_grad():
        torch.testing.assert_close(net.run(inst), baselines.ista(problem, inst, 6).x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", ["step", "signed", "momentum", "hybrid"])
def test_outputs_are_feasible_with_the_right_shape(nominal_problem, layer):
    inst = nominal_problem.sample(8, seed=1)
    init = "chebyshev" if layer == "signed" else 5.0
    net = Unfolded(nominal_problem, ProximalGradient(normalize="rayleigh"), 4, layer, step_init=init)
    W = net(inst.H, inst.noise_var)
    assert W.shape == (8, 64, 1) and W.dtype == torch.complex64
    assert nominal_problem.feasible(W, inst).all()
    its = net(inst.H, inst.noise_var, return_all=True)
    assert len(its) == 4 and torch.equal(its[-1], W)


def test_tied_parameters_and_counts(small_problem):
    algo = ProximalGradient(normalize="rayleigh")
    assert Unfolded(small_problem, algo, 6, "momentum", tied=True, step_init=1.0).num_parameters() == 2
    assert Unfolded(small_problem, algo, 6, "momentum", step_init=1.0).num_parameters() == 12
    assert Unfolded(small_problem, algo, 2, "hybrid", step_init=1.0).num_parameters() == 2 + 2 * 2 * 64


def test_chebyshev_steps_place_roots_in_the_interval():
    steps = chebyshev_steps(5, 0.9)
    roots = [-1.0 / a for a in steps]
    assert all(0 < r < 0.9 for r in roots) and len(set(roots)) == 5


def test_model_rejects_bad_inputs(small_problem):
    net = Unfolded(small_problem, ProximalGradient(normalize="rayleigh"), 2, "step", step_init=1.0)
    H = torch.randn(3, 4, 8, dtype=torch.complex64)
    # per-layer scalars fix no size: other antenna counts run, inside the power constraint
    for shape in ((3, 4, 6), (3, 1, 8), (3, 9, 5)):
        W = net(torch.randn(*shape, dtype=torch.complex64), torch.ones(3))
        assert W.shape == (3, shape[-1], 1) and bool(small_problem.feasible(W, None).all())
    # a learned n_tx x n_tx transform fixes n_tx, and the error names it
    hybrid = Unfolded(small_problem, ProximalGradient(normalize="rayleigh"), 2, "hybrid", step_init=1.0)
    with pytest.raises(InputError, match=r"n_tx=6.*'hybrid'.*\(8, 8\).*fix n_tx=8"):
        hybrid(torch.randn(3, 4, 6, dtype=torch.complex64), torch.ones(3))
    assert hybrid(torch.randn(3, 7, 8, dtype=torch.complex64), torch.ones(3)).shape == (3, 8, 1)
    with pytest.raises(InputError, match="complex"):
        net(H.real, torch.ones(3))
    with pytest.raises(InputError, match="noise_var"):
        net(H, torch.zeros(3))
    W = net(H, torch.full((3,), 10.0))       # SNR -10 dB is a valid input
    assert torch.isfinite(torch.view_as_real(W)).all()


@pytest.mark.parametrize("kwargs, needle", [
    ({"num_layers": 0}, "num_layers"),
    ({"layer": "dense"}, "layer type"),
    ({"layer": "step", "step_init": -1.0}, "positive"),
    ({"layer": "step", "step_init": "chebyshev"}, "chebyshev"),
    ({"layer": "signed", "step_init": [1.0, 2.0]}, "per-layer"),
    ({"layer": "lista"}, "lasso"),
])
def test_bad_model_settings(small_problem, kwargs, needle):
    args = {"num_layers": 3, "layer": "signed", "step_init": 1.0, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        Unfolded(small_problem, ProximalGradient(normalize="rayleigh"), **args)

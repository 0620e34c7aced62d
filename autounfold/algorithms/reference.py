"""Reference solutions: the closed form where the problem declares one, else the problem's declared
``ReferenceSolver`` (the platform's own update rule) run to convergence.

This lives beside the algorithms, not in the problems: a problem declares *how* it is solved to
convergence; running that is the algorithms' business, so problems never import algorithms.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .proximal_gradient import ProximalGradient
from .solver import solve


@torch.no_grad()
def reference(problem, inst) -> torch.Tensor:
    """The optimum of ``inst`` (closed form), or the declared iterative solve to its tolerance.

    Returns an iterate of the problem's solution shape (beamforming: (B, n_tx, S) complex64;
    lasso: (B, n) float32)."""
    x = problem.closed_form(inst)
    if x is not None:
        return x
    decl = problem.reference_solver
    if decl is None:
        raise ConfigError(f"problem {problem.name!r} declares neither a closed form nor a reference_solver")
    algo = ProximalGradient(extrapolation=decl.extrapolation, normalize=decl.normalize)
    return solve(problem, inst, algo, dict(decl.params), iterations=decl.max_iterations, tol=decl.tol,
                 x0=problem.reference_init(inst)).x


def evaluation_reference(problem, inst) -> torch.Tensor:
    """What solutions are scored against: the ground truth where the instance carries it (sparse
    recovery scores against the true signal), else the reference solution."""
    truth = problem.ground_truth(inst)
    return truth if truth is not None else reference(problem, inst)

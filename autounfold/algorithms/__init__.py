"""Update rules (one per algorithm family, registered in ``autounfold.plugins.ALGORITHMS``), the classical solver that iterates them and the
reference solve of a problem (closed form or its declared solver run to convergence)."""
from .proximal_gradient import SCHEDULES, ProximalGradient, State, fista_momentum
from .reference import evaluation_reference, reference
from .solver import SolveResult, param_at, solve
from .subspace import Subspace, SubspaceState
from .wmmse import WMMSE

__all__ = ["ProximalGradient", "SCHEDULES", "State", "fista_momentum", "SolveResult", "param_at", "solve",
           "reference", "evaluation_reference", "WMMSE", "Subspace",
           "SubspaceState"]

"""Update rules (one per algorithm family) and the classical solver that iterates them."""
from .proximal_gradient import ProximalGradient, State, fista_momentum
from .solver import SolveResult, param_at, solve

__all__ = ["ProximalGradient", "State", "fista_momentum", "SolveResult", "param_at", "solve"]

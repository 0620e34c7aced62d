"""Problem plugins: one module per problem (schema, objective, analytic gradient, projection / prox,
initialisation, closed form or reference solver, metrics), registered in ``autounfold.plugins.PROBLEMS``."""
from .base import Problem, ProblemConfig, ReferenceSolver, batch_scalar
from .beamforming import BeamformingConfig, BeamformingProblem, water_filling
from .lasso import LassoConfig, LassoProblem, SparseBatch

__all__ = ["Problem", "ProblemConfig", "ReferenceSolver", "batch_scalar", "BeamformingConfig", "BeamformingProblem",
           "water_filling", "LassoConfig", "LassoProblem", "SparseBatch"]

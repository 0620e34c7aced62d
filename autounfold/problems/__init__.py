"""Problem plugins: objective, analytic gradient, projection / prox, initialisation, reference."""
from .base import Problem
from .beamforming import BeamformingProblem, water_filling
from .lasso import LassoProblem, SparseBatch, nmse_db

__all__ = ["Problem", "BeamformingProblem", "LassoProblem", "SparseBatch", "water_filling", "nmse_db"]

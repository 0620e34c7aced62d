"""Unfolded networks: the update rule of ``autounfold.algorithms`` with learned per-layer parameters."""
from .layers import LayerType, LearnedParam, chebyshev_steps, layer_params
from .unfolded import Unfolded

__all__ = ["LayerType", "LearnedParam", "Unfolded", "chebyshev_steps", "layer_params"]

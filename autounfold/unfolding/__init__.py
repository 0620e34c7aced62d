"""Unfolded networks: the update rule of ``autounfold.algorithms`` with learned per-layer parameters."""
from .layers import LAYER_TYPES, chebyshev_steps, layer_params
from .unfolded import Unfolded

__all__ = ["LAYER_TYPES", "Unfolded", "chebyshev_steps", "layer_params"]

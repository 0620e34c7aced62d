"""Training of unfolded networks (pure PyTorch)."""
from .losses import layer_weights, per_sample_loss
from .trainer import TrainResult, train

__all__ = ["TrainResult", "train", "layer_weights", "per_sample_loss"]

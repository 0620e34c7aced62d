"""Deployment formats: TorchScript export of a trained model (``export.export_torchscript``)."""
from .export import export_torchscript, load_torchscript

__all__ = ["export_torchscript", "load_torchscript"]

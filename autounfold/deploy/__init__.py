"""Deployment formats with real-valued inputs and outputs: ``torch.export`` (``export_torch_export``,
a ``.pt2`` archive) and TorchScript (``export_torchscript``); ``real_interface`` describes both."""
from .export import (EXPORTERS, TORCH_EXPORT, TORCHSCRIPT, export_torch_export, export_torchscript, load_torch_export,
                     load_torchscript, real_interface)

__all__ = ["EXPORTERS", "TORCH_EXPORT", "TORCHSCRIPT", "export_torch_export", "export_torchscript", "load_torch_export",
           "load_torchscript", "real_interface"]

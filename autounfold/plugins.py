"""Lazy registries from the names used in YAML to the classes that implement them.

A registry stores ``"module:Class"`` strings and imports a class only when it is asked for, so
listing what exists costs nothing and a broken optional plugin does not break the others.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict

from .errors import ConfigError


class Registry:
    def __init__(self, kind: str, entries: Dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def register(self, name: str, target: str) -> None:
        """Add ``name -> "package.module:Class"`` (for third-party plugins)."""
        self._entries[name] = target

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        module, _, attr = self._entries[name].partition(":")
        return getattr(importlib.import_module(module), attr)


PROBLEMS = Registry("problem", {
    "beamforming": "autounfold.problems.beamforming:BeamformingProblem",
    "lasso": "autounfold.problems.lasso:LassoProblem",
})

CHANNELS = Registry("channel model", {
    "correlated_rayleigh": "autounfold.channels.rayleigh:CorrelatedRayleigh",
    "iid_rayleigh": "autounfold.channels.rayleigh:IIDRayleigh",
})

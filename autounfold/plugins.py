"""The name tables: what a YAML name (``problem.name``, ``problem.channel.model``, ``model.layer``,
``model.algorithm``) means, declared once by the module that implements it.

Every problem, channel model and layer type registers itself when its module is imported
(``@PROBLEMS.register`` on the class, ``LAYERS.register(LayerType(...))``). Config validation,
``build``, the CLI, evaluation, canary and monitor look names up here, so adding a problem is one
module, with no edit anywhere else. A table fills itself on first use from three places:

1. the built-in modules: every module of the table's package (``autounfold.problems``,
   ``autounfold.channels``, ``autounfold.unfolding``), found by listing the package;
2. installed third-party plugins: the ``autounfold.plugins`` entry-point group; each entry point
   names a module (or a callable) whose import registers its declarations. A plugin that fails to
   load is reported by name and skipped, the others still work;
3. ``register(...)`` called at run time (a notebook, a test).

Why entry points: they are the standard way a separately installed package extends another
(pytest, Ray and MLflow use them); a name that only ``register`` at run time could add would be
unknown to a ``autounfold search`` worker process that never ran that code.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any, Callable, Dict, List

from .errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autounfold.plugins"
_entry_points_loaded = False


def _load_entry_points() -> None:
    """Import every ``autounfold.plugins`` entry point once per process (they register themselves)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except Exception as err:  # a broken third-party plugin must not take the built-ins down
            log.warning("autounfold plugin %r (%s) failed to load and is skipped: %s: %s",
                        ep.name, ep.value, type(err).__name__, err)


class Registry:
    """A name table of declarations (classes or objects with a ``name`` attribute).

    Args:
        kind: what the names are, for error messages ("problem", "layer type", ...).
        package: the built-in package whose modules are imported on first use.
    """

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: Dict[str, Any] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        _load_entry_points()

    def register(self, entry: Any = None, *, replace: bool = False) -> Any:
        """Add a declaration under ``entry.name``; usable as a class decorator. A name that is taken
        is an error unless ``replace=True`` (a plugin cannot silently shadow a built-in)."""
        def add(obj):
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"a {self.kind} declaration needs a non-empty string 'name' (got {name!r})")
            if name in self._entries and self._entries[name] is not obj and not replace:
                raise ConfigError(f"{self.kind} {name!r} is already registered "
                                  f"({_where(self._entries[name])}); pass replace=True to override it")
            self._entries[name] = obj
            return obj
        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> List[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def get(self, name: str) -> Any:
        self._load()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def validate(self, name: object) -> str:
        """``name`` when it is registered, else ValueError naming the allowed names (for pydantic
        field validators: the config error then names the file and key)."""
        if not isinstance(name, str) or name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return name

    def select(self, predicate: Callable[[Any], bool]) -> List[str]:
        """Names whose declaration satisfies ``predicate``."""
        return [n for n in self.names() if predicate(self._entries[n])]


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


PROBLEMS = Registry("problem", "autounfold.problems")
CHANNELS = Registry("channel model", "autounfold.channels")
LAYERS = Registry("layer type", "autounfold.unfolding")
ALGORITHMS = Registry("algorithm", "autounfold.algorithms")

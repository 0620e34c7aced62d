"""Search spaces: YAML -> validated ``SearchSpec`` -> hyperopt space (see ``dimensions`` for the format)."""
from .spec import Asha, Budget, Objective, Resources, SearchSpec, load_spec, parse_spec, spec_from_yaml

__all__ = ["Asha", "Budget", "Objective", "Resources", "SearchSpec", "load_spec", "parse_spec", "spec_from_yaml"]

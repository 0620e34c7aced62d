"""Search spaces: YAML -> validated ``SearchSpec`` -> hyperopt space (see ``dimensions`` for the format)."""
from .spec import (SPACE_FILE, Asha, Budget, Objective, Resources, SearchSpec, load_spec, parse_spec, spec_from_yaml,
                   write_space_file)

__all__ = ["SPACE_FILE", "Asha", "Budget", "Objective", "Resources", "SearchSpec", "load_spec", "parse_spec",
           "spec_from_yaml", "write_space_file"]

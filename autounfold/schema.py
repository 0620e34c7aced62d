"""The base of every validated schema (experiment configs, problem and channel sections, search
spaces, monitor settings, job specs): unknown keys are errors, numbers are finite, and a YAML
boolean is never taken for a number (``num_layers: true`` is an error, not 1)."""
from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, field_validator


def _numeric(annotation) -> bool:
    if annotation in (int, float):
        return True
    args = typing.get_args(annotation)
    return bool(args) and any(_numeric(a) for a in args) and not any(a is bool for a in args)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value, info):
        field = cls.model_fields.get(info.field_name)
        if field is not None and _numeric(field.annotation):
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError(f"expected numbers, got a boolean in {value!r}")
        return value


MAX_YAML_BYTES = 1_000_000
MAX_YAML_NODES = 100_000


def _expanded_size(node, memo: dict) -> int:
    """Nodes the document has once every alias is expanded (aliases share a node: counted per use)."""
    import yaml
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1                                   # a recursive structure counts once
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size
    return size


def load_yaml(text: "str | bytes", origin: str, error=ValueError):
    """Parse one YAML document safely: at most 1 MB, at most 100,000 nodes once aliases are expanded
    (an alias bomb is refused before anything expands it), no duplicated mapping key (the second
    would silently win), UTF-8 only. Raises ``error`` (a one-line message naming ``origin``)."""
    import yaml

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise error(f"{origin}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise error(f"{origin}: larger than {MAX_YAML_BYTES // 1000} kB; not a config file")

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":      # "<<: *base" merges, it is no key
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise error(f"{origin}: line {key_node.start_mark.line + 1}: duplicated key {key!r} "
                                    "(the earlier value would be silently replaced)")
                    seen.add(key)
            return super().construct_mapping(node, deep)

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise error(f"{origin}: expands to more than {MAX_YAML_NODES} YAML nodes through aliases; refused")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise error(f"{origin}: not valid YAML: {first[:300]}") from None
    except RecursionError:
        raise error(f"{origin}: nested too deeply; not a config file") from None
    finally:
        loader.dispose()

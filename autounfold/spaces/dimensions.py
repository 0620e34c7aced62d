"""Search dimensions and their three views: hyperopt expression, flat parameters, hyperopt ``vals``.

A space is a mapping ``key -> dimension``. ``key`` is a dotted path into the experiment config
(``model.num_layers``) or, for a conditional dimension with ``assign: false``, a free name
(``family``). Every dimension has a *label*, unique in the whole space: top-level dimensions use
their key, dimensions inside a conditional option use ``parent_label/option/key``.

* ``to_hyperopt``: the hyperopt expression TPE samples from (conditional -> ``hp.choice`` over dicts).
* ``flatten``: a sampled (nested) config -> flat ``{label: value}``; a conditional's value is its
  option name. This flat form is what trials report, what the Parquet table stores and what a
  warm start reads back.
* ``assignments``: flat params -> ``{config key: value}`` to apply on the base config.
* ``to_vals``: flat params -> hyperopt's ``vals`` (choice index, raw number; ``[]`` when inactive),
  or ``None`` when the point lies outside this space: the warm start inserts these as finished trials.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

OPTION_KEY = "__option__"


class _Dim(BaseModel):
    # not schema.Schema: its catch-all validator would touch the tagged union's "type" field
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _RangeDim(_Dim):
    """A [low, high] range, uniform or log-uniform; the subclasses fix the number type."""

    log: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_bool_bounds(cls, data):
        for key in ("low", "high"):
            if isinstance(data, dict) and isinstance(data.get(key), bool):
                raise ValueError(f"{key} must be a number, got the boolean {data[key]!r}")
        return data

    @model_validator(mode="after")
    def _check(self):
        if not self.high > self.low:
            raise ValueError(f"high must be > low (got high={self.high}, low={self.low}; "
                             "a fixed value belongs in base)")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low={self.low})")
        return self

    def candidates(self):
        return [self.low, self.high]


class IntDim(_RangeDim):
    """Integer in [low, high] (both included), uniform or log-uniform."""

    type: Literal["int"]
    low: int
    high: int

    def contains(self, v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() \
            and self.low <= v <= self.high


class FloatDim(_RangeDim):
    """Real number in [low, high], uniform or log-uniform."""

    type: Literal["float"]
    low: float
    high: float

    def contains(self, v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and self.low <= v <= self.high


class CategoricalDim(_Dim):
    """One of ``values`` (numbers, strings, booleans or lists)."""

    type: Literal["categorical"]
    values: List[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        seen = []
        for v in self.values:
            if v in seen:
                raise ValueError(f"values must be distinct (got {v!r} twice)")
            seen.append(v)
        return self

    def candidates(self):
        return list(self.values)

    def contains(self, v) -> bool:
        try:
            self.index(v)
            return True
        except ValueError:
            return False

    def index(self, v) -> int:
        """Position of ``v`` among the values; ``True`` never matches ``1`` (nor ``False`` ``0``)."""
        for i, c in enumerate(self.values):
            if v == c and (isinstance(v, bool) == isinstance(c, bool)):
                return i
        raise ValueError(v)


class Option(_Dim):
    """One branch of a conditional: fixed settings plus a sub-space searched only in this branch."""

    set: Dict[str, Any] = Field(default_factory=dict)
    space: Dict[str, "Dimension"] = Field(default_factory=dict)


class ConditionalDim(_Dim):
    """Choose one option; its ``set`` values are applied and its ``space`` is searched.

    With ``assign: true`` (default) the option's name is also assigned to the dimension's key, so
    ``model.layer: {type: conditional, options: {signed: ..., momentum: ...}}`` sets ``model.layer``."""

    type: Literal["conditional"]
    options: Dict[str, Option] = Field(min_length=1)
    assign: bool = True


Dimension = Annotated[Union[IntDim, FloatDim, CategoricalDim, ConditionalDim], Field(discriminator="type")]
Option.model_rebuild()


# ---------------------------------------------------------------------------------------------
# The three views of a space.  ``space`` below is a Dict[str, Dimension].

def _label(prefix: str, key: str) -> str:
    return f"{prefix}{key}"


def to_hyperopt(space: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """hyperopt expression for ``space``; nested option dicts carry their name under ``__option__``."""
    from hyperopt import hp
    from hyperopt.pyll import scope

    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        if isinstance(dim, IntDim):
            expr = (hp.qloguniform(label, math.log(dim.low), math.log(dim.high), 1) if dim.log
                    else hp.quniform(label, dim.low, dim.high, 1))
            out[key] = scope.int(expr)
        elif isinstance(dim, FloatDim):
            out[key] = (hp.loguniform(label, math.log(dim.low), math.log(dim.high)) if dim.log
                        else hp.uniform(label, dim.low, dim.high))
        elif isinstance(dim, CategoricalDim):
            out[key] = hp.choice(label, list(dim.values))
        else:
            out[key] = hp.choice(label, [{OPTION_KEY: name, **to_hyperopt(opt.space, f"{label}/{name}/")}
                                         for name, opt in dim.options.items()])
    return out


def labels(space: Dict[str, Any], prefix: str = "") -> List[str]:
    """Every label of the space, active or not."""
    out = []
    for key, dim in space.items():
        label = _label(prefix, key)
        out.append(label)
        if isinstance(dim, ConditionalDim):
            for name, opt in dim.options.items():
                out += labels(opt.space, f"{label}/{name}/")
    return out


def flatten(space: Dict[str, Any], config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A config sampled from ``to_hyperopt(space)`` -> flat ``{label: value}`` of the active labels."""
    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        value = config[key]
        if isinstance(dim, ConditionalDim):
            name = value[OPTION_KEY]
            out[label] = name
            out.update(flatten(dim.options[name].space, value, f"{label}/{name}/"))
        elif isinstance(dim, IntDim):
            out[label] = int(value)
        elif isinstance(dim, FloatDim):
            out[label] = float(value)
        else:
            out[label] = value
    return out


def assignments(space: Dict[str, Any], params: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Flat params -> ``{dotted config key: value}``; raises KeyError when an active label is missing."""
    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        value = params[label]
        if isinstance(dim, ConditionalDim):
            if dim.assign:
                out[key] = value
            out.update(dim.options[value].set)
            out.update(assignments(dim.options[value].space, params, f"{label}/{value}/"))
        else:
            out[key] = value
    return out


def to_vals(space: Dict[str, Any], params: Dict[str, Any], prefix: str = "") -> Optional[Dict[str, list]]:
    """Flat params -> hyperopt ``vals`` for every label (``[]`` when inactive); ``None`` if the point
    is not in this space (a label missing, a value out of range or not among the choices)."""
    vals = {label: [] for label in labels(space, prefix)}

    def walk(sp, pre) -> bool:
        for key, dim in sp.items():
            label = _label(pre, key)
            if label not in params:
                return False
            v = params[label]
            if isinstance(dim, ConditionalDim):
                if v not in dim.options:
                    return False
                vals[label] = [list(dim.options).index(v)]
                if not walk(dim.options[v].space, f"{label}/{v}/"):
                    return False
            elif isinstance(dim, CategoricalDim):
                if not dim.contains(v):
                    return False
                vals[label] = [dim.index(v)]
            else:
                if not dim.contains(v):
                    return False
                vals[label] = [float(v)]
        return True

    return vals if walk(space, prefix) else None


def iter_dims(space: Dict[str, Any], prefix: str = "", path: Optional[dict] = None):
    """Yield ``(label, dim, path)`` for every dimension; ``path`` maps the labels of the enclosing
    conditionals to the option this dimension lives in."""
    path = dict(path or {})
    for key, dim in space.items():
        label = _label(prefix, key)
        yield label, dim, path
        if isinstance(dim, ConditionalDim):
            for name, opt in dim.options.items():
                yield from iter_dims(opt.space, f"{label}/{name}/", {**path, label: name})


def candidates(dim) -> list:
    """The values a validation probe tries: both ends of a range, every choice, every option."""
    return list(dim.options) if isinstance(dim, ConditionalDim) else dim.candidates()


def default_point(space: Dict[str, Any], forced: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A complete flat point: ``forced`` labels take their given value, all others their first candidate."""
    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        value = forced.get(label, candidates(dim)[0])
        out[label] = value
        if isinstance(dim, ConditionalDim):
            out.update(default_point(dim.options[value].space, forced, f"{label}/{value}/"))
    return out


def unflatten(space: Dict[str, Any], params: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Flat params -> the nested config ``to_hyperopt(space)`` samples (the inverse of ``flatten``):
    what a searcher hands Ray Tune for a configuration it did not sample itself (a replayed one)."""
    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        value = params[label]
        if isinstance(dim, ConditionalDim):
            out[key] = {OPTION_KEY: value, **unflatten(dim.options[value].space, params, f"{label}/{value}/")}
        else:
            out[key] = value
    return out


def optuna_distributions(space: Dict[str, Any], params: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{label: optuna distribution}`` of the labels active at ``params`` (what an Optuna trial
    of this configuration holds)."""
    import optuna.distributions as od

    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        if isinstance(dim, ConditionalDim):
            out[label] = od.CategoricalDistribution(list(dim.options))
            out.update(optuna_distributions(dim.options[params[label]].space, params, f"{label}/{params[label]}/"))
        elif isinstance(dim, CategoricalDim):
            out[label] = od.CategoricalDistribution(list(dim.values))
        elif isinstance(dim, IntDim):
            out[label] = od.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
        else:
            out[label] = od.FloatDistribution(float(dim.low), float(dim.high), log=dim.log)
    return out


def optuna_sample(space: Dict[str, Any], trial, prefix: str = "") -> Dict[str, Any]:
    """Sample flat params from an Optuna trial, define-by-run (conditionals: only the chosen branch)."""
    out = {}
    for key, dim in space.items():
        label = _label(prefix, key)
        if isinstance(dim, ConditionalDim):
            name = trial.suggest_categorical(label, list(dim.options))
            out[label] = name
            out.update(optuna_sample(dim.options[name].space, trial, f"{label}/{name}/"))
        elif isinstance(dim, CategoricalDim):
            out[label] = trial.suggest_categorical(label, list(dim.values))
        elif isinstance(dim, IntDim):
            out[label] = trial.suggest_int(label, int(dim.low), int(dim.high), log=dim.log)
        else:
            out[label] = trial.suggest_float(label, float(dim.low), float(dim.high), log=dim.log)
    return out

"""``SearchSpec``: one search-space YAML, validated once (file, key, value and what is allowed).

A spec holds the *base* experiment (the same schema ``autounfold train`` reads), the objective,
the budget, the resources of one trial, the search seed and the ``space`` searched on top of the
base. ``SearchSpec.canonical_yaml`` / ``sha256`` identify it in every result that it produced.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..config import ExperimentConfig, assign_dotted, parse_config, read_yaml_mapping, set_override
from ..schema import Schema, load_yaml
from ..seeding import SEED_MAX, SEED_MIN
from ..errors import ConfigError, SpaceError, format_validation_error
from . import dimensions as D


class _Strict(Schema):
    pass


class Objective(_Strict):
    """What a trial is scored by. ``metric: val_score`` is the one every trial reports at each
    validation: % of the optimum (beamforming) or -NMSE in dB (LASSO) on the validation set shared
    by all trials (the trial keeps its best validated weights, so its score is that validation's).

    The searched score is ``metric - depth_penalty * num_layers``; a trial whose median latency
    (batch ``latency_batch``) exceeds ``latency_budget_ms`` scores ``metric - latency_penalty``.
    """

    metric: Literal["val_score"] = "val_score"
    mode: Literal["max", "min"] = "max"
    depth_penalty: float = Field(0.0, ge=0)
    latency_budget_ms: Optional[float] = Field(None, gt=0)
    latency_penalty: float = Field(100.0, ge=0)
    latency_batch: int = Field(256, ge=1)
    measure_latency: bool = True

    # the one sign convention of a search: everything that compares, sorts or penalises objectives
    # goes through these (trial objective, failure score, leaderboard, running best, TPE's loss)
    @property
    def sign(self) -> float:
        """+1 when a larger objective is better (``mode: max``), -1 for ``mode: min``."""
        return 1.0 if self.mode == "max" else -1.0

    @property
    def worst(self) -> float:
        """What a failed trial scores: worse than any real result, finite so TPE can rank it."""
        return -self.sign * 1e9

    def better(self, a: float, b: Optional[float]) -> bool:
        """``a`` is strictly better than ``b`` (None: nothing yet)."""
        return b is None or self.sign * a > self.sign * b


class Asha(_Strict):
    """Asynchronous successive halving over validation rounds (``training.validate_every`` steps each)."""

    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)


ALGORITHMS = {
    # name -> what it is; the searcher behind each name is built in ``search.searchers``
    "tpe": "hyperopt's TPE: n_initial_points random suggestions, then model-based",
    "random": "random search: the same hyperopt code path that never leaves its random start-up "
              "(paired with tpe: same seed, same first n_initial_points suggestions)",
    "optuna_tpe": "Optuna's TPESampler (multivariate, group) through Ray's OptunaSearch (the default)",
}
LIARS = {
    # what TPE assumes about trials still running when it suggests the next one (budget.constant_liar)
    "worst": "a running trial counts as the worst result (hyperopt's own behaviour; Optuna's constant_liar)",
    "mean": "a running trial counts as the mean of the finished ones (hyperopt only)",
    "none": "running trials are ignored (suggestions from the finished trials alone)",
}
TRANSFERS = {
    # how a warm start (an earlier search's history) enters a new search (budget.transfer)
    "history": "every earlier trial is inserted into TPE's history with its earlier objective",
    "replay": "the earlier top transfer_top_k configurations are evaluated first on the new task; "
              "TPE learns from those new results only",
    "gated": "replay, then the rest of the earlier history is inserted (objectives shifted to the new "
             "task's level) only if the replayed results rank like the earlier ones",
}


def _named(field: str, table: dict, value: str) -> str:
    if value not in table:
        raise ValueError(f"{field} {value!r} is not one of: {', '.join(table)}")
    return value


class Budget(_Strict):
    num_samples: int = Field(40, ge=1)
    max_concurrent: Optional[int] = Field(None, ge=1)
    time_budget_s: Optional[float] = Field(None, gt=0)
    algorithm: str = "optuna_tpe"          # a key of ALGORITHMS (the default: what the search benchmark favours)
    n_initial_points: int = Field(10, ge=1)
    gamma: float = Field(0.25, gt=0, lt=1)
    constant_liar: str = "worst"           # a key of LIARS
    transfer: str = "gated"                # a key of TRANSFERS: how a warm start is used (benchmark-chosen)
    transfer_top_k: int = Field(5, ge=1)
    # the searcher's random state; None: the spec's seed (which also draws the validation set and the
    # training shards). Set it to rerun a search with other suggestions on the same data.
    searcher_seed: Optional[int] = Field(None, ge=0, le=2**32 - 1)
    asha: Optional[Asha] = None

    _algorithm = field_validator("algorithm")(lambda v: _named("algorithm", ALGORITHMS, v))
    _liar = field_validator("constant_liar")(lambda v: _named("constant_liar", LIARS, v))
    _transfer = field_validator("transfer")(lambda v: _named("transfer", TRANSFERS, v))

    @model_validator(mode="after")
    def _tpe_needs_more_than_startup(self):
        if self.algorithm != "random" and self.num_samples <= self.n_initial_points:
            raise ValueError(f"num_samples ({self.num_samples}) must exceed n_initial_points ({self.n_initial_points}): "
                             "TPE's first n_initial_points suggestions are random, so this budget would be a random "
                             "search; raise num_samples, lower n_initial_points, or set algorithm: random")
        if self.transfer == "gated" and self.transfer_top_k < 3:
            raise ValueError(f"transfer 'gated' compares the ranks of the replayed configurations: transfer_top_k "
                             f"must be >= 3 (got {self.transfer_top_k})")
        if self.algorithm == "optuna_tpe" and self.constant_liar == "mean":
            raise ValueError("constant_liar 'mean' is hyperopt's (algorithm tpe); optuna_tpe takes 'worst' or 'none'")
        return self


class Resources(_Strict):
    """Per trial. ``gpu`` may be a fraction (0.25 = four trials share a GPU, each capped to a quarter
    of its memory)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _gpu_fraction(self):
        if self.gpu > 1 and not float(self.gpu).is_integer():
            raise ValueError(f"gpu must be a fraction <= 1 or a whole number (got {self.gpu})")
        return self


class SearchSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: Dict[str, Any] = Field(default_factory=dict)
    objective: Objective = Objective()
    budget: Budget = Budget()
    resources: Resources = Resources()
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX)
    space: Dict[str, D.Dimension] = Field(min_length=1)

    _origin: str = PrivateAttr("<spec>")

    @property
    def searcher_seed(self) -> int:
        """The seed of the searcher's own random state (``budget.searcher_seed``, else ``seed``)."""
        s = self.budget.searcher_seed
        return int(self.seed if s is None else s)

    @property
    def origin(self) -> str:
        return self._origin

    # -- identity ---------------------------------------------------------------------------
    def canonical_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_yaml().encode()).hexdigest()

    # -- from trial parameters to an experiment ----------------------------------------------
    def base_config(self) -> ExperimentConfig:
        return parse_config(copy.deepcopy(self.base), f"{self.origin}: base")

    def experiment(self, params: Dict[str, Any]) -> ExperimentConfig:
        """The experiment config of one trial: base + the trial's flat params (see ``dimensions``).
        Raises ConfigError when the combination is invalid (the trial then fails with that reason)."""
        data = copy.deepcopy(self.base)
        for key, value in D.assignments(self.space, params).items():
            assign_dotted(data, key, value)
        data["seed"] = self.seed
        return parse_config(data, f"{self.origin}: trial")

    def hyperopt_space(self) -> Dict[str, Any]:
        return D.to_hyperopt(self.space)

    def flatten(self, config: Dict[str, Any]) -> Dict[str, Any]:
        return D.flatten(self.space, config)

    def to_vals(self, params: Dict[str, Any]):
        return D.to_vals(self.space, params)

    def labels(self) -> List[str]:
        return D.labels(self.space)


_UNION_TAGS = ("int", "float", "categorical", "conditional")


def _check_against_config(spec: SearchSpec) -> None:
    """Every key of the space is a config key and every value it can take gives a valid experiment.

    For each dimension and each candidate value (both ends of a range, every choice, every option)
    a complete point is built (the other dimensions at their first candidate, the enclosing options
    the ones this dimension lives in) and validated as an experiment config."""
    try:
        spec.base_config()
    except ConfigError as err:
        raise SpaceError(str(err)) from None
    problems, seen = [], set()
    for label, dim, path in D.iter_dims(spec.space):
        for value in D.candidates(dim):
            point = D.default_point(spec.space, {**path, label: value})
            try:
                spec.experiment(point)
            except ConfigError as err:
                detail = "; ".join(line.split(": ", 2)[-1].removeprefix("Value error, ") for line in str(err).splitlines())
                if (label, detail) in seen:
                    continue
                seen.add((label, detail))
                problems.append(f"space.{label}: value {value!r} gives an invalid experiment: {detail} "
                                f"(point: {D.assignments(spec.space, point)})")
    if problems:
        raise SpaceError("\n".join(f"{spec.origin}: {p}" for p in problems))


def parse_spec(data: Any, origin: str = "<spec>", check_space: bool = True) -> SearchSpec:
    """Validate a search-space mapping. ``check_space=False`` skips building an experiment for every
    value of every dimension: for a spec that was validated already (a trial re-reading the
    driver's canonical YAML), not for user input."""
    if not isinstance(data, dict):
        raise SpaceError(f"{origin}: the top level must be a mapping, got {type(data).__name__}")
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as err:
        raise SpaceError(format_validation_error(err, origin, hide=_UNION_TAGS)) from None
    spec._origin = origin
    if check_space:
        _check_against_config(spec)
    return spec


def load_spec(path, overrides: Optional[List[str]] = None, origin: Optional[str] = None) -> SearchSpec:
    """Read and validate a search-space YAML; ``overrides`` are ``key.sub=value`` strings;
    ``origin`` names the file in errors (default: its path)."""
    path = Path(path)
    origin = origin or str(path)
    data = read_yaml_mapping(path, SpaceError, origin=origin)
    for o in overrides or []:
        try:
            set_override(data, o)
        except ConfigError as err:
            raise SpaceError(f"{origin}: {err}") from None
    return parse_spec(data, origin + (" (with --set overrides)" if overrides else ""))


def spec_from_yaml(text: str, origin: str = "<spec>", check_space: bool = True) -> SearchSpec:
    return parse_spec(load_yaml(text, origin, SpaceError), origin, check_space)


SPACE_FILE = "search_space.yaml"
"""The one name of a search space stored beside what it produced (result dirs, model versions, runs)."""


def write_space_file(spec: SearchSpec, directory: "str | Path") -> Path:
    """Write ``spec``'s canonical YAML as ``directory/search_space.yaml`` (the one writer)."""
    path = Path(directory) / SPACE_FILE
    path.write_text(spec.canonical_yaml())
    return path

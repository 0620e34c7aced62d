"""Typed experiment configuration: YAML is parsed once into these objects, errors name file and key.

The same object builds the problem, the model and the trainer, and its canonical YAML is saved
beside the weights (``ExperimentConfig.canonical_yaml``).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional, Tuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChannelConfig(_Strict):
    model: Literal["correlated_rayleigh", "iid_rayleigh"] = "correlated_rayleigh"
    n_tx: int = Field(64, ge=1)
    n_rx: int = Field(16, ge=1)
    snr_db: Tuple[float, float] = (0.0, 30.0)
    power: float = Field(1.0, gt=0)
    angular_spread_deg: float = Field(15.0, ge=0, le=90)
    antenna_spacing: float = Field(0.5, gt=0)
    rx_rho: Optional[float] = Field(None, ge=0, lt=1)

    @field_validator("snr_db")
    @classmethod
    def _ordered(cls, v):
        if v[1] < v[0]:
            raise ValueError(f"must be [low, high] with low <= high, got {list(v)}")
        return v


class BeamformingConfig(_Strict):
    name: Literal["beamforming"] = "beamforming"
    n_streams: int = Field(1, ge=1)
    constraint: Literal["total", "per_antenna"] = "total"
    init: Literal["matched_filter", "random"] = "matched_filter"
    channel: ChannelConfig = ChannelConfig()


class LassoConfig(_Strict):
    name: Literal["lasso"]
    n: int = Field(50, ge=1)
    m: int = Field(25, ge=1)
    sparsity: float = Field(5, gt=0)
    snr_db: float = 20.0
    lam: float = Field(0.05, gt=0)
    matrix_seed: int = 0


class ModelConfig(_Strict):
    algorithm: Literal["pgd"] = "pgd"
    num_layers: int = Field(5, ge=1, le=200)
    layer: Literal["step", "signed", "momentum", "hybrid", "ista", "lista", "lista_cp"] = "signed"
    tied: bool = False
    step_init: Union[Literal["chebyshev"], float, List[float]] = "chebyshev"
    momentum_init: Union[float, List[float]] = 0.0
    extrapolation: Literal["heavy_ball", "nesterov"] = "heavy_ball"
    gradient_scaling: Literal["auto", "none", "rayleigh", "trace", "lipschitz"] = "auto"


class TrainingConfig(_Strict):
    steps: int = Field(600, ge=0)
    batch_size: int = Field(256, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(0.02, gt=0)
    scheduler: Literal["none", "cosine", "step"] = "cosine"
    loss: Literal["end_to_end", "multi_iteration", "sequential"] = "end_to_end"
    target: Literal["unsupervised", "relative", "supervised"] = "relative"
    grad_clip: Optional[float] = Field(10.0, gt=0)
    validation_batch: int = Field(1024, ge=1)
    validate_every: int = Field(100, ge=1)


class ExperimentConfig(_Strict):
    """A whole experiment: problem (with its channel), model, training and the seed of every stream."""

    problem: Union[BeamformingConfig, LassoConfig] = Field(default_factory=BeamformingConfig, discriminator="name")
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _default_problem_name(cls, data):
        if isinstance(data, dict) and isinstance(data.get("problem"), dict) and "name" not in data["problem"]:
            data = {**data, "problem": {"name": "beamforming", **data["problem"]}}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        lasso_layers = ("ista", "lista", "lista_cp")
        if self.problem.name == "lasso" and self.model.layer not in lasso_layers + ("step", "momentum"):
            raise ValueError(f"model.layer {self.model.layer!r} does not apply to lasso; use one of {lasso_layers}")
        if self.problem.name == "beamforming" and self.model.layer in lasso_layers:
            raise ValueError(f"model.layer {self.model.layer!r} is for lasso; use step, signed, momentum or hybrid")
        allowed = {"beamforming": ("auto", "none", "rayleigh", "trace"), "lasso": ("auto", "none", "lipschitz")}
        if self.model.gradient_scaling not in allowed[self.problem.name]:
            raise ValueError(f"model.gradient_scaling {self.model.gradient_scaling!r} does not apply to "
                             f"{self.problem.name}; allowed: {', '.join(allowed[self.problem.name])}")
        if self.model.step_init == "chebyshev" and self.model.layer != "signed":
            raise ValueError("model.step_init 'chebyshev' only applies to layer 'signed'; give a number")
        if self.model.step_init == "chebyshev" and self.model.gradient_scaling == "none":
            raise ValueError("model.step_init 'chebyshev' needs a scaled gradient (model.gradient_scaling auto, "
                             "rayleigh or trace); give a number with gradient_scaling 'none'")
        return self

    def canonical_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in ("beamforming", "lasso")))
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{origin}: {key or '<root>'}: {e['msg']}{shown}")
    return "\n".join(lines)


def parse_config(data: dict, origin: str = "<config>") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin)) from None


def set_override(data: dict, assignment: str, origin: str = "--set") -> None:
    """Apply ``key.sub=value`` (value parsed as YAML) to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError(f"{origin}: expected key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"{origin}: empty key in {assignment!r}")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{origin}: {key} goes through a value that is not a mapping")
    node[parts[-1]] = yaml.safe_load(raw)


PRESETS_DIR = Path(__file__).parent / "presets"


def read_yaml_mapping(path: "str | Path", error=ConfigError, origin: Optional[str] = None,
                      missing: str = "no such file") -> dict:
    """The YAML file at ``path`` as a dict (empty file: ``{}``); ``error`` (a ConfigError subclass)
    names ``origin`` (default: the path) when the file is missing, not YAML, or not a mapping."""
    path = Path(path)
    origin = origin or str(path)
    if not path.is_file():
        raise error(f"{origin}: {missing}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise error(f"{origin}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{origin}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: "str | Path | None" = None, overrides: Optional[List[str]] = None) -> ExperimentConfig:
    """Load YAML (a path, or ``preset:NAME`` for a file in autounfold/presets), apply overrides, validate."""
    data, origin = {}, "<defaults>"
    if path is not None:
        path = str(path)
        if path.startswith("preset:"):
            name = path.split(":", 1)[1]
            p = PRESETS_DIR / f"{name}.yaml"
            if not p.exists():
                names = sorted(f.stem for f in PRESETS_DIR.glob("*.yaml"))
                raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names)}")
        else:
            p = Path(path)
        origin = str(path)
        data = read_yaml_mapping(p, origin=origin)
    for o in overrides or []:
        set_override(data, o)
    return parse_config(data, origin + (" (with --set overrides)" if overrides else ""))

"""Typed experiment configuration: YAML is parsed once into these objects, errors name file and key.

The same object builds the problem, the model and the trainer, and its canonical YAML is saved
beside the weights (``ExperimentConfig.canonical_yaml``). Names are not listed here: the problem
section is validated by the schema its registered problem declares, ``model.layer`` against the
layer-type table and ``gradient_scaling`` against what the problem declares (``autounfold.plugins``).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from .channels.base import ChannelConfig
from .errors import ConfigError, format_validation_error
from .plugins import ALGORITHMS, LAYERS, PROBLEMS
from .problems.base import ProblemConfig
from .schema import Schema, load_yaml
from .seeding import SEED_MAX, SEED_MIN

__all__ = ["ChannelConfig", "ExperimentConfig", "ModelConfig", "ProblemConfig", "TrainingConfig", "assign_dotted", "dotted_keys", "load_config",
           "parse_config", "read_yaml_mapping", "set_override"]

DEFAULT_PROBLEM = "beamforming"


class _Strict(Schema):
    pass


class ModelConfig(_Strict):
    algorithm: str = "auto"          # auto: the update rule the layer type unrolls (pgd, wmmse)
    num_layers: int = Field(5, ge=1, le=200)
    layer: str = "signed"
    tied: bool = False
    # a number, one per layer, "chebyshev" (signed layers) or "tuned": the constants of the classical
    # solver the layer unrolls, tuned at this depth on a validation draw before training (build_model)
    step_init: Union[Literal["chebyshev", "tuned"], float, List[float]] = "chebyshev"
    momentum_init: Union[float, List[float]] = 0.0
    # layers with a second (digital) step, hybrid_pga...: its start (default: the same as step_init)
    digital_step_init: Optional[Union[float, List[float]]] = None
    extrapolation: Literal["heavy_ball", "nesterov"] = "heavy_ball"
    gradient_scaling: str = "auto"
    # layers with support selection (lista_cpss, alista, tilista): [step, max], the share of entries
    # that bypass the threshold at layer k is min(k * step, max); default [0.012, 0.13] (Chen et al. 2018)
    support: Optional[Tuple[float, float]] = None
    # per-layer scalars as functions of each sample's SNR (dB): piecewise linear between knots, constant
    # beyond the first and the last. An integer n >= 2 spreads n knots evenly over the channel's snr_db
    # range (the built model's config lists them); a list gives them in dB; 0: one value per layer.
    # Problems whose instances carry their SNR (mu_miso, beamforming) and the pgd / wmmse update rules.
    snr_knots: Union[int, List[float]] = 0
    # the same over the channel's conditioning (``problem.log_condition``: log10 of tr(A) tr(A^-1) / m^2, A the
    # Gram matrix H H^H, for mu_miso plus RZF's load K s2 / P I; how far the users / antennas are from
    # orthogonal): an integer n >= 2 spreads n knots evenly between the 1st and 99th
    # percentiles of a draw of the training channels; with snr_knots too, each scalar is bilinear on the
    # grid of both (the problem supplies ``log_condition``: mu_miso, beamforming)
    cond_knots: Union[int, List[float]] = 0
    # hybrid_pga layers (and classical hybrid PGA): the iteration runs unchanged, but each layer outputs, per
    # sample, the best iterate so far by the objective (one objective evaluation per layer), so the output is
    # never worse than the start. A schedule tuned or learned on one SNR range can overshoot outside it (the
    # sum-rate networks of the hybrid benchmark fell below their start at 30 dB)
    safeguard: bool = False

    @field_validator("snr_knots", "cond_knots", mode="before")
    @classmethod
    def _knots(cls, v):
        def number(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        if isinstance(v, int) and not isinstance(v, bool):
            if v == 0 or v >= 2:
                return v
        elif isinstance(v, (list, tuple)):
            if len(v) >= 2 and all(number(x) for x in v) and all(b > a for a, b in zip(v, v[1:])):
                return [float(x) for x in v]
        raise ValueError("must be 0 (off), an integer number of knots >= 2, or a list of >= 2 finite values, "
                         "strictly increasing")

    @field_validator("support")
    @classmethod
    def _support(cls, v):
        if v is not None and not (0 <= v[0] <= 1 and 0 <= v[1] <= 1):
            raise ValueError(f"must be [step, max] with both shares in [0, 1] (got {list(v)})")
        return v

    _registered = field_validator("layer")(lambda v: LAYERS.validate(v))
    _algorithm = field_validator("algorithm")(lambda v: v if v == "auto" else ALGORITHMS.validate(v))


class RefineConfig(_Strict):
    """After the gradient steps: a coordinate search over the model's per-layer scalars (their
    learned values: logits, logarithms of positive ones, signed values), scored by the problem's
    validation metric (SER, % of the optimum, ...) on a draw of its own. For a loss that disagrees
    with the metric it is scored by (learned EP: the cross-entropy it descends and the SER did not
    improve together). Each sweep tries, for every parameter and layer in turn, each offset added to
    the learned value and keeps the best if it beats the current score."""
    sweeps: int = Field(3, ge=1)
    offsets: List[float] = Field(default_factory=lambda: [-1.0, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0])
    # the per-layer scalars searched (names as ``Unfolded.kinds``); empty: every trainable one
    params: List[str] = Field(default_factory=list)
    batch: int = Field(8192, ge=1)
    # changes to the problem's sampling keys for the refine draw, e.g. {channel: {snr_db: [11, 13]}}: the
    # conditions where the metric matters (the validation draw and the saved problem are unchanged)
    problem: Dict[str, Any] = Field(default_factory=dict)
    # instead of a fixed band in ``problem``: centre the draw, width_db wide, on the SNR where the model's
    # metric (the problem's score key: SER, BLER) crosses this value, read after the gradient steps from a
    # sweep of the problem's SNR range (its ``operating_key``) at most 1 dB apart; a curve that does not cross
    # it in the range puts the band at that end of the range
    crossing: Optional[float] = Field(None, gt=0, lt=1)
    width_db: float = Field(2.0, gt=0)            # (read with crossing only)

    @field_validator("offsets")
    @classmethod
    def _offsets(cls, v):
        if not v or any(o == 0 or o != o or abs(o) == float("inf") for o in v):
            raise ValueError("needs at least one offset, each finite and nonzero")
        return v


class TrainingConfig(_Strict):
    steps: int = Field(600, ge=0)
    batch_size: int = Field(256, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(0.02, gt=0)
    # the learning rate of per-layer scalars (steps, thresholds, momenta; positive ones are learned as
    # logarithms) beside matrices at lr; default: lr for all
    scalar_lr: Optional[float] = Field(None, gt=0)
    scheduler: Literal["none", "cosine", "step"] = "cosine"
    # stagewise: LISTA-CPSS's recipe; for k = 1..K, layer k alone at lr, then layers 1..k at 0.2 lr
    # and at 0.02 lr, each stage on the loss of layer k (steps split evenly over the 3K stages).
    # layerwise: the survey's L3 then L1; for k = 1..K, layer k alone on its output's loss (earlier
    # layers frozen), half the steps in all; then end to end for the other half
    loss: Literal["end_to_end", "multi_iteration", "sequential", "stagewise", "layerwise"] = "end_to_end"
    target: Literal["unsupervised", "relative", "supervised"] = "relative"
    grad_clip: Optional[float] = Field(10.0, gt=0)
    validation_batch: int = Field(1024, ge=1)
    validate_every: int = Field(100, ge=1)
    # changes to the problem section for the training batches only, e.g. {ebno_db: [2, 5]} or
    # {channel: {snr_db: [-10, 40]}}: the validation draw, evaluation and the saved model keep
    # ``problem``. Only the keys the problem declares as sampling keys (``Problem.sampling_keys``)
    problem: Dict[str, Any] = Field(default_factory=dict)
    refine: Optional[RefineConfig] = None


def dotted_keys(changes: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"channel": {"snr_db": [0, 1]}}`` and ``{"channel.snr_db": [0, 1]}`` -> ``{"channel.snr_db": [0, 1]}``."""
    out = {}
    for key, value in changes.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(dotted_keys(value, f"{name}."))
        else:
            out[name] = value
    return out


def refine_band_inside(problem: dict, changes: Dict[str, Any]) -> None:
    """A refine draw scores the network on an SNR (or Eb/N0) band the metric matters at; one outside the
    range the model is trained and validated on (a preset's band left behind by a changed
    ``problem.*``) would tune it for conditions it never sees: ValueError naming both. Checked when
    training starts (``build.build_refine_problem``), not on every config: a trained model's config
    applied to another SNR for evaluation is fine."""
    for key, band in dotted_keys(changes).items():
        if not key.split(".")[-1].endswith(("snr_db", "ebno_db")):
            continue
        lo_hi, ab = range_pair(lookup_dotted(problem, key)), range_pair(band)
        if min(ab) < min(lo_hi) or max(ab) > max(lo_hi):
            raise ValueError(f"training.refine.problem.{key} {ab} lies outside problem.{key} {lo_hi}, where the model "
                             f"is trained and validated; set training.refine.problem.{key} inside it (where the metric "
                             "matters, e.g. around the SER's crossing of 1e-2), or training.refine: null")


def range_pair(value) -> List[float]:
    """An SNR setting as [a, b] floats in its own order: a pair as given, a single value v as [v, v]."""
    return [float(v) for v in (value if isinstance(value, (list, tuple)) else [value, value])]


def lookup_dotted(data: dict, dotted: str):
    """``data["a"]["b"]`` for ``dotted`` "a.b" (KeyError where a part is missing)."""
    for part in dotted.split("."):
        data = data[part]
    return data


def assign_dotted(data: dict, dotted: str, value) -> None:
    """``data["a"]["b"] = value`` for ``dotted`` "a.b", creating the mappings on the way (in place)."""
    *path, last = dotted.split(".")
    _section(data, path)[last] = value


def _section(data: dict, path, on_value=None):
    """``data[path[0]][path[1]]...``, creating each mapping that is missing or None on the way (an
    optional section left out or saved as null); ``on_value()`` is raised where the way goes through
    a value that is not a mapping (without it such a value is returned as it is)."""
    node = data
    for p in path:
        if node.get(p) is None:
            node[p] = {}
        node = node[p]
        if on_value is not None and not isinstance(node, dict):
            raise on_value()
    return node


def _as_validated(changes: Dict[str, Any], changed) -> Dict[str, Any]:
    """``changes`` (nested or dotted) as dotted keys with the values the validated problem ``changed`` holds."""
    dumped = changed.model_dump(mode="json")
    return {key: lookup_dotted(dumped, key) for key in dotted_keys(changes)}


def _nested_merge(base: dict, dotted: Dict[str, Any]) -> dict:
    out = copy.deepcopy(base)
    for key, value in dotted.items():
        assign_dotted(out, key, value)
    return out


def _default_problem() -> ProblemConfig:
    return PROBLEMS.get(DEFAULT_PROBLEM).Config()


class ExperimentConfig(_Strict):
    """A whole experiment: problem (with its channel), model, training and the seed of every stream."""

    problem: SerializeAsAny[ProblemConfig] = Field(default_factory=_default_problem)
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX)

    @field_validator("problem", mode="before")
    @classmethod
    def _problem_schema(cls, v):
        """The problem section is validated by the schema its registered problem declares."""
        if isinstance(v, ProblemConfig):
            return v
        if not isinstance(v, dict):
            raise ValueError(f"must be a mapping with a 'name' (one of {', '.join(PROBLEMS.names())})")
        name = PROBLEMS.validate(v.get("name", DEFAULT_PROBLEM))
        return PROBLEMS.get(name).Config.model_validate({**v, "name": name})

    @model_validator(mode="after")
    def _consistent(self):
        problem, m = PROBLEMS.get(self.problem.name), self.model
        layer = LAYERS.get(m.layer)
        if not layer.applies_to(problem.name):
            fits = LAYERS.select(lambda d: d.applies_to(problem.name))
            raise ValueError(f"model.layer {m.layer!r} does not apply to {problem.name}; use one of {', '.join(fits)}")
        # a variant of the layer's update rule (the same parameters, e.g. bp_layered: BP in another schedule) runs it too
        variants = [n for n in ALGORITHMS.names() if getattr(ALGORITHMS.get(n), "variant_of", None) == layer.algorithm]
        if m.algorithm not in ("auto", layer.algorithm, *variants):
            raise ValueError(f"model.algorithm {m.algorithm!r} does not run layer {m.layer!r} (it unrolls "
                             f"{' or '.join([repr(layer.algorithm)] + [repr(v) for v in variants])}); leave "
                             "model.algorithm out (auto)")
        allowed = ("auto", "none") + tuple(problem.scalings)
        if m.gradient_scaling not in allowed:
            raise ValueError(f"model.gradient_scaling {m.gradient_scaling!r} does not apply to "
                             f"{problem.name}; allowed: {', '.join(allowed)}")
        if layer.needs_scaling and m.gradient_scaling == "none":
            raise ValueError(f"model.layer {m.layer!r} needs a scaled gradient; model.gradient_scaling 'none' is not allowed")
        if m.step_init == "chebyshev" and not layer.chebyshev:
            fits = LAYERS.select(lambda d: d.chebyshev)
            raise ValueError(f"model.step_init 'chebyshev' only applies to layer {' or '.join(map(repr, fits))}; give a number")
        if m.step_init == "tuned" and not layer.tunable:
            fits = LAYERS.select(lambda d: d.tunable and d.applies_to(problem.name))
            raise ValueError(f"model.step_init 'tuned' applies to layers {', '.join(fits)} (not {m.layer!r}); give a number")
        if m.support is not None and not layer.support_selection:
            fits = LAYERS.select(lambda d: d.support_selection)
            raise ValueError(f"model.support applies to layers {', '.join(fits)} (not {m.layer!r}); leave it out")
        if m.safeguard and layer.algorithm != "hybrid_pga":
            fits = LAYERS.select(lambda d: d.algorithm == "hybrid_pga")
            raise ValueError(f"model.safeguard applies to layers {', '.join(fits)} (not {m.layer!r}); leave it out")
        if m.digital_step_init is not None and not layer.digital_step:
            fits = LAYERS.select(lambda d: d.digital_step)
            raise ValueError(f"model.digital_step_init applies to layers {', '.join(fits)} (not {m.layer!r}); leave it out")
        if m.step_init == "chebyshev" and m.gradient_scaling == "none":
            raise ValueError("model.step_init 'chebyshev' needs a scaled gradient (model.gradient_scaling auto, "
                             f"or one of {', '.join(problem.scalings)}); give a number with gradient_scaling 'none'")
        # the draw changes in one canonical spelling (dotted keys, validated values), so that the nested and
        # the dotted form of one change, or [-10, 40] and [-10.0, 40.0], save the same config
        tp = self.training_problem()
        if tp is not None:
            self.training.problem = _as_validated(self.training.problem, tp)
        rp = self.refine_problem()
        if rp is not None:
            self.training.refine.problem = _as_validated(self.training.refine.problem, rp)
        refine = self.training.refine
        if refine is not None and refine.crossing is not None:
            key = problem.operating_key
            if key is None:
                raise ValueError(f"training.refine.crossing: {problem.name} has no SNR range along which its metric "
                                 "falls (Problem.operating_key); place the refine draw with training.refine.problem")
            if key not in problem.sampling_keys:          # a plugin's declaration error, caught before any step
                raise ValueError(f"training.refine.crossing: {problem.name}'s operating_key {key!r} is not one of its "
                                 f"sampling_keys ({', '.join(problem.sampling_keys) or 'none'})")
            if key in dotted_keys(refine.problem):
                raise ValueError(f"training.refine.crossing and training.refine.problem.{key} both place the refine "
                                 "draw; keep one (crossing: where the metric crosses it; problem: a fixed band)")
        return self

    def training_problem(self) -> Optional[ProblemConfig]:
        """The problem the training batches are drawn from: ``problem`` with ``training.problem``'s
        changes, validated; None when there are none. ValueError names a key that is not one of the
        problem's sampling keys, or a value its schema refuses."""
        return self.changed_problem(self.training.problem, "training.problem", "the training batches")

    def refine_problem(self) -> Optional[ProblemConfig]:
        """The problem ``training.refine`` draws from (as ``training_problem``, for its changes)."""
        refine = self.training.refine
        return None if refine is None else self.changed_problem(refine.problem, "training.refine.problem", "the refine draw")

    def changed_problem(self, changes: Dict[str, Any], label: str, what: str) -> Optional[ProblemConfig]:
        """``problem`` with ``changes`` (sampling keys only, nested or dotted), validated; None for none.
        ValueError names ``label`` and the key or value refused."""
        changes = dotted_keys(changes)
        if not changes:
            return None
        cls = PROBLEMS.get(self.problem.name)
        allowed = cls.sampling_keys
        for key in changes:
            if key not in allowed:
                hint = f"allowed: {', '.join(allowed)}" if allowed else f"{self.problem.name} declares none"
                raise ValueError(f"{label}.{key}: not a sampling key of {self.problem.name}; {what} "
                                 f"may differ from problem only in how instances are drawn ({hint})")
        data = _nested_merge(self.problem.model_dump(mode="json"), changes)
        try:
            return cls.Config.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{label}: {where}: {first['msg'].removeprefix('Value error, ')}") from None

    def canonical_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)


def parse_config(data: dict, origin: str = "<config>") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None


def set_override(data: dict, assignment: str, origin: str = "--set") -> None:
    """Apply ``key.sub=value`` (value parsed as YAML) to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError(f"{origin}: expected key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"{origin}: empty key in {assignment!r}")
    node = _section(data, parts[:-1], lambda: ConfigError(f"{origin}: {key} goes through a value that is not a mapping"))
    node[parts[-1]] = load_yaml(raw, f"{origin} {key}", ConfigError)


PRESETS_DIR = Path(__file__).parent / "presets"


def read_yaml_mapping(path: "str | Path", error=ConfigError, origin: Optional[str] = None,
                      missing: str = "no such file") -> dict:
    """The YAML file at ``path`` as a dict; ``error`` (a ConfigError subclass) names ``origin``
    (default: the path) when the file is missing, a directory, unreadable, not UTF-8, not YAML (or
    a refused one: see ``schema.load_yaml``), empty, or not a mapping."""
    path = Path(path)
    origin = origin or str(path)
    if path.is_dir():
        raise error(f"{origin}: is a directory; expected a YAML file")
    if not path.is_file():
        raise error(f"{origin}: {missing}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{origin}: cannot be read ({err.strerror})") from None
    return yaml_mapping(raw, origin, error)


def yaml_mapping(raw: "str | bytes", origin: str, error=ConfigError) -> dict:
    """``raw`` YAML text that must be a non-empty mapping (see ``read_yaml_mapping``)."""
    data = load_yaml(raw, origin, error)
    if data is None:
        raise error(f"{origin}: the file is empty; write at least the keys you mean (an empty file is not "
                    "taken for the defaults)")
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

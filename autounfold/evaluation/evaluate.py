"""Evaluate a trained model on its problem's scenarios against the optimum and the classical
solvers the problem declares, at the model's own depth (pure PyTorch; ``autounfold evaluate``).

Scenarios, baselines and metrics all come from the problem's declaration (``Problem.scenarios``,
``Problem.classical``, ``Problem.summarize``), so a new problem is evaluated with no edit here.
"""
from __future__ import annotations

import copy
from typing import Iterable, List, Sequence

import torch

from ..algorithms import evaluation_reference
from ..build import build_model
from ..config import ExperimentConfig, parse_config, set_override
from ..errors import ConfigError
from ..plugins import PROBLEMS
from ..seeding import generator
from .baselines import CLASSICAL


def _merge(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def with_problem_change(cfg: ExperimentConfig, change: dict, origin: str) -> ExperimentConfig:
    """``cfg`` with its problem section merged with ``change`` (nested keys, e.g.
    ``{"channel": {"n_tx": 128}}``), validated as a whole experiment; errors name ``origin``. The
    changed problem is what is evaluated (or trained) on: ``training.problem``, changes relative to
    the original problem for its training batches, is dropped (it may not even fit the new one)."""
    data = cfg.model_dump(mode="json")
    data["problem"] = _merge(data["problem"], change)
    _drop_draw_changes(data)
    return parse_config(data, origin)


def _drop_draw_changes(data: dict) -> None:
    """Clear ``training.problem`` and ``training.refine.problem`` in a dumped config: changes relative
    to the problem the model was trained for, which do not apply to (and may not fit) a changed one."""
    data["training"]["problem"] = {}
    if data["training"].get("refine"):
        data["training"]["refine"]["problem"] = {}


def scenario_config(cfg: ExperimentConfig, scenario: str) -> ExperimentConfig:
    """``cfg`` with the problem section changed as the problem's scenario ``scenario`` says."""
    scenarios = PROBLEMS.get(cfg.problem.name).scenarios
    if scenario not in scenarios:
        raise ConfigError(f"unknown scenario {scenario!r} for {cfg.problem.name}; allowed: {', '.join(scenarios)}")
    return with_problem_change(cfg, scenarios[scenario][1], f"scenario {scenario}")


def transfer(model, cfg: ExperimentConfig, problem=None):
    """The same learned parameters on the problem ``cfg`` describes (another channel model, antenna
    count, SNR; ``problem``: that problem already built from ``cfg.problem``): the learned parameters
    must not depend on the changed sizes."""
    moved = build_model(cfg, problem)
    try:
        moved.load_state_dict(model.state_dict())
    except RuntimeError as err:
        raise ConfigError(f"the model's learned parameters do not fit {cfg.problem.name} as changed "
                          f"({str(err).splitlines()[0][:200]})") from None
    return moved.eval()


def with_problem_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """``cfg`` with ``--set problem.KEY=VALUE`` overrides applied (the channel, sizes, SNR: what a
    model's learned parameters may be applied to unchanged). Any other key is a ConfigError, since
    the model's own sections are fixed by its weights."""
    if not overrides:
        return cfg
    data = cfg.model_dump(mode="json")
    for assignment in overrides:
        key = assignment.split("=", 1)[0].strip()
        if not key.startswith("problem."):
            raise ConfigError(f"--set {assignment!r}: evaluate changes the problem only (problem.KEY=VALUE, e.g. "
                              "problem.channel.n_tx=128); the model's sections come from its weights")
        set_override(data, assignment)
    _drop_draw_changes(data)                  # evaluation only: the training-draw changes do not apply
    return parse_config(data, "--set")


def evaluate_model(model, scenarios: Iterable[str] = ("nominal",), batch: int = 2048, seed: int = 1,
                   overrides: Sequence[str] = ()) -> List[dict]:
    """One row per (scenario, method): the model and each declared classical solver at the model's
    depth, scored by ``problem.summarize`` against the reference (or the ground truth).
    ``overrides`` (``problem.KEY=VALUE``) change the problem on top of every scenario, e.g. another
    antenna count; the learned parameters are applied unchanged (``transfer``)."""
    if batch < 1:
        raise ConfigError(f"batch must be >= 1 (got {batch})")
    cfg = model.config
    rows = []
    for sc in scenarios:
        sc_cfg = with_problem_overrides(scenario_config(cfg, sc), overrides)
        m = transfer(model, sc_cfg) if (sc != "nominal" or overrides) else model
        problem, K = m.problem, m.num_layers
        test = problem.sample(batch, generator(seed, "evaluate", sc))
        ref = evaluation_reference(problem, test)
        with torch.no_grad():
            this = cfg.model.layer if cfg.model.algorithm == "auto" else f"{cfg.model.layer} on {cfg.model.algorithm}"
            cands = {f"{this}-{K} (this model)": m.run(test)}
            for name in problem.classical:
                label, solver = CLASSICAL[name]
                x = solver(problem, test, K)
                if x is not None:                       # None: the solver does not apply at this size
                    cands[label if label.endswith("(closed form)") else f"{label}-{K}"] = x
        for name, x in cands.items():
            rows.append({"scenario": sc, "method": name, **problem.summarize(x, test, ref)})
    return rows

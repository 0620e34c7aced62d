"""Adding a problem is one module: a problem defined in this file (schema, math, declaration) is
validated, built, trained, evaluated, canaried, searched and driven from the CLI with no edit to
config, build, CLI or ops code. Third-party plugins load through the ``autounfold.plugins`` entry points."""
import json
import math
import sys
import textwrap
from typing import Literal

import pytest
import torch
import yaml
from pydantic import Field
from typer.testing import CliRunner

import autounfold
from autounfold import plugins
from autounfold.algorithms import reference
from autounfold.build import build_model
from autounfold.cli import app
from autounfold.config import parse_config
from autounfold.errors import ConfigError
from autounfold.evaluation.canary import run_canary
from autounfold.evaluation.evaluate import evaluate_model
from autounfold.plugins import LAYERS, PROBLEMS
from autounfold.problems.base import Problem, ProblemConfig, ReferenceSolver, batch_scalar
from autounfold.seeding import as_generator, generator
from autounfold.spaces import parse_spec
from autounfold.training import train


class BoxConfig(ProblemConfig):
    name: Literal["box_ls"] = "box_ls"
    n: int = Field(6, ge=1)
    m: int = Field(10, ge=1)
    bound: float = Field(0.5, gt=0)
    snr_db: float = 20.0


class Inst:
    def __init__(self, y):
        self.y = y

    @property
    def batch_size(self):
        return self.y.shape[0]


class BoxLeastSquares(Problem):
    """min_x 1/2 ||y - A x||^2 subject to |x_i| <= bound (no closed form: the reference is FISTA)."""

    name = "box_ls"
    Config = BoxConfig
    sense = -1.0
    scalings = ("lipschitz",)
    default_scaling = "lipschitz"
    score_key = "gap_db"
    score_sign = -1.0
    metrics = {"gap_db": "10 log10 of the mean relative objective gap to the reference", "feasible": "inside the box"}
    scenarios = {"nominal": ("trained", {}), "noisy": ("SNR 5 dB", {"snr_db": 5.0})}
    reference_solver = ReferenceSolver(extrapolation="nesterov", normalize="lipschitz",
                                       params=(("step", 1.0), ("momentum", "fista")), tol=1e-6, max_iterations=500)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg)

    def __init__(self, cfg):
        self.cfg = cfg
        self.A = torch.randn(cfg.m, cfg.n, generator=generator(0, "box-matrix")) / math.sqrt(cfg.m)
        self.lipschitz = float(torch.linalg.matrix_norm(self.A, ord=2) ** 2)

    def settings(self):
        return self.cfg.model_dump()

    def sample(self, batch, seed, device="cpu"):
        g = as_generator(seed)
        x = (torch.rand(batch, self.cfg.n, generator=g) * 2 - 1) * self.cfg.bound * 1.5
        clean = x @ self.A.T
        noise = torch.randn(batch, self.cfg.m, generator=g) * clean.std() * 10 ** (-self.cfg.snr_db / 20)
        return Inst((clean + noise).to(device))

    def objective(self, x, inst):
        return 0.5 * (inst.y - x @ self.A.T).square().sum(-1)

    def gradient(self, x, inst, operator=None):
        return (x @ self.A.T - inst.y) @ self.A

    def curvature(self, x, inst, mode="lipschitz"):
        return torch.full((x.shape[0],), self.lipschitz)

    def prox(self, z, inst, threshold=None):
        return z.clamp(-self.cfg.bound, self.cfg.bound)

    def feasible(self, x, inst):
        return (x.abs() <= self.cfg.bound + 1e-6).all(-1)

    def init(self, inst, method=None):
        return torch.zeros(inst.batch_size, self.cfg.n)

    def loss_scale(self, inst):
        return 0.5 * inst.y.square().sum(-1)

    def supervised_loss(self, x, inst, x_ref):
        return (x - x_ref).square().sum(-1)

    def summarize(self, x, inst, ref):
        f, f_ref = self.objective(x, inst).double(), self.objective(ref, inst).double()
        gap = float(((f - f_ref) / f_ref.clamp_min(1e-12)).mean())
        return {"gap_db": 10 * math.log10(max(gap, 1e-12)), "feasible": bool(self.feasible(x, inst).all())}


@pytest.fixture
def box_problem():
    PROBLEMS.register(BoxLeastSquares)
    yield BoxLeastSquares
    PROBLEMS.unregister("box_ls")


EXPERIMENT = {"problem": {"name": "box_ls", "n": 6, "m": 10},
              "model": {"layer": "momentum", "num_layers": 4, "step_init": 1.0, "momentum_init": 0.3},
              "training": {"steps": 40, "batch_size": 64, "lr": 0.05, "validation_batch": 128, "validate_every": 20}}


def test_the_registered_problem_is_validated_by_its_own_schema(box_problem):
    cfg = parse_config(json.loads(json.dumps(EXPERIMENT)), "box.yaml")
    assert isinstance(cfg.problem, BoxConfig) and cfg.problem.bound == 0.5
    assert yaml.safe_load(cfg.canonical_yaml())["problem"]["bound"] == 0.5          # the subclass is serialised
    with pytest.raises(ConfigError, match=r"box.yaml: problem.bound: Input should be greater than 0"):
        parse_config({"problem": {"name": "box_ls", "bound": -1}}, "box.yaml")
    with pytest.raises(ConfigError, match=r"problem.colour: Extra inputs are not permitted"):
        parse_config({"problem": {"name": "box_ls", "colour": "red"}}, "box.yaml")
    # layer types declare the problems they apply to; scalings come from the problem's declaration
    with pytest.raises(ConfigError, match="model.layer 'signed' does not apply to box_ls"):
        parse_config({"problem": {"name": "box_ls"}, "model": {"layer": "signed"}})
    with pytest.raises(ConfigError, match="gradient_scaling 'rayleigh' does not apply to box_ls; allowed: auto, none, lipschitz"):
        parse_config({"problem": {"name": "box_ls"}, "model": {"layer": "step", "step_init": 1.0,
                                                              "gradient_scaling": "rayleigh"}})
    assert "box_ls" in PROBLEMS.names()
    PROBLEMS.unregister("box_ls")
    with pytest.raises(ConfigError, match="unknown problem 'box_ls'; allowed: ") as err:
        parse_config({"problem": {"name": "box_ls"}})
    allowed = str(err.value).split("allowed: ")[1].split(", ")
    assert "box_ls" not in allowed and {"beamforming", "lasso", "detection"} <= set(allowed)
    PROBLEMS.register(BoxLeastSquares)


def test_build_train_evaluate_canary_and_search_the_new_problem(box_problem):
    cfg = parse_config(json.loads(json.dumps(EXPERIMENT)))
    model = build_model(cfg)
    res = train(model, cfg.training, seed=0, progress=False)
    assert res.best_score > res.history[0]["val_score"]            # training improved the declared score
    inst = model.problem.sample(32, 3)
    x_ref = reference(model.problem, inst)                          # the declared solver, run to convergence
    assert model.problem.feasible(x_ref, inst).all()
    assert (model.problem.objective(x_ref, inst) <= model.problem.objective(model.run(inst), inst) + 1e-5).all()

    rows = evaluate_model(model, ["nominal", "noisy"], batch=64, seed=1)
    assert [r["scenario"] for r in rows] == ["nominal", "noisy"] and all(r["feasible"] for r in rows)
    with pytest.raises(ConfigError, match="unknown scenario 'iid' for box_ls; allowed: nominal, noisy"):
        evaluate_model(model, ["iid"], batch=8)

    untrained = build_model(cfg)
    rep = run_canary(untrained, model, model.problem, batches=20, batch_size=16, fraction=0.5, seed=0).summary()
    assert rep["challenger_score"] > rep["champion_score"]

    spec = parse_spec({"name": "box", "base": EXPERIMENT, "budget": {"num_samples": 4, "algorithm": "random"},
                       "space": {"model.num_layers": {"type": "int", "low": 2, "high": 5},
                                 "model.layer": {"type": "categorical", "values": ["step", "momentum"]}}}, "box.yaml")
    from autounfold.search.trial import run_trial
    final = run_trial(spec, {"model.num_layers": 3, "model.layer": "step"}, "t0", lambda *a: None)
    assert final["status"] == "ok" and math.isfinite(final["val_score"])


def test_cli_trains_and_evaluates_the_new_problem(box_problem, tmp_path):
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    r = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "gap_db" in json.loads(r.output)
    loaded = autounfold.load(tmp_path / "m")
    assert loaded.problem.name == "box_ls" and loaded.num_layers == 4
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "m"), "--scenario", "noisy", "--batch", "64"])
    assert r.exit_code == 0 and "momentum-4 (this model)" in r.output and "gap_db" in r.output, r.output
    r = CliRunner().invoke(app, ["csi", "write", "--out", str(tmp_path / "c.parquet"), "--config", str(path)])
    assert r.exit_code == 2 and "does not draw channels" in r.output


def test_registering_a_taken_name_is_an_error(box_problem):
    class Other(BoxLeastSquares):
        pass
    with pytest.raises(ConfigError, match="problem 'box_ls' is already registered"):
        PROBLEMS.register(Other)
    PROBLEMS.register(Other, replace=True)
    assert PROBLEMS.get("box_ls") is Other


def test_entry_point_plugins_load_and_a_broken_one_is_skipped(tmp_path, monkeypatch, caplog):
    """A separately installed package: a dist-info with an ``autounfold.plugins`` entry point."""
    (tmp_path / "myplugin.py").write_text(textwrap.dedent('''
        from autounfold.plugins import LAYERS
        from autounfold.unfolding.layers import LayerType, LearnedParam
        LAYERS.register(LayerType("half_step", "learned hyperparameters", "a step of half the learned value",
                                  lambda problem, K, steps, momentum: {"step": LearnedParam("positive", [s / 2 for s in steps])},
                                  positive_step=True))
    '''))
    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[autounfold.plugins]\nhalf = myplugin\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    try:
        with caplog.at_level("WARNING", logger="autounfold.plugins"):
            plugins._load_entry_points()
        assert "half_step" in LAYERS.names()
        assert any("broken" in rec.getMessage() and "skipped" in rec.getMessage() for rec in caplog.records)
        cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}},
                            "model": {"layer": "half_step", "step_init": 2.0, "num_layers": 2}})
        assert build_model(cfg).layer_values(0)["step"].item() == pytest.approx(1.0)
    finally:
        LAYERS.unregister("half_step")
        sys.modules.pop("myplugin", None)

import pytest
import torch

from autounfold.algorithms import reference
from autounfold.build import build_model
from autounfold.config import load_config
from autounfold.errors import TrainingError
from autounfold.evaluation import baselines
from autounfold.seeding import generator
from autounfold.training import layer_weights, train
from autounfold.training.trainer import _phases

SMALL = ["problem.channel.n_tx=16", "problem.channel.n_rx=4", "training.batch_size=64",
         "training.validation_batch=256", "training.validate_every=20"]


def test_layer_weights():
    assert layer_weights("end_to_end", 3) == [0.0, 0.0, 1.0]
    w = layer_weights("multi_iteration", 4)
    assert abs(sum(w) - 1) < 1e-12 and w == sorted(w)
    assert w[0] / w[1] == pytest.approx(torch.log(torch.tensor(2.0)).item() / torch.log(torch.tensor(3.0)).item())


def test_sequential_trains_each_prefix_then_end_to_end():
    cfg = load_config(None, ["training.loss=sequential", "training.steps=100", "model.num_layers=4"])
    phases = _phases(cfg.training, 4)
    assert [p[0] for p in phases] == [1, 2, 3, 4, 4]
    assert sum(p[1] for p in phases) == 100


def test_training_beats_power_iteration_at_equal_depth():
    cfg = load_config("preset:auto_pgd", SMALL + ["model.num_layers=3", "training.steps=120"])
    model = build_model(cfg)
    res = train(model, cfg.training, seed=0, progress=False)
    problem = model.problem
    val = problem.sample(256, generator(0, "validation"))
    ref = reference(problem, val)
    power = problem.score(problem.summarize(baselines.power_iteration(problem, val, 3), val, ref))
    assert res.best_score >= res.history[0]["val_score"]
    assert res.best_score > power
    with torch.no_grad():
        assert problem.summarize(model.run(val), val, ref)["feasible"]


def test_training_is_deterministic():
    cfg = load_config("preset:auto_pgd", SMALL + ["model.num_layers=2", "training.steps=15"])
    params = []
    for _ in range(2):
        m = build_model(cfg)
        train(m, cfg.training, seed=4, progress=False)
        params.append(m.params["step"].detach().clone())
    assert torch.equal(params[0], params[1])


def test_non_finite_loss_stops_with_a_clear_error(monkeypatch):
    cfg = load_config("preset:auto_pgd", SMALL + ["model.num_layers=2", "training.steps=10"])
    model = build_model(cfg)
    before = model.params["step"].detach().clone()
    problem = model.problem
    real = problem.objective
    monkeypatch.setattr(problem, "objective", lambda W, inst: real(W, inst) * float("nan") if W.requires_grad else real(W, inst))
    with pytest.raises(TrainingError, match="non-finite training loss"):
        train(model, cfg.training, seed=0, progress=False)
    assert torch.equal(model.params["step"].detach(), before)


@pytest.mark.parametrize("layer, lr", [("ista", 0.01), ("lista_cp", 0.01)])
def test_lista_training_improves_nmse(layer, lr):
    cfg = load_config("preset:lista", ["training.steps=150", "model.num_layers=4", "training.validation_batch=256",
                                       "training.validate_every=50", f"model.layer={layer}", f"training.lr={lr}",
                                       f"training.scalar_lr={lr}", "training.loss=multi_iteration"])
    model = build_model(cfg)
    res = train(model, cfg.training, seed=0, progress=False)
    assert res.best_score > res.history[0]["val_score"] + 0.5        # at least 0.5 dB lower NMSE


@pytest.mark.parametrize("option", ["training.loss=multi_iteration", "training.loss=sequential",
                                    "training.target=supervised", "training.target=unsupervised",
                                    "training.optimizer=sgd", "training.scheduler=step"])
def test_training_options_run(option):
    cfg = load_config("preset:auto_pgd", SMALL + ["model.num_layers=2", "training.steps=8", "training.lr=0.005", option])
    model = build_model(cfg)
    res = train(model, cfg.training, seed=0, progress=False)
    assert res.history and all(torch.isfinite(p).all() for p in model.parameters())

import re

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


def test_training_problem_changes_only_the_training_batches(monkeypatch):
    """``training.problem`` draws the training batches from the problem with its changes (here every
    batch at -10 dB) while the validation draw, the saved config's problem and the model's problem
    stay nominal; the nested and the dotted spellings are the same change."""
    import autounfold.training.trainer as T
    over = SMALL + ["training.steps=6", "training.validate_every=3"]
    cfg = load_config("preset:auto_pgd", over + ["training.problem.channel.snr_db=[-10.0, -10.0]"])
    assert cfg.training_problem().channel.snr_db == (-10.0, -10.0)
    assert cfg.problem.channel.snr_db == load_config("preset:auto_pgd", over).problem.channel.snr_db
    dotted = load_config("preset:auto_pgd", over + ["training.problem={'channel.snr_db': [-10.0, -10.0]}"])
    assert dotted.training_problem() == cfg.training_problem()
    assert load_config("preset:auto_pgd", over).training_problem() is None
    drawn = {"train": [], "validation": []}
    real_build = T.build_training_problem

    def spying_build(model, training):
        sampler = real_build(model, training)
        assert sampler is not model.problem
        real_sample = sampler.sample
        sampler.sample = lambda *a, **k: drawn["train"].append(real_sample(*a, **k)) or drawn["train"][-1]
        return sampler

    monkeypatch.setattr(T, "build_training_problem", spying_build)
    model = build_model(cfg)
    real_val = model.problem.sample
    model.problem.sample = lambda *a, **k: drawn["validation"].append(real_val(*a, **k)) or drawn["validation"][-1]
    res = train(model, cfg.training, seed=0, progress=False)
    assert len(drawn["train"]) == 6 and len(drawn["validation"]) == 1
    assert all(bool((b.snr_db == -10.0).all()) for b in drawn["train"])
    lo, hi = cfg.problem.channel.snr_db
    v = drawn["validation"][0].snr_db
    assert float(v.min()) >= lo and float(v.max()) <= hi and float(v.std()) > 1.0
    assert [h["step"] for h in res.history] == [0, 3, 6]


@pytest.mark.parametrize("override, needle", [
    ("training.problem.channel.n_tx=32", "training.problem.channel.n_tx: not a sampling key of beamforming"),
    ("training.problem.channel.power=2.0", "allowed: channel.model, channel.snr_db"),
    ("training.problem.channel.snr_db=[9, 3]", "training.problem: channel.snr_db"),
    ("training.problem.channel.model=no_such_model", "training.problem: channel.model"),
])
def test_training_problem_refuses_what_is_not_a_sampling_change(override, needle):
    from autounfold.errors import ConfigError
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config("preset:auto_pgd", [override])


def test_training_problem_needs_an_experiment_config():
    from autounfold.algorithms import Subspace
    from autounfold.errors import ConfigError
    from autounfold.unfolding.unfolded import Unfolded
    cfg = load_config("preset:auto_pgd", SMALL + ["training.steps=2", "training.problem.channel.snr_db=[0, 1]"])
    bare = Unfolded(build_model(cfg).problem, Subspace(), 2, "subspace", step_init=-1.0)
    with pytest.raises(ConfigError, match="not built from an experiment config"):
        train(bare, cfg.training, seed=0, progress=False)


def test_training_problem_has_one_spelling_and_stays_out_of_evaluation():
    """Nested or dotted keys, ints or floats: one saved config. A changed problem for evaluation
    (scenario, --set) drops the training-batch changes, which were relative to the original problem
    and may not fit the new one (UMi with path loss kept, moved to CDL). A value the schema lets
    through but the problem refuses names training.problem when training starts."""
    from autounfold.errors import ConfigError
    from autounfold.evaluation.evaluate import scenario_config, with_problem_overrides
    a = load_config("preset:auto_pgd", ["training.problem.channel.snr_db=[-10, 40]"])
    b = load_config("preset:auto_pgd", ["training.problem={'channel.snr_db': [-10.0, 40.0]}"])
    assert a.canonical_yaml() == b.canonical_yaml()
    assert a.training.problem == {"channel.snr_db": [-10.0, 40.0]}
    umi = load_config("preset:auto_pgd", ["problem.channel.model=umi", "training.problem.channel.pathloss=true"])
    for moved in (scenario_config(umi, "cdl"), with_problem_overrides(umi, ["problem.channel.model=cdl"])):
        assert moved.problem.channel.model == "cdl" and moved.training.problem == {}
    cfg = load_config("preset:lista", ["training.steps=1", "training.problem.sparsity=2.5"])
    with pytest.raises(ConfigError, match="training.problem: .*sparsity"):
        train(build_model(cfg), cfg.training, seed=0, progress=False)


def test_refine_searches_the_listed_scalars_on_its_own_draw_and_never_lowers_its_score(monkeypatch):
    """training.refine after the gradient steps: a coordinate search over the listed per-layer
    scalars, scored by the validation metric on a draw from the changed problem (its SNR range); a
    badly started step is moved and the score rises, the score never falls, unlisted scalars stay."""
    import autounfold.training.trainer as T
    cfg = load_config("preset:auto_pgd", SMALL + ["model.layer=subspace_momentum", "model.step_init=-0.05",
                                                  "training.steps=0",
                                                  "training.refine={params: [step], sweeps: 2, batch: 256, "
                                                  "problem: {channel: {snr_db: [20, 30]}}}"])
    model = build_model(cfg)
    before = {k: v.detach().clone() for k, v in model.params.items()}
    drawn = []
    real = T.refine

    def spy(model, rcfg, names, problem, seed, device="cpu", progress=False):
        orig = problem.sample
        problem.sample = lambda *a, **k: drawn.append(orig(*a, **k)) or drawn[-1]
        try:
            return real(model, rcfg, names, problem, seed, device, progress)
        finally:
            problem.sample = orig
    monkeypatch.setattr(T, "refine", spy)
    res = train(model, cfg.training, seed=0, progress=False)
    r = res.refine
    assert r["params"] == ["step"] and r["end"] > r["start"] and r["evaluations"] == 1 + 2 * 5 * 8
    assert not torch.equal(model.params["step"], before["step"])
    assert torch.equal(model.params["momentum"], before["momentum"])
    assert len(drawn) == 1 and drawn[0].H.shape[0] == 256
    assert float(drawn[0].snr_db.min()) >= 20.0 and float(drawn[0].snr_db.max()) <= 30.0
    # every parameter by default; the score never falls even where nothing improves
    cfg2 = load_config("preset:auto_pgd", SMALL + ["training.steps=0", "training.refine={sweeps: 1, batch: 128, offsets: [1e-6]}"])
    m2 = build_model(cfg2)
    r2 = train(m2, cfg2.training, seed=0, progress=False).refine
    assert r2["params"] == ["step", "momentum"] and r2["end"] >= r2["start"]


@pytest.mark.parametrize("override, needle", [
    ("training.refine={params: [no_such]}", "training.refine.params: 'no_such' not among"),
    ("training.refine={problem: {channel: {n_tx: 32}}}", "training.refine.problem.channel.n_tx: not a sampling key"),
    ("training.refine={offsets: [0.0]}", "training.refine.offsets"),
    ("training.refine={sweeps: 0}", "training.refine.sweeps"),
])
def test_refine_refuses_bad_settings_naming_the_field(override, needle):
    from autounfold.errors import ConfigError
    with pytest.raises(ConfigError, match=re.escape(needle)):
        cfg = load_config("preset:auto_pgd", SMALL + ["training.steps=0", override])
        train(build_model(cfg), cfg.training, seed=0, progress=False)


def test_refine_problem_stays_out_of_evaluation():
    from autounfold.evaluation.evaluate import scenario_config, with_problem_overrides
    cfg = load_config("preset:auto_pgd", ["training.refine={problem: {channel: {snr_db: [10, 20]}}}"])
    assert cfg.training.refine.problem == {"channel.snr_db": [10.0, 20.0]}
    for moved in (scenario_config(cfg, "iid"), with_problem_overrides(cfg, ["problem.channel.n_tx=32"])):
        assert moved.training.refine is not None and moved.training.refine.problem == {}


def test_refine_reports_the_returned_weights_and_sets_through_a_saved_null():
    """After refine the reported validation score is that of the weights returned (re-scored on the
    validation draw), the metrics carry the refine's scores; a saved config holds refine: null and
    --set training.refine.KEY still works on it."""
    from autounfold.algorithms import evaluation_reference
    from autounfold.config import parse_config, set_override
    cfg = load_config("preset:auto_pgd", SMALL + ["model.step_init=-0.05", "training.steps=0",
                                                  "training.refine={sweeps: 1, batch: 256}"])
    model = build_model(cfg)
    res = train(model, cfg.training, seed=0, progress=False)
    p = model.problem
    val = p.sample(cfg.training.validation_batch, generator(0, "validation"))
    with torch.no_grad():
        again = p.score(p.summarize(model.run(val), val, evaluation_reference(p, val)))
    assert res.best_score == pytest.approx(again, abs=1e-9)
    assert res.refine["validation_after"] == res.best_score and res.history[-1]["refined"]
    data = load_config("preset:auto_pgd").model_dump(mode="json")
    assert data["training"]["refine"] is None
    set_override(data, "training.refine.sweeps=2")
    assert parse_config(data).training.refine.sweeps == 2

"""Search-space YAML: validation errors name file, key and value; the three views of a space agree."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from autounfold.errors import SpaceError
from autounfold.spaces import load_spec, parse_spec
from autounfold.spaces import dimensions as D

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))

MINIMAL = {
    "name": "t",
    "base": {"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "training": {"steps": 4}},
    "budget": {"num_samples": 12, "n_initial_points": 4},
    "space": {"model.num_layers": {"type": "int", "low": 2, "high": 6}},
}


def _spec(**changes):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("/")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = value
    return data


def test_shipped_spaces_are_valid_and_cover_the_issue():
    names = {p.stem for p in SHIPPED}
    assert {"auto_pgd", "lista", "algorithm_family", "mu_miso"} <= names
    mu = load_spec(ROOT / "search_spaces/mu_miso.yaml")
    assert set(mu.space["model.layer"].values) == {"uwmmse", "uwmmse_gnn", "wmmse_relax", "momentum"}
    auto = load_spec(ROOT / "search_spaces/auto_pgd.yaml")
    labels = auto.labels()
    for key in ("model.num_layers", "model.tied", "model.layer", "training.optimizer", "training.lr",
                "training.scheduler", "training.loss"):
        assert key in labels
    layer = auto.space["model.layer"]
    assert set(layer.options) == {"step", "signed", "subspace", "subspace_momentum", "momentum", "hybrid"}
    assert auto.space["model.num_layers"].low == 2 and auto.space["model.num_layers"].high == 12
    family = load_spec(ROOT / "search_spaces/algorithm_family.yaml")
    assert isinstance(family.space["family"], D.ConditionalDim) and not family.space["family"].assign


@pytest.mark.parametrize("change, fragment", [
    ({"space/model.num_layers": {"type": "int", "low": 6, "high": 2}}, "space.model.num_layers: high must be > low"),
    ({"space/model.num_layers": {"type": "int", "low": 6, "high": 6}}, "a fixed value belongs in base"),
    ({"space/training.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "space.training.lr: a log range needs low > 0"),
    ({"space/training.lr": {"type": "float", "low": 0.1, "high": 0.1}}, "high must be > low"),
    ({"space/model.tied": {"type": "categorical", "values": []}}, "space.model.tied.values"),
    ({"space/model.tied": {"type": "bool"}}, "space.model.tied"),
    ({"space/model.num_layers": {"type": "int", "low": 2, "high": 6, "step": 2}}, "space.model.num_layers.step: Extra inputs"),
    ({"budget/num_samples": 4}, "budget: num_samples (4) must exceed n_initial_points (4)"),
    ({"budget/num_samples": "many"}, "budget.num_samples: Input should be a valid integer"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"space/model.num_layer": {"type": "int", "low": 2, "high": 6}}, "space.model.num_layer: value 2 gives an invalid experiment"),
    ({"space/model.num_layers": {"type": "int", "low": 2, "high": 300}}, "space.model.num_layers: value 300"),
    ({"space/model.layer": {"type": "categorical", "values": ["signed", "lista"]}}, "value 'lista' gives an invalid"),
    ({"resources/gpu": 1.5}, "resources: gpu must be a fraction"),
])
def test_invalid_specs_name_file_key_and_value(change, fragment):
    with pytest.raises(SpaceError) as err:
        parse_spec(_spec(**change), "spaces/x.yaml")
    assert "spaces/x.yaml" in str(err.value)
    assert fragment in str(err.value), str(err.value)


def test_random_search_may_use_a_budget_below_the_tpe_startup():
    spec = parse_spec(_spec(**{"budget/num_samples": 3, "budget/algorithm": "random"}))
    assert spec.budget.num_samples == 3


def test_load_spec_errors_and_overrides(tmp_path):
    with pytest.raises(SpaceError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_spec(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(MINIMAL))
    a = load_spec(good)
    b = load_spec(good, ["budget.num_samples=30"])
    assert b.budget.num_samples == 30
    assert a.sha256 != b.sha256 and len(a.sha256) == 64
    assert load_spec(good).sha256 == a.sha256          # canonical: same file, same hash
    assert "(with --set overrides)" in b.origin


def test_conditional_space_views_agree():
    spec = load_spec(ROOT / "search_spaces/auto_pgd.yaml")
    from hyperopt.pyll import stochastic
    seen_layers = set()
    for i in range(40):
        sample = stochastic.sample(spec.hyperopt_space(), rng=np.random.default_rng(i))
        params = spec.flatten(sample)
        cfg = spec.experiment(params)                      # every sampled point is a valid experiment
        seen_layers.add(cfg.model.layer)
        assert cfg.model.layer == params["model.layer"]
        assert 2 <= cfg.model.num_layers <= 12
        vals = spec.to_vals(params)
        active = {k for k, v in vals.items() if v}
        assert active == set(params)                       # inactive branches carry []
        if params["model.layer"] == "signed" and params["model.layer/signed/step_init"] == "chebyshev":
            assert cfg.model.step_init == "chebyshev"
    assert seen_layers == {"step", "signed", "subspace", "subspace_momentum", "momentum", "hybrid"}


def test_points_outside_a_space_have_no_vals():
    spec = load_spec(ROOT / "search_spaces/auto_pgd.yaml")
    from hyperopt.pyll import stochastic
    params = spec.flatten(stochastic.sample(spec.hyperopt_space(), rng=np.random.default_rng(0)))
    assert spec.to_vals(params) is not None
    for label, bad in [("model.num_layers", 40), ("training.optimizer", "lbfgs"), ("model.layer", "lista"),
                       ("model.tied", 1)]:
        assert spec.to_vals({**params, label: bad}) is None, label
    missing = dict(params)
    missing.pop("training.lr")
    assert spec.to_vals(missing) is None


def test_family_conditional_sets_the_algorithm():
    spec = load_spec(ROOT / "search_spaces/algorithm_family.yaml")
    base = {"model.num_layers": 4, "training.lr": 0.01}
    cfg = spec.experiment({**base, "family": "nesterov", "family/nesterov/model.step_init": 1.0,
                           "family/nesterov/model.momentum_init": 0.3})
    assert (cfg.model.layer, cfg.model.extrapolation, cfg.model.momentum_init) == ("momentum", "nesterov", 0.3)
    cfg = spec.experiment({**base, "family": "signed_pgd"})
    assert cfg.model.layer == "signed" and cfg.model.step_init == "chebyshev"

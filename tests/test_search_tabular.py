"""The tabular search benchmark's pieces without training: enumeration of discrete spaces, the table
cache's identity checks, paired seeding of TPE and random search, Optuna's TPE behind the same
contract, the treatment of running trials, each warm-start transfer method's first suggestions, the
simulation clock and the benchmark's statistics."""
import json
import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autounfold.errors import SpaceError
from autounfold.search.benchmark import paired, reversed_table, sign_test, summarize
from autounfold.search.history import History
from autounfold.search.searchers import LiarAlgo, make_searcher, spearman, top_configurations
from autounfold.search.simulate import simulate, trials_to, with_budget
from autounfold.search.tabular import (KIND, Table, TableError, _header, enumerate_space, load_table, params_key,
                                       table_sha256)
from autounfold.spaces import load_spec, parse_spec

FLAGSHIP = "search_spaces/tabular/auto_pgd_k5.yaml"


@pytest.fixture(scope="module")
def spec():
    return load_spec(FLAGSHIP)


def _table(spec, f, seconds=lambda c: 1.0):
    rows = [{"key": params_key(c), "params": json.dumps(c, sort_keys=True), "replicate": 0, "objective": f(c),
             "trial_seconds": seconds(c), "status": "ok"} for c in enumerate_space(spec.space)]
    return Table(spec, rows)


def smooth(c):
    """A synthetic objective with structure TPE can learn (best: 5 signed layers, adam, lr 0.01)."""
    return (99.0 + 0.1 * c["model.num_layers"] - 0.3 * abs(math.log10(c["training.lr"]) + 2)
            + 0.2 * (c["model.layer"] == "signed") + 0.1 * (c["training.optimizer"] == "adam")
            + 0.01 * (c["training.loss"] == "end_to_end"))


def test_enumeration_is_the_full_factorial_of_the_shipped_discrete_spaces(spec):
    configs = enumerate_space(spec.space)
    assert len(configs) == 4 * 4 * 2 * 5 * 2
    assert len({params_key(c) for c in configs}) == len(configs)
    assert all(spec.to_vals(c) is not None for c in configs)            # every one lies in the space
    assert len(enumerate_space(load_spec("search_spaces/tabular/lista_k16.yaml").space)) == 4 * 6 * 2 * 3 * 2
    # a conditional's sub-space is enumerated inside its own branch only
    nested = parse_spec({"name": "n", "space": {"model.layer": {"type": "conditional", "options": {
        "signed": {"set": {"model.step_init": "chebyshev"}},
        "momentum": {"set": {"model.step_init": 1.0},
                     "space": {"model.momentum_init": {"type": "categorical", "values": [0.0, 0.5, 0.9]}}}}}}})
    assert len(enumerate_space(nested.space)) == 1 + 3


def test_a_float_range_is_refused_with_its_label():
    with pytest.raises(TableError, match="'training.lr' is a float range"):
        enumerate_space(load_spec("search_spaces/auto_pgd.yaml").space)


def test_table_sha_ignores_the_budget_and_nothing_else(spec):
    assert table_sha256(with_budget(spec, algorithm="random", num_samples=99)) == table_sha256(spec)
    assert table_sha256(with_budget(spec, seed=1)) != table_sha256(spec)      # the seed picks the shards
    other = load_spec(FLAGSHIP, ["base.problem.channel.angular_spread_deg=40.0"])
    assert table_sha256(other) != table_sha256(spec)


def _write(path, spec_for_header, rows):
    t = pa.table({"key": [r["key"] for r in rows], "params": [r["params"] for r in rows],
                  "replicate": [0] * len(rows), "objective": [r["objective"] for r in rows],
                  "trial_seconds": [1.0] * len(rows)})
    pq.write_table(t.replace_schema_metadata({k: str(v) for k, v in _header(spec_for_header).items()}), path)


def test_a_table_of_another_spec_is_refused_not_reused(spec, tmp_path):
    rows = _table(spec, smooth).rows
    path = tmp_path / "t.parquet"
    _write(path, spec, rows)
    assert load_table(path, spec).lookup(json.loads(rows[3]["params"])) == rows[3]["objective"]
    shifted = load_spec(FLAGSHIP, ["base.problem.channel.angular_spread_deg=40.0"])
    with pytest.raises(TableError, match="built from another spec"):
        load_table(path, shifted)
    before = path.read_bytes()
    # build_table refuses too (before Ray is touched) and leaves the file as it was
    from autounfold.search.tabular import build_table
    (tmp_path / "u.rows.jsonl").write_text(json.dumps(_header(spec)) + "\n")
    with pytest.raises(TableError, match="built from another spec"):
        build_table(shifted, tmp_path / "u.parquet")
    assert path.read_bytes() == before and not (tmp_path / "u.parquet").exists()
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1]}), plain)
    with pytest.raises(TableError, match=KIND):
        load_table(plain, spec)


def test_tpe_and_random_share_the_random_start_up_at_the_same_seed(spec):
    t = _table(spec, smooth)
    tpe = simulate(with_budget(spec, algorithm="tpe", seed=11), t, 14)
    rnd = simulate(with_budget(spec, algorithm="random", seed=11), t, 14)
    n0 = spec.budget.n_initial_points
    assert tpe.params[:n0] == rnd.params[:n0]                       # paired start-up
    assert tpe.params[n0:] != rnd.params[n0:]                       # then TPE models, random does not
    other = simulate(with_budget(spec, algorithm="random", seed=12), t, 14)
    assert other.params[:n0] != rnd.params[:n0]


def test_the_searcher_seed_changes_the_suggestions_not_the_data(spec):
    """budget.searcher_seed reseeds the searcher only: the spec's seed (validation set, shards) and the
    table the search runs on stay the same; unset, the searcher follows the spec's seed."""
    t = _table(spec, smooth)
    a = simulate(with_budget(spec, searcher_seed=21), t, 5)
    b = simulate(with_budget(spec, searcher_seed=22), t, 5)
    assert a.params != b.params
    assert with_budget(spec, searcher_seed=21).seed == spec.seed
    assert table_sha256(with_budget(spec, searcher_seed=21)) == table_sha256(spec)
    same = simulate(with_budget(spec, seed=21), t, 5)              # no searcher seed: the spec's seed
    assert same.params == a.params
    for alg in ("tpe", "optuna_tpe"):
        x = simulate(with_budget(spec, algorithm=alg, searcher_seed=5), t, 4)
        y = simulate(with_budget(spec, algorithm=alg, searcher_seed=5), t, 4)
        assert x.params == y.params                                 # replayable


def test_tpe_beats_random_on_a_learnable_table(spec):
    """Behaviour, not a number: over 8 paired seeds TPE reaches the top of a structured table (2 of
    320 configurations within the target) in fewer trials than random search in most seeds, and in
    more trials in at most one (a seed where both hit it during the shared start-up is a tie)."""
    t = _table(spec, smooth)
    target = t.best - 0.05
    wins = losses = 0
    for s in range(8):
        a = trials_to(simulate(with_budget(spec, algorithm="tpe", seed=s), t, 40).values, target) or 41
        b = trials_to(simulate(with_budget(spec, algorithm="random", seed=s), t, 40).values, target) or 41
        wins, losses = wins + (a < b), losses + (a > b)
    assert wins >= 4 and losses <= 1, (wins, losses)


def test_optuna_tpe_suggests_nested_configs_of_a_conditional_space_and_learns_points():
    spec = load_spec("search_spaces/auto_pgd.yaml", ["budget.algorithm=optuna_tpe", "budget.num_samples=20"])
    searcher, counts = make_searcher(spec)
    seen = []
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        params = spec.flatten(config)                               # what the trainable does
        assert spec.to_vals(params) is not None
        searcher.on_trial_complete(f"t{i}", {"objective": float(i)})
        seen.append(params["model.layer"])
    # a point evaluated elsewhere (a warm start) enters Optuna's study, conditionals included
    point = {"model.num_layers": 4, "model.tied": False, "training.optimizer": "adam", "training.lr": 0.01,
             "training.scheduler": "cosine", "training.loss": "end_to_end", "model.layer": "momentum",
             "model.layer/momentum/model.step_init": 0.5, "model.layer/momentum/model.momentum_init": 0.3,
             "model.layer/momentum/model.gradient_scaling": "auto"}
    searcher.add_evaluated_point(point, 99.0)
    done = [t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 7 and done[-1].params["model.layer/momentum/model.momentum_init"] == 0.3
    with pytest.raises(ValueError, match="outside the search space"):
        searcher.add_evaluated_point({**point, "model.num_layers": 99}, 1.0)


def test_budget_names_are_validated_against_their_tables():
    with pytest.raises(SpaceError, match="algorithm 'bohb' is not one of: tpe, random, optuna_tpe"):
        load_spec(FLAGSHIP, ["budget.algorithm=bohb"])
    with pytest.raises(SpaceError, match="transfer 'magic' is not one of: history, replay, gated"):
        load_spec(FLAGSHIP, ["budget.transfer=magic"])
    with pytest.raises(SpaceError, match="constant_liar 'mean' is hyperopt's"):
        load_spec(FLAGSHIP, ["budget.algorithm=optuna_tpe", "budget.constant_liar=mean"])


class _Docs:
    def __init__(self, docs):
        self._trials = docs


def test_liar_modes_change_what_tpe_sees_of_running_trials_and_restore_it():
    done = [{"tid": i, "result": {"status": "ok", "loss": float(i)}} for i in range(4)]
    running = [{"tid": 9, "result": {"status": "new"}}]
    trials = _Docs(done + running)
    seen = {}

    def algo(new_ids, domain, t, seed):
        seen["docs"] = [(d["tid"], d["result"].get("loss")) for d in t._trials]
        return []

    LiarAlgo(algo, "worst")(None, None, trials, 0)
    assert seen["docs"][-1] == (9, None)                            # hyperopt's own: no loss = +inf
    LiarAlgo(algo, "mean")(None, None, trials, 0)
    assert seen["docs"][-1] == (9, 1.5)                             # the mean of the finished losses
    LiarAlgo(algo, "none")(None, None, trials, 0)
    assert [tid for tid, _ in seen["docs"]] == [0, 1, 2, 3]         # left out
    assert trials._trials[-1] == {"tid": 9, "result": {"status": "new"}}       # restored every time


def _history(spec, n=30, seed=0, f=smooth):
    configs = enumerate_space(spec.space)
    random.Random(seed).shuffle(configs)
    return History([(c, f(c)) for c in configs[:n]], "test")


def test_replay_suggests_the_earlier_top_configurations_first(spec):
    hist = _history(spec)
    top = [p for p, _ in top_configurations(spec, hist, 5)]
    assert [smooth(p) for p in top] == sorted((v for _, v in hist.points), reverse=True)[:5]
    run = simulate(with_budget(spec, transfer="replay", seed=3), _table(spec, smooth), 8, history=hist)
    assert run.params[:5] == top
    assert run.decision == {"method": "replay", "replayed": 5, "inserted": 0}


def test_history_insertion_makes_the_first_suggestion_model_based(spec):
    t = _table(spec, smooth)
    hist = _history(spec)
    cold = simulate(with_budget(spec, seed=3), t, 1)
    warm = simulate(with_budget(spec, seed=3, transfer="history"), t, 1, history=hist)
    assert warm.params[0] != cold.params[0]
    # with 30 earlier points TPE is past its start-up: its first pick is on the good side of the history
    assert smooth(warm.params[0]) > sorted(v for _, v in hist.points)[len(hist.points) // 2]


def test_gated_transfer_inserts_the_history_only_when_the_replay_ranks_like_it(spec):
    hist = _history(spec)
    same = simulate(with_budget(spec, transfer="gated", seed=3), _table(spec, smooth), 8, history=hist)
    assert same.decision["gate"] == "open" and same.decision["inserted"] == len(hist.points) - 5
    assert same.decision["rank_correlation"] == pytest.approx(1.0)
    flipped = reversed_table(_table(spec, smooth))                  # the new task ranks the other way round
    other = simulate(with_budget(spec, transfer="gated", seed=3), flipped, 8, history=hist)
    assert other.decision["gate"] == "closed" and other.decision["inserted"] == 0
    assert other.decision["rank_correlation"] < 0


def test_concurrency_runs_on_the_tables_clock(spec):
    t = _table(spec, smooth, seconds=lambda c: float(c["model.num_layers"]))
    one = simulate(with_budget(spec, algorithm="random", seed=2), t, 12, concurrency=1)
    assert one.finish_s == pytest.approx(list(__import__("itertools").accumulate(p["model.num_layers"] for p in one.params)))
    four = simulate(with_budget(spec, algorithm="random", seed=2), t, 12, concurrency=4)
    assert sorted(map(json.dumps, four.params)) == sorted(map(json.dumps, one.params))   # same random suggestions
    assert four.finish_s == sorted(four.finish_s) and four.finish_s[-1] < one.finish_s[-1]
    with pytest.raises(ValueError, match="concurrency"):
        simulate(spec, t, 3, concurrency=0)


def test_statistics():
    assert sign_test([1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7]) == {"a_better": 6, "b_better": 0, "ties": 0, "p": 2 / 64}
    s = summarize([3, None, 5, 7], cap=10)
    assert (s["reached"], s["median"], s["q3"]) == (3, 6.0, 8.0)       # never = 11
    p = paired([1, 1, 1, 1, 1, 1, 1, 1], [None] * 8, cap=5)
    assert p["a_better"] == 8 and p["p"] < 0.01 and p["wilcoxon_p"] < 0.01
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0

"""Search pieces without a Ray cluster: trial seeding and replay, failures, resume of training,
warm-start insertion into TPE, the trial table and the Pareto front."""
import json

import numpy as np
import pytest
import torch

from autounfold.build import build_model
from autounfold.config import parse_config
from autounfold.search import results as R
from autounfold.search.history import History, read_history
from autounfold.search.searchers import make_searcher
from autounfold.search.trial import objective_value, run_trial, shard_purpose
from autounfold.spaces import parse_spec
from autounfold.training import train

SPEC = {
    "name": "unit",
    "base": {"problem": {"channel": {"n_tx": 8, "n_rx": 4}},
             "training": {"steps": 6, "batch_size": 16, "validate_every": 3, "validation_batch": 32}},
    "objective": {"depth_penalty": 0.01, "latency_batch": 8},
    "budget": {"num_samples": 12, "n_initial_points": 3, "algorithm": "tpe", "transfer": "history"},   # hyperopt internals
    "seed": 5,
    "space": {
        "model.num_layers": {"type": "int", "low": 2, "high": 6},
        "training.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "model.layer": {"type": "conditional", "options": {
            "signed": {"set": {"model.step_init": "chebyshev"}},
            "momentum": {"set": {"model.step_init": 1.0}, "space": {
                "model.momentum_init": {"type": "float", "low": 0.0, "high": 0.9}}}}},
    },
}
PARAMS = {"model.num_layers": 3, "training.lr": 0.02, "model.layer": "signed"}


@pytest.fixture
def spec():
    return parse_spec(json.loads(json.dumps(SPEC)), "unit.yaml")


def _run(spec, params, trial_id):
    reports = []
    final = run_trial(spec, params, trial_id, lambda m, state, model_dir: reports.append((m, state, model_dir)))
    return final, reports


def test_trials_train_on_their_own_shard_and_replay_exactly(spec):
    a1, rep = _run(spec, PARAMS, "aaaa")
    a2, _ = _run(spec, PARAMS, "aaaa")
    b, _ = _run(spec, PARAMS, "bbbb")
    assert a1["status"] == "ok" and a1["shard"] == shard_purpose("aaaa") != b["shard"]
    assert a1["val_score"] == a2["val_score"] and a1["step_0"] == a2["step_0"]     # replay: bit for bit
    assert a1["step_0"] != b["step_0"]                                                # other shard, other weights
    # the shards themselves differ, the validation set is shared
    cfg = spec.experiment(PARAMS)
    problem = build_model(cfg).problem
    from autounfold.seeding import generator
    ha = problem.sample(4, generator(spec.seed, shard_purpose("aaaa"), 0, 0)).H
    hb = problem.sample(4, generator(spec.seed, shard_purpose("bbbb"), 0, 0)).H
    assert not torch.equal(ha, hb)
    # every validation is reported with a checkpoint state, the final report with a model directory
    intermediate = [r for r in rep if not r[0]["done"]]
    assert len(intermediate) == 3 and all(state is not None for _, state, _ in intermediate)
    final_m, final_state, model_dir = rep[-1]
    assert final_m["done"] and final_state is None and model_dir is not None
    assert final_m["objective"] == pytest.approx(final_m["val_score"] - 0.01 * 3)


def test_a_failed_trial_reports_why_and_scores_worst(spec, monkeypatch):
    final, rep = _run(spec, {**PARAMS, "model.num_layers": 500}, "cccc")      # config error
    assert final["status"] == "failed" and "num_layers" in final["reason"]
    assert final["objective"] == spec.objective.worst and rep[-1][0] is final

    import autounfold.training as training
    from autounfold.errors import TrainingError

    def diverge(*a, **k):
        raise TrainingError("non-finite training loss (nan) at step 3")
    monkeypatch.setattr(training, "train", diverge)
    final, _ = _run(spec, PARAMS, "dddd")
    assert final["status"] == "failed" and final["reason"] == "TrainingError: non-finite training loss (nan) at step 3"

    def bug(*a, **k):
        return {}["missing"]
    monkeypatch.setattr(training, "train", bug)
    final, _ = _run(spec, PARAMS, "eeee")                   # a bug is recorded with where it happened
    assert final["status"] == "failed" and final["reason"].startswith("KeyError") and "test_search_units.py" in final["reason"]


def test_objective_penalties(spec):
    assert objective_value(spec, 99.0, 4) == pytest.approx(99.0 - 0.04)
    spec.objective.latency_budget_ms = 5.0
    assert objective_value(spec, 99.0, 4, latency_ms=6.0) == pytest.approx(99.0 - 0.04 - 100.0)
    assert objective_value(spec, 99.0, 4, latency_ms=4.0) == pytest.approx(99.0 - 0.04)


def test_training_resumes_from_a_snapshot_to_the_same_weights():
    cfg = parse_config({"problem": {"channel": {"n_tx": 8, "n_rx": 4}}, "model": {"num_layers": 3, "layer": "momentum", "step_init": 1.0},
                        "training": {"steps": 12, "batch_size": 16, "validate_every": 4, "validation_batch": 32,
                                     "loss": "sequential"}})
    full = build_model(cfg)
    snaps = []
    train(full, cfg.training, seed=1, progress=False, on_validation=lambda e, snap: snaps.append((e["step"], snap())))
    assert [s for s, _ in snaps] == [0, 4, 8, 12]
    resumed = build_model(cfg)
    res = train(resumed, cfg.training, seed=1, progress=False, resume=snaps[1][1])    # "crash" after step 4
    for (k, v), (k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, v2), k
    assert [h["step"] for h in res.history] == [0, 4, 8, 12]


def test_warm_start_history_changes_the_first_suggestions(spec):
    def searcher(history=None):
        return make_searcher(spec, history, n_initial_points=3)

    cold, cold_counts = searcher()
    assert cold_counts == {"inserted": 0, "dropped": 0}
    cold_first = [spec.flatten(cold.suggest(f"c{i}")) for i in range(6)]
    # history: deep signed networks with a small lr were good, the rest bad
    rng = np.random.default_rng(0)
    points = []
    for i in range(30):
        layer = "signed" if i % 2 == 0 else "momentum"
        p = {"model.num_layers": int(rng.integers(2, 7)), "training.lr": float(np.exp(rng.uniform(np.log(1e-3), np.log(0.1)))),
             "model.layer": layer}
        if layer == "momentum":
            p["model.layer/momentum/model.momentum_init"] = float(rng.uniform(0, 0.9))
        good = layer == "signed" and p["model.num_layers"] >= 5
        points.append((p, 99.9 if good else 90.0))
    points.append(({"model.num_layers": 40, "training.lr": 0.01, "model.layer": "signed"}, 50.0))   # outside
    warm, counts = searcher(History(points, "test"))
    assert counts == {"inserted": 30, "dropped": 1, "method": "history"}
    warm_first = [spec.flatten(warm.suggest(f"w{i}")) for i in range(6)]
    assert warm_first != cold_first
    # TPE is past its random start-up at once and proposes the good region
    good = sum(p["model.layer"] == "signed" and p["model.num_layers"] >= 5 for p in warm_first)
    good_cold = sum(p["model.layer"] == "signed" and p["model.num_layers"] >= 5 for p in cold_first)
    assert good >= 4 and good > good_cold


def test_trial_table_round_trip_and_pareto(spec, tmp_path):
    rows = [
        R.trial_row("t1", PARAMS, {"status": "ok", "objective": 99.0, "val_score": 99.0, "latency_ms": 5.0, "num_layers": 3}, 3, None, spec),
        R.trial_row("t2", PARAMS, {"status": "ok", "objective": 99.5, "val_score": 99.5, "latency_ms": 9.0, "num_layers": 5}, 3, None, spec),
        R.trial_row("t3", PARAMS, {"status": "ok", "objective": 98.0, "val_score": 98.0, "latency_ms": 7.0, "num_layers": 4}, 3, None, spec),
        R.trial_row("t4", PARAMS, {"status": "running", "objective": 97.0, "val_score": 97.0, "num_layers": 3}, 1, None, spec),
        R.trial_row("t5", PARAMS, {}, 0, "RayTaskError: worker died", spec),
        R.trial_row("t6", PARAMS, {}, 0, None, spec),       # interrupted before its first report, no error
    ]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "unfinished", "error", "unfinished"]
    asha = parse_spec({**json.loads(json.dumps(SPEC)), "budget": {"num_samples": 12, "n_initial_points": 3,
                                                                  "asha": {"grace_period": 1}}})
    # with ASHA, a trial that ended mid-way was stopped by it
    assert R.trial_row("t4", PARAMS, {"status": "running", "objective": 97.0}, 1, None, asha)["status"] == "stopped"
    assert rows[4]["objective"] == spec.objective.worst and "worker died" in rows[4]["reason"]
    df = R.trial_table(rows, spec.objective)
    assert list(df.trial_id[:2]) == ["t2", "t1"]
    assert list(R.pareto_front(df).trial_id) == ["t1", "t2"]       # t3 is dominated by t1
    assert R.best_row(df, spec.objective).trial_id == "t2"
    R.write_table(df, tmp_path / "trials.parquet")
    hist = read_history(tmp_path)
    assert len(hist.points) == 3 and hist.spec_sha256 == spec.sha256      # not the unfinished, not the dead worker
    assert hist.points[0] == (PARAMS, 99.5)
    assert R.plot_pareto(df, tmp_path / "p.png", "t").stat().st_size > 1000
    md = R.leaderboard_markdown(R.leaderboard(df, 3))
    assert md.count("\n") == 5 and "t2" in md


def test_asha_scheduler_counts_validation_rounds(spec):
    from autounfold.search.runner import _scheduler
    assert _scheduler(spec) is None
    asha = parse_spec({**json.loads(json.dumps(SPEC)), "budget": {"num_samples": 12, "n_initial_points": 3,
                                                                  "asha": {"grace_period": 2, "reduction_factor": 3}}})
    sched = _scheduler(asha)
    # 6 steps validated every 3: reports at steps 3 and 6 (the step-0 report is the first), plus the final report
    assert (sched._max_t, sched._reduction_factor, sched._time_attr) == (6 // 3 + 2, 3, "training_iteration")


def test_resource_requests_are_checked_against_the_cluster(spec):
    from autounfold.errors import SearchError
    from autounfold.search.cluster import check_resources
    cpu_only = {"cpu": 2.0, "gpu": 0.0, "node_cpu": 2.0, "node_gpu": 0.0}
    assert check_resources(spec, cpu_only) == 2                      # two 1-CPU trials at a time
    gpu = parse_spec({**json.loads(json.dumps(SPEC)), "resources": {"cpu": 1, "gpu": 0.25}}, "gpu.yaml")
    with pytest.raises(SearchError, match="gpu.yaml: resources.gpu = 0.25 but the Ray cluster has no GPU"):
        check_resources(gpu, cpu_only)
    assert check_resources(gpu, {"cpu": 16.0, "gpu": 1.0, "node_cpu": 16.0, "node_gpu": 1.0}) == 4
    big = parse_spec({**json.loads(json.dumps(SPEC)), "resources": {"cpu": 4}}, "big.yaml")
    with pytest.raises(SearchError, match="resources.cpu = 4.0 but no node has more than 2 CPU"):
        check_resources(big, cpu_only)


def test_mode_min_is_one_sign_convention_everywhere(spec):
    """mode: min: the depth penalty raises the objective, failures score +1e9 and sort last, the
    leaderboard and the best row take the lowest objective, the running best follows it, and TPE's
    history stores the objective itself as hyperopt's loss."""
    data = json.loads(json.dumps(SPEC))
    data["objective"]["mode"] = "min"
    low = parse_spec(data, "min.yaml")
    assert objective_value(low, 10.0, 4) == pytest.approx(10.04) and objective_value(spec, 10.0, 4) == pytest.approx(9.96)
    assert low.objective.worst == 1e9 and spec.objective.worst == -1e9
    rows = [R.trial_row("t1", PARAMS, {"status": "ok", "objective": 5.0, "val_score": 5.0}, 1, None, low),
            R.trial_row("t2", PARAMS, {"status": "failed", "objective": low.objective.worst, "reason": "x"}, 1, None, low),
            R.trial_row("t3", PARAMS, {"status": "ok", "objective": 2.0, "val_score": 2.0}, 1, None, low),
            R.trial_row("t4", PARAMS, {}, 0, RuntimeError("worker died"), low)]
    df = R.trial_table(rows, low.objective)
    assert list(df.trial_id) == ["t3", "t1", "t2", "t4"]               # lowest first, failures and errors last
    assert R.best_row(df, low.objective).trial_id == "t3"
    assert R.leaderboard(df, 1)[0]["trial_id"] == "t3"
    assert rows[3]["reason"] == "RuntimeError: worker died" and rows[3]["objective"] == 1e9
    assert low.objective.better(2.0, 5.0) and not low.objective.better(5.0, 2.0) and low.objective.better(7.0, None)
    searcher, counts = make_searcher(low, History([(PARAMS, 3.0)], "test"), n_initial_points=3)
    assert counts == {"inserted": 1, "dropped": 0, "method": "history"}
    assert [t["result"]["loss"] for t in searcher._hpopt_trials.trials] == [3.0]     # hyperopt minimises the objective
    max_searcher, _ = make_searcher(spec, History([(PARAMS, 3.0)], "test"), n_initial_points=3)
    assert [t["result"]["loss"] for t in max_searcher._hpopt_trials.trials] == [-3.0]


def test_error_reason_is_one_text_for_exceptions_and_ray_error_text():
    assert R.error_reason(ValueError("bad lr")) == "ValueError: bad lr"
    text = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad lr"
    assert R.error_reason(text) == "ValueError: bad lr"
    assert R.error_reason(RuntimeError(text)) == "ValueError: bad lr"
    assert R.error_reason(None) == ""


def test_results_table_each_trial_once_when_tune_state_lags(spec, tmp_path):
    """At an interrupt Tune's saved state can lag the callback: a trial comes back without metrics (named
    only by its directory) or listed twice. The table still holds each trial once, under its id, with the
    callback's row where it has one, and the best trial's model comes from whichever listing kept its
    checkpoint."""
    import contextlib
    from types import SimpleNamespace

    from autounfold.search.runner import _write_results
    from autounfold.spaces.dimensions import OPTION_KEY
    config = {**PARAMS, "model.layer": {OPTION_KEY: "signed"}}           # as the searcher samples it
    ok = R.trial_row("a1b2c_00001", PARAMS, {"status": "ok", "objective": 99.0, "val_score": 99.0,
                                             "num_layers": 3, "trial_id": "a1b2c_00001"}, 3, None, spec)
    saved = tmp_path / "ckpt"
    (saved / "model").mkdir(parents=True)
    (saved / "model" / "weights.pt").write_text("w")
    checkpoint = SimpleNamespace(as_directory=lambda: contextlib.nullcontext(str(saved)))

    def res(name, metrics=None, checkpoint=None):
        return SimpleNamespace(metrics=metrics, path=str(tmp_path / "tune" / name), config=config, error=None,
                               checkpoint=checkpoint)

    def running(tid, it):
        return {"status": "running", "objective": 98.0, "val_score": 98.0, "num_layers": 3, "trial_id": tid,
                "training_iteration": it}
    d1, d2 = "trainable_a1b2c_00001_1_x=1_2026-12-05_22-00-00", "trainable_a1b2c_00002_2_x=2_2026-12-05_22-00-01"
    d3, d4 = "trainable_a1b2c_00003_3_x=3_2026-12-05_22-00-02", "trainable_9f8e7d6c_4_x=4_2026-12-05_22-00-03"
    grid = [res(d1), res(d1, dict(ok), checkpoint),           # the callback's ok trial: first without metrics
            res(d2, running("a1b2c_00002", 2)), res(d2, running("a1b2c_00002", 2)),      # listed twice
            res(d3),                                           # never reported
            res(d4), res(d4, running("9f8e7d6c", 1))]          # unseen by the callback, then with metrics
    table, best, best_model = _write_results(grid, {"a1b2c_00001": ok}, spec, tmp_path, "model")
    assert sorted(table.trial_id) == ["9f8e7d6c", "a1b2c_00001", "a1b2c_00002", d3]
    by_id = table.set_index("trial_id")
    assert by_id.loc["a1b2c_00001", "status"] == "ok" and best.trial_id == "a1b2c_00001"
    assert (best_model / "weights.pt").read_text() == "w"
    assert by_id.loc["a1b2c_00002", "status"] == by_id.loc["9f8e7d6c", "status"] == by_id.loc[d3, "status"] == "unfinished"

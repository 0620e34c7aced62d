"""A small real search: local Ray (2 CPUs), TPE, a real `mlflow server` on 127.0.0.1; and an
interrupted search resumed without re-running its finished trials."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

import autounfold
from autounfold.seeding import generator

pytestmark = pytest.mark.integration

SPEC = {
    "name": "e2e",
    "base": {"problem": {"channel": {"n_tx": 16, "n_rx": 4}},
             "training": {"steps": 40, "batch_size": 64, "validate_every": 20, "validation_batch": 128}},
    "objective": {"latency_batch": 32},
    "budget": {"num_samples": 5, "n_initial_points": 3, "max_concurrent": 2},
    "seed": 11,
    "space": {
        "model.num_layers": {"type": "int", "low": 2, "high": 5},
        "training.lr": {"type": "float", "low": 0.001, "high": 0.05, "log": True},
        "model.layer": {"type": "conditional", "options": {
            "signed": {"set": {"model.step_init": "chebyshev"}},
            "momentum": {"set": {"model.step_init": 1.0},
                         "space": {"model.momentum_init": {"type": "float", "low": 0.0, "high": 0.9}}},
            # lr far too large for a raw gradient: some of these trials may fail, the search must go on
            "step": {"set": {"model.step_init": 50.0, "model.gradient_scaling": "none"}}}},
    },
}


def test_search_end_to_end_on_local_ray_with_mlflow_server(tmp_path, mlflow_server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from mlflow import MlflowClient
    from autounfold.ops.search import search as run_search
    from autounfold.spaces import parse_spec

    data = json.loads(json.dumps(SPEC))
    data["budget"]["asha"] = {"grace_period": 1, "reduction_factor": 2}     # ASHA on: poor trials may stop early
    spec = parse_spec(data, "e2e.yaml")
    outcome = run_search(spec, tmp_path / "out", tracking_uri=mlflow_server, register="e2e_model", num_cpus=2)

    table = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert len(table) == 5 and table.trial_id.is_unique
    assert (table.spec_sha256 == spec.sha256).all()
    assert table.shard.is_unique                                   # every trial its own training shard
    assert set(table.status) <= {"ok", "failed", "stopped"}, table[["status", "reason"]]
    ok = table[table.status == "ok"]
    assert len(ok) >= 1 and ok.val_score.between(50, 100.0001).all()
    for f in ("leaderboard.md", "pareto.png", "summary.json", "search_space.yaml", "best_model/weights.pt"):
        assert (tmp_path / "out" / f).exists(), f
    assert (tmp_path / "out" / "search_space.yaml").read_text() == spec.canonical_yaml()

    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    parent = client.get_run(outcome.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["autounfold.spec_sha256"] == spec.sha256
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{outcome.run_id}'")
    assert len(children) == 5 and {c.data.tags["autounfold.trial_id"] for c in children} == set(table.trial_id)
    finished = [c for c in children if c.data.tags.get("autounfold.status") == "ok"]
    assert finished and all("val_score" in c.data.metrics and "step_0" in c.data.metrics for c in finished)
    history = client.get_metric_history(finished[0].info.run_id, "val_score")
    assert len(history) >= 3                                       # per-validation metrics, not only the last
    names = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"trials.parquet", "search_space.yaml", "leaderboard.md", "pareto.png", "summary.json"} <= names

    # the registered challenger is the best trial's model, loadable from the server
    best = ok.sort_values("objective", ascending=False).iloc[0]
    mv = client.get_model_version_by_alias("e2e_model", "challenger")
    assert mv.tags["autounfold.search_run_id"] == outcome.run_id
    registered = autounfold.load("models:/e2e_model@challenger", tracking_uri=mlflow_server)
    local = autounfold.load(tmp_path / "out" / "best_model")
    assert registered.num_layers == int(best.num_layers)
    inst = local.problem.sample(16, generator(0, "check"))
    with torch.no_grad():
        assert torch.equal(registered.run(inst), local.run(inst))

    # re-search after a channel shift, warm-started from the first search's MLflow run id
    data["base"]["problem"]["channel"]["angular_spread_deg"] = 40.0
    data["budget"] = {"num_samples": 3, "algorithm": "random", "max_concurrent": 2, "transfer": "history"}
    shifted = parse_spec(data, "e2e-shifted.yaml")
    again = run_search(shifted, tmp_path / "out2", tracking_uri=mlflow_server, warm_start=outcome.run_id,
                       register=None, num_cpus=2)
    usable = int(table.status.isin(["ok", "stopped", "failed"]).sum())
    assert again.summary["warm_start_counts"] == {"inserted": usable, "dropped": 0, "method": "history"}
    assert client.get_run(again.run_id).data.tags["autounfold.warm_start"] == outcome.run_id
    assert len(again.table) == 3


def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path):
    spec = json.loads(json.dumps(SPEC))
    spec["name"] = "resume"
    spec["base"]["training"].update(steps=300, validate_every=100)
    spec["budget"] = {"num_samples": 5, "algorithm": "random", "max_concurrent": 2}
    spec["space"]["model.layer"]["options"].pop("step")
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autounfold.cli", "search", str(path), "--out", str(out), "--no-track", "--cpus", "2"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}

    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.time() + 240
            while "[1/5]" not in log.read_text():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            os.kill(proc.pid, signal.SIGINT)                  # Ctrl+C: Tune saves its state and stops
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    first = pd.read_parquet(out / "trials.parquet")
    done_first = set(first[first.status == "ok"].trial_id)
    assert rc == 130, log.read_text()[-3000:]
    assert 1 <= len(done_first) < 5
    # trials in flight at the interrupt are recorded as unfinished, none as failed; an interrupt that lands
    # between trials (the running ones done, the next not yet started: a race a loaded machine hits) leaves none
    assert (first[first.status != "ok"].status == "unfinished").all()

    second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    final = pd.read_parquet(out / "trials.parquet")
    assert len(final) == 5 and (final.status == "ok").all() and final.trial_id.is_unique
    rerun = [t for t in done_first if f"] {t} " in second.stdout]
    assert rerun == [], f"finished trials ran again: {rerun}"
    before = first.set_index("trial_id").loc[sorted(done_first), "val_score"]
    after = final.set_index("trial_id").loc[sorted(done_first), "val_score"]
    pd.testing.assert_series_equal(before, after)

    with pytest.raises(subprocess.CalledProcessError) as err:      # same directory, no --resume: refused
        subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=120)
    assert "already holds a search; pass --resume" in err.value.stderr


def test_optuna_tpe_minimising_with_a_gated_warm_start_through_ray_tune(tmp_path):
    """``budget.algorithm: optuna_tpe``, ``objective.mode: min`` and ``budget.transfer: gated`` inside a
    real Tune run. The trial table, the leaderboard, the summary's best and best_model all agree that
    the lowest objective wins; the earlier search's best (lowest) configurations are trained first
    (replayed); the conditional space's configurations reach the trainable in the one nested form, and
    Tune's searcher checkpoints (cloudpickle of the wrapper and the Optuna study) do not break the search."""
    from autounfold.search import run_search
    from autounfold.search.history import read_history
    from autounfold.spaces import parse_spec

    data = json.loads(json.dumps(SPEC))
    data["budget"] = {"num_samples": 5, "n_initial_points": 2, "max_concurrent": 2, "algorithm": "optuna_tpe"}
    data["objective"] = {"mode": "min", "measure_latency": False}
    # minimising the score steers TPE to the worst configurations: leave out the option meant to fail
    data["space"]["model.layer"]["options"].pop("step")
    first = run_search(parse_spec(data, "first.yaml"), tmp_path / "first", num_cpus=2)
    table = first.table
    ok = table[table.status == "ok"]
    assert len(table) == 5 and ok.params.nunique() >= 4, table[["status", "reason"]]   # 3 lowest != 3 highest
    assert list(table.objective) == sorted(table.objective)                           # ascending: best first
    lowest = ok.loc[ok.objective.idxmin()]
    assert first.summary["best"]["trial_id"] == lowest.trial_id == table.trial_id.iloc[0]
    assert lowest.trial_id in (tmp_path / "first" / "leaderboard.md").read_text().splitlines()[2]
    assert autounfold.load(tmp_path / "first" / "best_model").num_layers == int(lowest.num_layers)

    data["budget"].update(transfer="gated", transfer_top_k=3)
    data["base"]["problem"]["channel"]["angular_spread_deg"] = 40.0
    hist = read_history(tmp_path / "first")
    warm = run_search(parse_spec(data, "warm.yaml"), tmp_path / "warm", history=hist, warm_start="first", num_cpus=2)
    assert warm.summary["warm_start_counts"]["replay"] == 3
    earlier_top = ok.sort_values("objective", ascending=True).params.head(3)      # the three lowest
    assert set(earlier_top) <= set(warm.table.params)              # the replayed configurations were trained
    assert len(warm.table) == 5 and (warm.table.status != "error").all()

"""The platform on the multi-user downlink problem, with the real components: a TPE search of the
shipped mu_miso space on local Ray with a real `mlflow server`, registration of its best, loading
it from the registry, and a canary promotion scored as % of the reference."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

import autounfold

pytestmark = pytest.mark.integration

OVERRIDES = ["budget.num_samples=4", "budget.n_initial_points=2", "budget.max_concurrent=2",
             "base.problem.n_users=4", "base.problem.channel.n_tx=8", "base.training.steps=20",
             "base.training.batch_size=64", "base.training.validate_every=10", "base.training.validation_batch=64",
             "objective.latency_budget_ms=null"]


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "autounfold.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def test_search_register_load_and_promote_mu_miso(tmp_path, mlflow_server):
    out = tmp_path / "search"
    sets = sum((["--set", s] for s in OVERRIDES), [])
    r = _cli("search", "search_spaces/mu_miso.yaml", "--out", str(out), "--cpus", "2", "--tracking-uri", mlflow_server,
             "--register", "mu_model", *sets)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = pd.read_parquet(out / "trials.parquet")
    assert len(table) == 4 and table.trial_id.is_unique
    ok = table[table.status == "ok"]
    assert len(ok) >= 1 and ok.val_score.between(0, 100.0001).all(), table[["status", "reason"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["objective"] == pytest.approx(ok.objective.max())

    model = autounfold.load("models:/mu_model@challenger", tracking_uri=mlflow_server)
    assert model.problem.name == "mu_miso" and (model.problem.n_tx, model.problem.n_users) == (8, 4)
    inst = model.problem.sample(7, 0)
    with torch.no_grad():
        V = model(inst.H, inst.noise_var)
    assert V.shape == (7, 8, 4) and model.problem.feasible(V, inst).all()

    # the first promotion makes the challenger champion; the canary runs on the model's own problem
    r = _cli("promote", "mu_model", "--tracking-uri", mlflow_server, "--batches", "20", "--batch-size", "16")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    champion = autounfold.load("models:/mu_model@champion", tracking_uri=mlflow_server)
    assert champion.problem.name == "mu_miso"

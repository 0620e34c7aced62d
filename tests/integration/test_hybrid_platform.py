"""The platform on wideband hybrid precoding, with the real components: a TPE search of the shipped
hybrid space on local Ray with a real `mlflow server`, registration of its best (with the drift
baseline and the two-output MLflow signature), loading it from the registry, a canary promotion,
the drift monitor on a synthetic angular-spread shift, and torch.export of the registered version."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

import autounfold
from autounfold.deploy import load_torch_export

pytestmark = pytest.mark.integration

OVERRIDES = ["budget.num_samples=3", "budget.n_initial_points=2", "budget.max_concurrent=2",
             "base.problem.n_antennas=8", "base.problem.n_rf=4", "base.problem.n_bands=2", "base.problem.n_users=2",
             "base.model.step_init=0.5", "base.training.steps=6", "base.training.batch_size=16",
             "base.training.validate_every=3", "base.training.validation_batch=32", "objective.latency_budget_ms=null"]


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "autounfold.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def test_search_register_promote_monitor_and_export_hybrid(tmp_path, mlflow_server):
    out = tmp_path / "search"
    sets = sum((["--set", s] for s in OVERRIDES), [])
    r = _cli("search", "search_spaces/hybrid.yaml", "--out", str(out), "--cpus", "2", "--tracking-uri", mlflow_server,
             "--register", "hybrid_model", *sets)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = pd.read_parquet(out / "trials.parquet")
    assert len(table) == 3 and table.trial_id.is_unique
    ok = table[table.status == "ok"]
    assert len(ok) >= 1 and ok.val_score.between(50, 100.0001).all(), table[["status", "reason"]]

    model = autounfold.load("models:/hybrid_model@challenger", tracking_uri=mlflow_server)
    pr = model.problem
    assert pr.name == "hybrid_precoding" and (pr.n_antennas, pr.n_rf, pr.n_bands, pr.n_users) == (8, 4, 2, 2)
    inst = pr.sample(7, 0)
    with torch.no_grad():
        W_a, W_d = model(inst.H, inst.noise_var)
    assert W_a.shape == (7, 8, 4) and W_d.shape == (7, 2, 4, 2) and pr.feasible(pr.pack(W_a, W_d), inst).all()

    r = _cli("promote", "hybrid_model", "--tracking-uri", mlflow_server, "--batches", "10", "--batch-size", "16")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    # the monitor on the champion: a step from 10 to 40 deg of cluster angular spread at window 1
    events = tmp_path / "events.jsonl"
    r = _cli("monitor", "--model", "hybrid_model@champion", "--tracking-uri", mlflow_server, "--window", "256",
             "--source", "synthetic:angular_spread=10->40,windows=3,at=1", "--events", str(events), "--no-research",
             "--set", "trigger_patience=1", "--set", "baseline_channels=512")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = [json.loads(line) for line in events.read_text().splitlines()]
    triggers = [e for e in log if e["kind"] == "trigger"]
    assert len(triggers) == 1 and triggers[0]["window"] == 1, log

    # torch.export of the registered version: two real-valued outputs, equal to the eager model
    pt2 = tmp_path / "hybrid.pt2"
    r = _cli("export", "models:/hybrid_model@champion", "--out", str(pt2), "--format", "torch.export",
             "--tracking-uri", mlflow_server)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = json.loads((tmp_path / "hybrid.pt2.json").read_text())
    assert meta["output"] == {"W_a_real": ["B", 8, 4, 2], "W_d_real": ["B", 2, 4, 2, 2]}
    module = load_torch_export(pt2)
    champion = autounfold.load("models:/hybrid_model@champion", tracking_uri=mlflow_server)
    test = champion.problem.sample(5, 3)
    a_real, d_real = module(torch.view_as_real(test.H).contiguous(), test.noise_var)
    with torch.no_grad():
        W_a, W_d = champion(test.H, test.noise_var)
    torch.testing.assert_close(torch.view_as_complex(a_real.contiguous()), W_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.view_as_complex(d_real.contiguous()), W_d, rtol=1e-4, atol=1e-4)

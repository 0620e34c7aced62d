"""Reliability on real processes: a trial whose worker is killed mid-training resumes from its last
checkpoint (not from step 0); an unreachable cluster is a clear error."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

SPEC = {
    "name": "killme",
    "base": {"problem": {"channel": {"n_tx": 64, "n_rx": 16}},
             "training": {"steps": 600, "batch_size": 128, "validate_every": 100, "validation_batch": 256}},
    "objective": {"measure_latency": False},
    "budget": {"num_samples": 1, "algorithm": "random"},
    "seed": 4,
    "space": {"model.num_layers": {"type": "int", "low": 6, "high": 7}},
}


def test_killed_worker_resumes_from_its_checkpoint(tmp_path):
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "autounfold.cli", "search", str(path), "--out", str(out),
                             "--no-track", "--cpus", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        deadline = time.time() + 300
        killed = None
        while killed is None:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline
            for res in (out / "tune").glob("trainable_*/result.json") if (out / "tune").exists() else []:
                lines = [json.loads(x) for x in res.read_text().splitlines() if x.strip()]
                if len(lines) >= 3:                          # validated (and checkpointed) at steps 0, 100, 200
                    killed = lines[-1]
                    os.kill(int(killed["pid"]), signal.SIGKILL)
                    break
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-3000:]
    table = pd.read_parquet(out / "trials.parquet")
    assert list(table.status) == ["ok"], table[["status", "reason"]]
    res = next((out / "tune").glob("trainable_*/result.json"))
    lines = [json.loads(x) for x in res.read_text().splitlines() if x.strip()]
    # results of the restarted worker: Tune counts its iterations from the restore, the trial's from the start
    restored = [r for r in lines if r["iterations_since_restore"] < r["training_iteration"]]
    # the restarted worker continued after a checkpoint it had reported: it did not start at step 0
    assert restored and all(r["step"] > 0 for r in restored if "step" in r), [
        (r.get("step"), r["training_iteration"], r["iterations_since_restore"]) for r in lines]
    assert killed["step"] > 0


def test_unreachable_cluster_is_a_clear_error(tmp_path):
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([sys.executable, "-m", "autounfold.cli", "jobs", "list", "--address", "http://127.0.0.1:9"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "cannot reach the Ray job server at http://127.0.0.1:9" in r.stderr, r.stderr[-2000:]


def test_mlflow_server_outage_during_a_search_loses_nothing(tmp_path, mlflow_process):
    from mlflow import MlflowClient

    spec = json.loads(json.dumps(SPEC))
    spec.update(name="outage", budget={"num_samples": 6, "algorithm": "random", "max_concurrent": 2})
    spec["base"]["problem"]["channel"] = {"n_tx": 32, "n_rx": 8}
    spec["base"]["training"].update(steps=300, validate_every=100)
    spec["space"] = {"model.num_layers": {"type": "int", "low": 3, "high": 8}}
    path = tmp_path / "outage.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "autounfold.cli", "search", str(path), "--out", str(tmp_path / "out"),
                             "--tracking-uri", mlflow_process.url, "--cpus", "2", "--register", "outage_model"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:                       # the server dies after the first trial, returns after the third
            lines.append(line)
            if line.startswith("[1/6]"):
                mlflow_process.stop()
            if line.startswith("[3/6]"):
                mlflow_process.start()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if mlflow_process.proc is None:
            mlflow_process.start()
    output = "".join(lines)
    assert proc.returncode == 0, output[-3000:]
    assert "queuing tracking" in output and "queued tracking replayed" in output
    client = MlflowClient(mlflow_process.url, registry_uri=mlflow_process.url)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    parent = client.get_run(summary["tracking"]["run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    table = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert len(children) == 6 and {c.data.tags["autounfold.trial_id"] for c in children} == set(table.trial_id)
    for c in children:                                  # every trial complete: params, every validation, status
        assert c.info.status == "FINISHED" and "model.num_layers" in c.data.params
        assert len(client.get_metric_history(c.info.run_id, "val_score")) >= 4
    assert str(client.get_model_version_by_alias("outage_model", "challenger").version) == "1"

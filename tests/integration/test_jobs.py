"""Ray job submission against a real Ray head on 127.0.0.1 with token authentication on: a request
without the token is refused with a clear error; a small search job runs to SUCCEEDED; its logs are
read back; the head is stopped by its PID."""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_head():
    """One token-authenticated head for the tests of this module (started once: ~20 s)."""
    token = secrets.token_hex(16)
    port, dash = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp) / "head.log", "w")
    proc = subprocess.Popen([str(Path(bindir) / "ray"), "start", "--head", "--block", "--port", str(port),
                             "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(dash), "--num-cpus", "2", "--temp-dir", temp,
                             "--include-dashboard", "true",
                             # ports of their own: another Ray started meanwhile (make test runs two pytest
                             # workers) would otherwise take the default agent ports and leave the head with
                             # "No available agent to submit job"
                             "--dashboard-agent-listen-port", str(free_port()),
                             "--dashboard-agent-grpc-port", str(free_port()),
                             "--runtime-env-agent-port", str(free_port()),
                             "--metrics-export-port", str(free_port())],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:
            r = subprocess.run([sys.executable, "-m", "autounfold.cli", "jobs", "list", "--address", address],
                               env=env, capture_output=True, text=True)
            if r.returncode == 0:
                break
            assert proc.poll() is None, (Path(temp) / "head.log").read_text()[-3000:]
            assert time.time() < deadline, r.stderr[-2000:]
            time.sleep(1)
        yield address, env
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=2)               # a graceful stop took ~35 s (a 10 s wait ran out: 11.4 s teardown);
                                               # its state is thrown away anyway
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "autounfold.cli", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, **kw)


def test_submit_search_job_with_token_auth(ray_head, tmp_path):
    address, env = ray_head
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN",)}
    no_token["HOME"] = str(tmp_path)                                  # no ~/.ray/auth_token either
    r = _cli(["jobs", "list", "--address", address], no_token, timeout=120)
    assert r.returncode == 2 and "token" in r.stderr.lower(), r.stderr[-2000:]

    out = tmp_path / "job-search"
    entry = (f"autounfold search search_spaces/auto_pgd.yaml --address auto --no-track --out {out} "
             "--set budget.num_samples=2 --set budget.algorithm=random --set base.training.steps=10 "
             "--set base.training.validate_every=5 --set base.training.validation_batch=64 "
             "--set base.problem.channel.n_tx=8 --set base.problem.channel.n_rx=4 --set objective.latency_batch=8")
    r = _cli(["submit", "jobs/search.yaml", "--address", address, "--wait", "--timeout", "400",
              "--set", f"entrypoint={entry}"], env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "SUCCEEDED" in r.stdout and "leaderboard: auto_pgd" in r.stdout
    job_id = r.stdout.split("submitted search as ", 1)[1].split(":", 1)[0]
    assert (out / "trials.parquet").is_file()                        # the job ran on this machine's head
    r = _cli(["jobs", "status", job_id, "--address", address], env, timeout=60)
    assert r.returncode == 0 and "SUCCEEDED" in r.stdout
    r = _cli(["jobs", "logs", job_id, "--address", address], env, timeout=60)
    assert "2 trials (random)" in r.stdout
    r = _cli(["jobs", "list", "--address", address], env, timeout=60)
    assert job_id in r.stdout

    # a failing job: exit 1 with the status
    r = _cli(["submit", "jobs/search.yaml", "--address", address, "--wait", "--timeout", "300",
              "--set", "entrypoint=autounfold search search_spaces/missing.yaml"], env, timeout=400)
    assert r.returncode == 1 and "ended FAILED" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]


def test_job_spec_validation(tmp_path):
    from autounfold.errors import ConfigError
    from autounfold.jobs import load_job_spec
    for f in sorted((ROOT / "jobs").glob("*.yaml")):
        spec = load_job_spec(f)
        assert spec.entrypoint.startswith("autounfold ")
    with pytest.raises(ConfigError, match="entrypoint: must be an autounfold command"):
        load_job_spec(ROOT / "jobs/search.yaml", ["entrypoint=rm -rf /"])
    with pytest.raises(ConfigError, match="colour: Extra inputs"):
        load_job_spec(ROOT / "jobs/search.yaml", ["colour=red"])


SMALL = ("--set budget.num_samples=2 --set budget.algorithm=random --set base.training.steps=10 "
         "--set base.training.validate_every=5 --set base.training.validation_batch=64 "
         "--set base.problem.channel.n_tx=8 --set base.problem.channel.n_rx=4 --set objective.latency_batch=8")


def test_monitor_trigger_submits_the_research_as_a_ray_job(ray_head, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    address, env = ray_head
    env = {**env, "MLFLOW_TRACKING_URI": mlflow_server}
    entry = (f"autounfold search search_spaces/auto_pgd.yaml --address auto --out {tmp_path / 's15'} "
             f"--tracking-uri {mlflow_server} --register jobloop {SMALL}")
    r = _cli(["submit", "jobs/search.yaml", "--address", address, "--wait", "--timeout", "400",
              "--set", f"entrypoint={entry}"], env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = _cli(["promote", "jobloop"], env, timeout=120)
    assert r.returncode == 0 and '"decision": "promote"' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]

    events = tmp_path / "events.jsonl"
    r = _cli(["monitor", "--model", "jobloop@champion", "--source", "synthetic:angular_spread=15->40,windows=4,at=1",
              "--window", "128", "--events", str(events), "--address", address, "--research-trials", "2",
              "--research-set", "base.training.steps=10", "--research-set", "budget.algorithm=random"], env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    done = [json.loads(line) for line in events.read_text().splitlines() if '"trigger_done"' in line]
    assert len(done) == 1
    job_id = done[0]["outcome"]["job_id"]
    assert "models:/jobloop/1" in done[0]["outcome"]["entrypoint"]
    deadline = time.time() + 400
    while True:
        r = _cli(["jobs", "status", job_id, "--address", address], env, timeout=60)
        if "SUCCEEDED" in r.stdout:
            break
        assert r.returncode == 0 and time.time() < deadline, r.stdout + r.stderr
        time.sleep(2)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    challenger = client.get_model_version_by_alias("jobloop", "challenger")
    assert str(challenger.version) == "2"
    research = client.get_run(challenger.tags["autounfold.search_run_id"])
    assert research.data.tags["autounfold.warm_start"] == client.get_model_version("jobloop", "1").tags["autounfold.search_run_id"]

"""Real processes on loopback: an `mlflow server` started for the test and stopped by its PID; and
readers / writers of the Ray Tune state a search leaves on disk, to make the states a SIGKILL leaves."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a sqlite store; ``stop()`` / ``start()`` keep port and store."""

    def __init__(self, root):
        self.root, self.port, self.proc = root, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.log = open(self.root / "mlflow-server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", str(self.root / "server-artifacts")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.log.flush()
                raise RuntimeError(f"mlflow server did not start: {(self.root / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)      # the server and the workers it started
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        self.proc = None


@pytest.fixture
def mlflow_process(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(mlflow_process):
    yield mlflow_process.url


def tune_state(out):
    """The newest Tune experiment state and searcher state (search_gen_state) in ``out``/tune:
    (experiment path, its JSON, searcher path, the unpickled searcher state)."""
    import ray.cloudpickle as cloudpickle
    tune = out / "tune"
    exp = sorted(tune.glob("experiment_state-*.json"))[-1]
    gen = sorted(tune.glob("search_gen_state-*.json"))[-1]
    with open(gen, "rb") as fh:
        return exp, json.loads(exp.read_text()), gen, cloudpickle.load(fh)


def write_searcher_state(path, state):
    import ray.cloudpickle as cloudpickle
    with open(path, "wb") as fh:
        cloudpickle.dump(state, fh)


def set_searcher_behind(out):
    """Make the searcher state of a finished search look like an earlier save: two fewer trials
    suggested, and the last two of the experiment state still live although they ended (as a kill
    between the two state writes can leave it). As saved, Tune would suggest two more trials and wait
    for ever for the two live ones to end. Returns the trial ids in the order suggested."""
    _, exp, gen_path, gen = tune_state(out)
    order = [json.loads(t)["trial_id"] for t, _ in exp["trial_data"]]
    gen["counter"] = len(order) - 2
    gen["name:ConcurrencyLimiter"].update(live_trials=set(order[-2:]), num_unfinished_live_trials=2)
    write_searcher_state(gen_path, gen)
    return order

"""--resume of a search whose Ray Tune searcher state disagrees with its experiment state, as a
SIGKILL during a state sync leaves it (test_faults.py hits it by chance; here it is made on disk):
the resumed search completes the budget with nothing run twice. The searcher state behind the
experiment state (the resumed search must not hang) is made on disk at the end of test_faults.py."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import tune_state, write_searcher_state

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}

SPEC = {
    "name": "resume-state",
    "base": {"problem": {"channel": {"n_tx": 8, "n_rx": 4}},
             "training": {"steps": 20, "batch_size": 32, "validate_every": 10, "validation_batch": 64}},
    "objective": {"measure_latency": False},
    "budget": {"num_samples": 4, "algorithm": "random", "max_concurrent": 2},
    "seed": 3,
    "space": {"model.num_layers": {"type": "int", "low": 2, "high": 6},
              "training.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}},
}


def _search(path, out, *extra, timeout=300):
    cmd = [sys.executable, "-m", "autounfold.cli", "search", str(path), "--out", str(out), "--cpus", "2", "--no-track"]
    return subprocess.run(cmd + list(extra), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)


def test_resume_with_the_searcher_state_ahead_of_the_experiment_state(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    done = tmp_path / "done"
    first = _search(path, done)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    table = pd.read_parquet(done / "trials.parquet").set_index("trial_id")
    assert len(table) == 4 and (table.status == "ok").all()
    exp_path, exp, gen_path, gen = tune_state(done)
    order = [json.loads(t)["trial_id"] for t, _ in exp["trial_data"]]        # in the order suggested
    assert sorted(order) == sorted(table.index) and gen["counter"] == 4

    # ahead: the searcher state of a later save (4 suggested, the last two live) beside an experiment
    # state that holds the first two; the last two never ended (no rows, no trial directories)
    ahead = tmp_path / "ahead"
    shutil.copytree(done, ahead)
    exp_path, exp, gen_path, gen = tune_state(ahead)
    kept, lost = order[:2], order[2:]
    exp["trial_data"] = [t for t in exp["trial_data"] if json.loads(t[0])["trial_id"] in kept]
    exp_path.write_text(json.dumps(exp))
    gen["name:ConcurrencyLimiter"].update(live_trials=set(lost), num_unfinished_live_trials=2)
    write_searcher_state(gen_path, gen)
    rows = [line for line in (ahead / "trial_rows.jsonl").read_text().splitlines()
            if json.loads(line)["trial_id"] in kept]
    (ahead / "trial_rows.jsonl").write_text("".join(r + "\n" for r in rows))
    for d in (ahead / "tune").iterdir():
        if d.is_dir() and any(t in d.name for t in lost):
            shutil.rmtree(d)

    second = _search(path, ahead, "--resume")
    # before the fix: exit 130, "interrupted: 2 of 4 trials finished", and the same at every --resume
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    final = pd.read_parquet(ahead / "trials.parquet").set_index("trial_id")
    assert len(final) == 4 and final.index.is_unique and (final.status == "ok").all(), final
    assert set(kept) < set(final.index) and not set(lost) & set(final.index)
    assert [t for t in kept if f"] {t} " in second.stdout] == []               # not trained again
    pd.testing.assert_series_equal(final.loc[kept, "val_score"], table.loc[kept, "val_score"])
    # the two lost trials' seeds are drawn again: the configurations of the uninterrupted search
    assert sorted(final.params) == sorted(table.params)
    summary = json.loads((ahead / "summary.json").read_text())
    assert summary["resume"]["saved_counter"] == 4 and summary["resume"]["counter"] == 2
    assert summary["resume"]["saved_live"] == sorted(lost) and not summary["interrupted"]

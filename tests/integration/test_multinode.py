"""A search spread over a real multi-node Ray cluster on this machine (a CPU-less head and two
one-CPU worker nodes, each its own raylet): trials run on both nodes; one node is killed while it
trains a trial that has checkpointed; that trial is rescheduled on the surviving node from its
checkpoint, and the search ends with every trial once, none lost, none trained twice."""
import json
import threading
import time

import pandas as pd
import pytest
import ray

from autounfold.search.nodes import kill_node, local_cluster, worker_nodes
from autounfold.search.runner import run_search
from autounfold.spaces import parse_spec

pytestmark = pytest.mark.integration

SPEC = {
    "name": "multinode",
    "base": {"problem": {"channel": {"n_tx": 16, "n_rx": 4}},
             "training": {"steps": 400, "batch_size": 64, "validate_every": 40, "validation_batch": 128}},
    "objective": {"measure_latency": False},
    "budget": {"num_samples": 4, "algorithm": "random"},
    "seed": 3,
    "space": {"model.num_layers": {"type": "int", "low": 3, "high": 6},
              "training.lr": {"type": "float", "low": 0.001, "high": 0.05, "log": True}},
}


def _results(out):
    found = {}
    for res in (out / "tune").glob("trainable_*/result.json") if (out / "tune").exists() else []:
        lines = [json.loads(x) for x in res.read_text().splitlines() if x.strip()]
        if lines:
            found[res.parent.name] = lines
    return found


def test_a_node_killed_mid_search_loses_and_duplicates_nothing(tmp_path):
    spec = parse_spec(json.loads(json.dumps(SPEC)), "multinode.yaml")
    out = tmp_path / "out"
    killed = {}

    with local_cluster(2) as cluster:
        nodes = {n.node_id: n for n in worker_nodes(cluster)}

        def watch():
            deadline = time.time() + 240
            while time.time() < deadline and not killed:
                running_on = {lines[-1].get("node_id") for lines in _results(out).values() if not lines[-1].get("done")}
                for name, lines in _results(out).items():
                    # two nodes busy, and this trial has checkpointed twice and is still training
                    if len(running_on & set(nodes)) == 2 and len(lines) >= 2 and not lines[-1].get("done"):
                        node_id = lines[-1]["node_id"]
                        killed.update(node_id=node_id, trial_dir=name, step=lines[-1].get("step"),
                                      seen_on=sorted(running_on))
                        kill_node(cluster, nodes[node_id])
                        return
                time.sleep(0.05)

        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        try:
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            outcome = run_search(spec, out, address=cluster.address)
            watcher.join(timeout=5)
        finally:
            ray.shutdown()

    assert killed, "no trial was caught mid-training on a busy two-node cluster"
    assert set(killed["seen_on"]) >= set(nodes)                   # trials were placed on every node
    table = pd.read_parquet(out / "trials.parquet")
    assert len(table) == 4 and list(table.status) == ["ok"] * 4, table[["trial_id", "status", "reason"]]
    assert table.trial_id.is_unique and table.params.is_unique    # nothing duplicated
    rows = [json.loads(x) for x in (out / "trial_rows.jsonl").read_text().splitlines() if x.strip()]
    assert sorted(r["trial_id"] for r in rows) == sorted(table.trial_id)     # each trial ended once
    # the killed node's trial continued on the other node from a checkpoint (not from step 0)
    restored = table[table.restored]
    assert len(restored) >= 1 and set(restored.node_id) <= set(nodes) - {killed["node_id"]}
    assert killed["step"] > 0
    moved = _results(out)[killed["trial_dir"]]
    after = [r for r in moved if r["node_id"] != killed["node_id"]]
    assert after and min(r["step"] for r in after if "step" in r) > 0
    # the summary counts the nodes trials finished on: never the killed one
    assert outcome.summary["restored_trials"] >= 1 and outcome.summary["nodes_used"] >= 1
    assert killed["node_id"] not in set(table.node_id)

"""A multi-node Ray cluster on one machine (``ray.cluster_utils.Cluster``: a head and worker nodes,
each a real raylet with its own object store, on loopback), for the search benchmark's node-scaling
section and for testing that a search survives the loss of a node.

The head gets no CPUs, so every trial runs on a worker node; ``kill_node`` removes one worker as a
machine failure would (its raylet and workers die; Tune reschedules the trials it ran from their
last checkpoints, ``FailureConfig(max_failures=1)`` in ``runner``).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def local_cluster(workers: int, cpus_per_node: float = 1, object_store_bytes: int = 80 * 1024 ** 2) -> Iterator[object]:
    """A started ``ray.cluster_utils.Cluster`` with a CPU-less head and ``workers`` worker nodes;
    shut down on exit. The caller connects (``ray.init(address=cluster.address)``)."""
    from ray.cluster_utils import Cluster

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": object_store_bytes,
                                                             "include_dashboard": False})
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=cpus_per_node, object_store_memory=object_store_bytes)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def worker_nodes(cluster) -> list:
    return [n for n in cluster.list_all_nodes() if n is not cluster.head_node]


def kill_node(cluster, node) -> None:
    """Remove ``node`` abruptly (no graceful drain), as a crashed machine."""
    cluster.remove_node(node, allow_graceful=False)

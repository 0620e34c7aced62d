"""Connecting to Ray and checking that a trial's resource request can ever be met."""
from __future__ import annotations

import logging
import math
import os
from typing import Optional

from ..errors import SearchError, brief
from ..net import check_reachable

log = logging.getLogger(__name__)


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Start an embedded Ray (no address) or connect to a running cluster.

    Returns True when this call started Ray (the caller then shuts it down). An existing
    connection in this process is reused as is. A cluster started with token authentication
    (Ray's default for local clusters) needs ``RAY_AUTH_MODE=token`` and the cluster's token in
    this process's environment; the error says so when the connection is refused.
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_reachable(address, "the Ray cluster", 6379 if "://" not in address else 10001, SearchError)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            # address="local": a Ray of its own, never a cluster that `ray start` left running on this
            # machine (ray.init() without an address would attach to it and refuse num_cpus)
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
    except (OSError, RuntimeError, ValueError, ray.exceptions.RayError) as err:   # unreachable, auth, bad address
        hint = ""
        if address:
            hint = (" (is the cluster up, and does this shell have RAY_AUTH_MODE=token and the cluster's token, "
                    "e.g. RAY_AUTH_TOKEN, when the cluster uses token authentication?)")
        raise SearchError(f"cannot {'connect to Ray at ' + address if address else 'start a local Ray'}: "
                          f"{brief(err)}{hint}") from None
    return True


def available() -> dict:
    """Total CPUs / GPUs of the cluster and the largest amount on one node."""
    import ray

    total = ray.cluster_resources()
    node_cpu = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    node_gpu = max((n["Resources"].get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    return {"cpu": total.get("CPU", 0.0), "gpu": total.get("GPU", 0.0), "node_cpu": node_cpu, "node_gpu": node_gpu}


def check_resources(spec, have: dict) -> int:
    """Raise SearchError when a trial could never be scheduled; return how many trials fit at once."""
    want = spec.resources
    origin = spec.origin
    if want.gpu > 0 and have["gpu"] == 0:
        raise SearchError(f"{origin}: resources.gpu = {want.gpu} but the Ray cluster has no GPU: the trials "
                          "would stay PENDING forever. Set resources.gpu: 0 (e.g. --set resources.gpu=0) or "
                          "connect to a cluster with GPUs (--address).")
    if want.gpu > have["node_gpu"]:
        raise SearchError(f"{origin}: resources.gpu = {want.gpu} but no node has more than {have['node_gpu']:g} GPU(s)")
    if want.cpu > have["node_cpu"]:
        raise SearchError(f"{origin}: resources.cpu = {want.cpu} but no node has more than {have['node_cpu']:g} CPU(s)")
    fit = math.floor(have["cpu"] / want.cpu + 1e-9)
    if want.gpu > 0:
        fit = min(fit, math.floor(have["gpu"] / want.gpu + 1e-9))
    return max(fit, 1)

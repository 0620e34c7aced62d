"""Submitting and following Ray jobs.

Address: ``--address``, else ``RAY_ADDRESS``, else ``http://127.0.0.1:8265`` (the dashboard of a
local head). A cluster with token authentication needs ``RAY_AUTH_MODE=token`` and the token
(``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``) in this environment;
Ray's SDK then adds the header itself. Errors say which of these is missing.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from ..errors import AutoUnfoldError
from ..net import check_reachable
from .spec import JobSpec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class JobError(AutoUnfoldError, RuntimeError):
    """The cluster could not be reached, refused the request, or the job did not succeed."""


def sdk_errors() -> tuple:
    """What Ray's job SDK raises for an unreachable, refusing or unauthenticated cluster."""
    from ray.exceptions import RayError
    return (OSError, RuntimeError, ValueError, RayError)


def check_job_server(address: Optional[str] = None) -> str:
    """The job server's address (``address``, RAY_ADDRESS or the default); JobError within seconds
    when nothing listens there."""
    addr = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    check_reachable(addr, "the Ray job server", 8265, JobError)
    return addr


def job_client(address: Optional[str] = None):
    from ray.job_submission import JobSubmissionClient

    addr = check_job_server(address)
    try:
        return JobSubmissionClient(addr)
    except sdk_errors() as err:                # unreachable, refused (HTTP status), no token, bad address
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ""
        if "401" in text or "403" in text or "auth" in text.lower() or "token" in text.lower():
            hint = " (the cluster uses token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)"
        raise JobError(f"cannot reach the Ray job server at {addr}: {text}{hint}") from None


def call(what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except sdk_errors() as err:
        text = str(err).strip()
        raise JobError(f"{what}: {text.splitlines()[-1] if text else type(err).__name__}") from None


def submit_job(spec: JobSpec, address: Optional[str] = None, agent_wait_s: float = 90.0) -> str:
    """Submit; a head that has just started may have no job agent yet ("No available agent"):
    that answer is retried for up to ``agent_wait_s`` seconds, every other refusal is an error at once."""
    client = job_client(address)
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            return call("submitting the job", client.submit_job, entrypoint=spec.entrypoint,
                         runtime_env=spec.runtime_env or None, entrypoint_num_cpus=spec.entrypoint_num_cpus,
                         entrypoint_num_gpus=spec.entrypoint_num_gpus,
                         entrypoint_resources=spec.entrypoint_resources or None,
                         metadata={"autounfold.job": spec.name, **spec.metadata})
        except JobError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def wait_for_job(job_id: str, address: Optional[str] = None, timeout_s: float = 3600.0, poll_s: float = 1.0,
                 on_status: Optional[Callable[[str, float], None]] = None) -> str:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED (returned) or ``timeout_s`` passes (JobError)."""
    client = job_client(address)
    start = time.monotonic()
    last = None
    while True:
        status = str(call(f"job {job_id}", client.get_job_status, job_id)).split(".")[-1]
        if status != last and on_status is not None:
            on_status(status, time.monotonic() - start)
        last = status
        if status in TERMINAL:
            return status
        if time.monotonic() - start > timeout_s:
            raise JobError(f"job {job_id} still {status} after {timeout_s:.0f} s (it keeps running; "
                           f"`autounfold jobs stop {job_id}` stops it)")
        time.sleep(poll_s)


def list_jobs(address: Optional[str] = None) -> list:
    """Every job of the cluster: ``[{"id", "status", "job", "entrypoint"}]``."""
    jobs = call("listing jobs", job_client(address).list_jobs)
    return [{"id": j.submission_id or j.job_id, "status": str(j.status).split(".")[-1],
             "job": (j.metadata or {}).get("autounfold.job", ""), "entrypoint": j.entrypoint} for j in jobs]


def job_status(job_id: str, address: Optional[str] = None) -> str:
    return str(call(f"job {job_id}", job_client(address).get_job_status, job_id)).split(".")[-1]


def job_logs(job_id: str, address: Optional[str] = None) -> str:
    return call(f"job {job_id}", job_client(address).get_job_logs, job_id)


def stop_job(job_id: str, address: Optional[str] = None) -> None:
    call(f"job {job_id}", job_client(address).stop_job, job_id)

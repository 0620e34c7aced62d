"""Ray job submission: declarative job specs (``jobs/*.yaml``) and a thin client over Ray's
``JobSubmissionClient`` (token authentication honoured through Ray's own environment variables)."""
from .spec import JobSpec, load_job_spec
from .client import job_client, job_logs, job_status, list_jobs, stop_job, submit_job, wait_for_job

__all__ = ["JobSpec", "job_client", "job_logs", "job_status", "list_jobs", "load_job_spec", "stop_job", "submit_job",
           "wait_for_job"]

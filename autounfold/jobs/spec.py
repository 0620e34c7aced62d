"""Job specs: YAML validated once (unknown keys and bad values name the file and key)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional

from pydantic import Field, ValidationError, field_validator

from ..config import read_yaml_mapping, set_override
from ..errors import ConfigError, format_validation_error
from ..schema import Schema


class JobSpec(Schema):
    """A Ray job that runs one ``autounfold`` command on the cluster.

    entrypoint: the command (must start with ``autounfold``); runtime_env: Ray's runtime environment
    (``working_dir: .`` ships this checkout, minus what .gitignore excludes); entrypoint_num_cpus /
    entrypoint_num_gpus / entrypoint_resources: what the driver of the job reserves; metadata: labels."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    entrypoint: str
    runtime_env: Dict[str, Any] = Field(default_factory=dict)
    entrypoint_num_cpus: float = Field(1.0, ge=0)
    entrypoint_num_gpus: float = Field(0.0, ge=0)
    entrypoint_resources: Dict[str, float] = Field(default_factory=dict)
    metadata: Dict[str, str] = Field(default_factory=dict)

    @field_validator("entrypoint")
    @classmethod
    def _autounfold_command(cls, v: str) -> str:
        words = shlex.split(v)
        if not words or words[0] != "autounfold":
            raise ValueError(f"must be an autounfold command, e.g. 'autounfold search search_spaces/auto_pgd.yaml' (got {v!r})")
        return v


def load_job_spec(path: "str | Path", overrides: Optional[List[str]] = None) -> JobSpec:
    path = Path(path)
    data = read_yaml_mapping(path, missing="no such job spec")
    for o in overrides or []:
        set_override(data, o, origin=f"{path} --set")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None

"""The MLflow Model Registry: a registered model version is a directory of plain files.

``model/`` of the version's run holds ``config.yaml`` (experiment config), ``weights.pt`` (a
tensors-only state dict), ``meta.json`` and whatever the caller adds (``autounfold.ops`` adds the
search space and the drift baseline). No pickled code: ``autounfold.load("models:/NAME@challenger")``
downloads the directory and rebuilds the model. Given the model's real-valued interface (the
caller's ``autounfold.deploy.real_interface``: this module does not build models), the directory
also holds an ``MLmodel`` file (YAML, no flavors) carrying the MLflow ``ModelSignature``, so the
registry shows the version's inputs and outputs. This module only talks to MLflow.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional

from ..errors import RegistryError, brief
from .tracking import mlflow_client, mlflow_errors

MODEL_ARTIFACT_PATH = "model"
CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous_champion"


def is_not_found(err: BaseException) -> bool:
    """True when MLflow says the model, version or alias does not exist (and nothing else went
    wrong): the one case a caller may read as "absent". An unreachable server, a permission or a
    database error is not "absent"."""
    from mlflow.exceptions import MlflowException
    if not isinstance(err, MlflowException):
        return False
    code = getattr(err, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # the SQL store reports a missing alias as INVALID_PARAMETER_VALUE "... alias X not found."
    text = str(err)
    return code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text


def get_alias(client, uri: str, name: str, alias: str):
    """The version of ``name`` carrying ``alias``, or None when no version carries it. Any other
    failure (server down, database error) is a RegistryError: never mistaken for "no such alias"."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow_errors() as err:
        if is_not_found(err):
            return None
        raise RegistryError(f"MLflow at {uri}: cannot read alias {name}@{alias} ({brief(err)})") from None


def require_registered_model(client, uri: str, name: str) -> None:
    try:
        client.get_registered_model(name)
    except mlflow_errors() as err:
        if is_not_found(err):
            raise RegistryError(f"no registered model {name!r} in {uri}") from None
        raise RegistryError(f"MLflow at {uri}: cannot read registered model {name!r} ({brief(err)})") from None


def version_info(name: str, version, alias: str = CHALLENGER) -> dict:
    return {"name": name, "version": str(version), "uri": f"models:/{name}@{alias}", "alias": alias}


def find_version(client, uri: str, name: str, tags: Dict[str, str]) -> Optional[dict]:
    """The version of ``name`` whose tags include all of ``tags`` (``version_info``), or None."""
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except mlflow_errors() as err:
        if is_not_found(err):
            return None
        raise RegistryError(f"MLflow at {uri}: cannot list the versions of {name!r} ({brief(err)})") from None
    for mv in versions:
        if all((mv.tags or {}).get(k) == v for k, v in tags.items()):
            return version_info(name, mv.version)
    return None


def mlflow_signature(interface: dict):
    """The MLflow ``ModelSignature`` of a real-valued interface as ``autounfold.deploy.real_interface``
    describes it (``{"inputs": {name: shape}, "output": {name: shape}, "dtype": "float32"}``, "B"
    for the batch): one ``TensorSpec`` per tensor, -1 for the batch, e.g. H_real (-1, n_rx, n_tx, 2),
    noise_var (-1,) -> W_real (-1, n_tx, S, 2)."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def schema(tensors: dict) -> Schema:
        return Schema([TensorSpec(np.dtype(interface["dtype"]), tuple(-1 if d == "B" else int(d) for d in shape), name)
                       for name, shape in tensors.items()])
    return ModelSignature(inputs=schema(interface["inputs"]), outputs=schema(interface["output"]))


def _write_mlmodel(staged: Path, run_id: str, interface: dict) -> None:
    """``staged/MLmodel``: the signature in a YAML file with no flavors (nothing to unpickle; MLflow's
    pyfunc loader is not meant to load it)."""
    from mlflow.models import Model
    Model(artifact_path=MODEL_ARTIFACT_PATH, run_id=run_id, signature=mlflow_signature(interface),
          metadata={"autounfold": "load with autounfold.load('models:/NAME@ALIAS'); the signature is the "
                                  "real-valued interface of `autounfold export`"}).save(staged / "MLmodel")


def register_model(name: str, model_dir: Path, run_id: str, tags: Dict[str, str],
                   tracking_uri: Optional[str] = None, alias: str = CHALLENGER,
                   extra_files: Optional[Dict[str, "str | bytes"]] = None,
                   interface: Optional[dict] = None) -> dict:
    """Log ``model_dir`` (plus ``extra_files``: file name -> text or bytes) under ``run_id``'s
    artifacts and register it as a new version of ``name`` with ``tags`` and ``alias``. With
    ``interface`` (``autounfold.deploy.real_interface(model.problem)``) the version also gets an
    ``MLmodel`` file carrying its MLflow signature (``mlflow_signature``).
    Returns ``{"name", "version", "uri", "alias"}``."""
    client, uri = mlflow_client(tracking_uri)
    model_dir = Path(model_dir)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / MODEL_ARTIFACT_PATH
            shutil.copytree(model_dir, staged)
            for fname, content in (extra_files or {}).items():
                target = staged / fname
                target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
            if interface is not None:
                _write_mlmodel(staged, run_id, interface)
            client.log_artifacts(run_id, str(staged), MODEL_ARTIFACT_PATH)
        try:
            client.get_registered_model(name)
        except mlflow_errors() as err:
            if not is_not_found(err):
                raise
            client.create_registered_model(name, description="autounfold model: weights + config + search space; "
                                                             "load with autounfold.load('models:/NAME@ALIAS')")
        mv = client.create_model_version(name, source=f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", run_id=run_id, tags=tags)
        client.set_registered_model_alias(name, alias, mv.version)
    except mlflow_errors() as err:
        raise RegistryError(f"MLflow at {uri}: registering {name!r} failed ({brief(err)})") from None
    return version_info(name, mv.version, alias)


def resolve_version(model_uri: str, tracking_uri: Optional[str] = None):
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (client, uri, ModelVersion)."""
    client, uri = mlflow_client(tracking_uri)
    if not model_uri.startswith("models:/"):
        raise RegistryError(f"{model_uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    ref = model_uri[len("models:/"):]
    name, sep, alias = ref.partition("@")
    try:
        if sep:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mname, _, version = ref.partition("/")
            mv = client.get_model_version(mname, version)
    except mlflow_errors() as err:
        if is_not_found(err):
            raise RegistryError(f"{model_uri}: no such registered model version in {uri}") from None
        raise RegistryError(f"{model_uri}: cannot reach the registry at {uri} ({brief(err)})") from None
    return client, uri, mv


def download_model(model_uri: str, dst: "str | Path", tracking_uri: Optional[str] = None) -> Path:
    """Download ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/PATH`` into ``dst``.

    Resolved with an explicit client (not MLflow's process-wide URIs), so the tracking URI given
    here is the one asked."""
    if model_uri.startswith("models:/"):
        client, uri, mv = resolve_version(model_uri, tracking_uri)
        source = mv.source
        if not source.startswith("runs:/"):
            raise RegistryError(f"{model_uri}: version {mv.version} was not registered by autounfold (source {source})")
        run_id, _, path = source[len("runs:/"):].partition("/")
    elif model_uri.startswith("runs:/"):
        client, uri = mlflow_client(tracking_uri)
        run_id, _, path = model_uri[len("runs:/"):].partition("/")
    else:
        raise RegistryError(f"{model_uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH")
    try:
        local = client.download_artifacts(run_id, path or MODEL_ARTIFACT_PATH, str(dst))
    except mlflow_errors() as err:
        raise RegistryError(f"{model_uri}: cannot download run {run_id}'s {path!r} from {uri} ({brief(err)})") from None
    return Path(local)

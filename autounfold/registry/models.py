"""The MLflow Model Registry: a registered model version is a directory of plain files.

``model/`` of the version's run holds ``config.yaml`` (experiment config), ``weights.pt`` (a
tensors-only state dict), ``meta.json`` and ``search_space.yaml`` (the spec that found it). No
pickled code: ``autounfold.load("models:/NAME@challenger")`` downloads the directory and rebuilds
the model with ``autounfold.load``.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ..errors import RegistryError
from .tracking import mlflow_client

MODEL_ARTIFACT_PATH = "model"
CHALLENGER = "challenger"
BASELINE_FILE = "baseline.pt"


def _write_baseline(model_dir: Path, path: Path) -> None:
    """The drift monitor's baseline (training-distribution covariance, learned parameters, gradient
    norm), stored with the version so the monitor compares against what this version was trained on."""
    import torch
    from ..artifacts import load
    from ..monitoring.monitor import compute_baseline
    model = load(model_dir)
    if model.problem.name != "beamforming":
        return
    torch.save(compute_baseline(model).to_state(), path)


def is_model_uri(path) -> bool:
    return isinstance(path, str) and path.startswith(("models:/", "runs:/"))


def register_model(name: str, model_dir: Path, spec, run_id: str, search_run_id: str, metric: dict,
                   tracking_uri: Optional[str] = None, alias: str = CHALLENGER) -> dict:
    """Log ``model_dir`` (+ the spec's YAML) under ``run_id``'s artifacts and register it as a new
    version of ``name`` with tags and ``alias``. Returns ``{"name", "version", "uri", "alias"}``."""
    import yaml
    client, uri = mlflow_client(tracking_uri)
    model_dir = Path(model_dir)
    try:
        cfg = yaml.safe_load((model_dir / "config.yaml").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / MODEL_ARTIFACT_PATH
            shutil.copytree(model_dir, staged)
            (staged / "search_space.yaml").write_text(spec.canonical_yaml())
            _write_baseline(model_dir, staged / BASELINE_FILE)
            client.log_artifacts(run_id, str(staged), MODEL_ARTIFACT_PATH)
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, description="autounfold model: weights + config + search space; "
                                                             "load with autounfold.load('models:/NAME@ALIAS')")
        problem = cfg.get("problem", {})
        tags = {"autounfold.problem": str(problem.get("name", "")),
                "autounfold.channel_model": str(problem.get("channel", {}).get("model", "")),
                "autounfold.spec_name": spec.name, "autounfold.spec_sha256": spec.sha256,
                "autounfold.search_run_id": search_run_id, "autounfold.trial_run_id": run_id,
                **{f"autounfold.metric.{k}": f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in metric.items()}}
        mv = client.create_model_version(name, source=f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", run_id=run_id, tags=tags)
        client.set_registered_model_alias(name, alias, mv.version)
    except RegistryError:
        raise
    except Exception as err:
        raise RegistryError(f"MLflow at {uri}: registering {name!r} failed ({type(err).__name__}: {err})") from None
    return {"name": name, "version": str(mv.version), "uri": f"models:/{name}@{alias}", "alias": alias}


def download_model(model_uri: str, dst: "str | Path", tracking_uri: Optional[str] = None) -> Path:
    """Download ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/PATH`` into ``dst``.

    Resolved with an explicit client (not MLflow's process-wide URIs), so the tracking URI given
    here is the one asked."""
    client, uri = mlflow_client(tracking_uri)
    if model_uri.startswith("models:/"):
        ref = model_uri[len("models:/"):]
        name, sep, alias = ref.partition("@")
        try:
            if sep:
                mv = client.get_model_version_by_alias(name, alias)
            else:
                mname, _, version = ref.partition("/")
                mv = client.get_model_version(mname, version)
        except Exception as err:
            raise RegistryError(f"{model_uri}: no such registered model version in {uri} "
                                f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        source = mv.source
        if not source.startswith("runs:/"):
            raise RegistryError(f"{model_uri}: version {mv.version} was not registered by autounfold (source {source})")
        run_id, _, path = source[len("runs:/"):].partition("/")
    elif model_uri.startswith("runs:/"):
        run_id, _, path = model_uri[len("runs:/"):].partition("/")
    else:
        raise RegistryError(f"{model_uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH")
    try:
        local = client.download_artifacts(run_id, path or MODEL_ARTIFACT_PATH, str(dst))
    except Exception as err:
        raise RegistryError(f"{model_uri}: cannot download run {run_id}'s {path!r} from {uri} "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})") from None
    return Path(local)

"""MLflow layer, and only MLflow: tracking of searches (parent run per search, child run per trial,
logged from the driver only) and the model registry (a version is a directory of plain files).
What is registered and when (after a search, on promotion, on a drift trigger) is ``autounfold.ops``."""
from .models import (CHALLENGER, CHAMPION, MODEL_ARTIFACT_PATH, PREVIOUS, download_model, find_version, get_alias,
                     is_not_found, mlflow_signature, register_model, require_registered_model, resolve_version,
                     version_info)
from .tracking import SearchTracker, default_tracking_uri, experiment_id, mlflow_client

__all__ = ["CHALLENGER", "CHAMPION", "MODEL_ARTIFACT_PATH", "PREVIOUS", "SearchTracker", "default_tracking_uri",
           "download_model", "experiment_id", "find_version", "get_alias", "is_not_found", "mlflow_client",
           "mlflow_signature", "register_model", "require_registered_model", "resolve_version", "version_info"]

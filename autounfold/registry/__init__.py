"""MLflow layer: tracking of searches (parent run per search, child run per trial, logged from the
driver only) and the model registry (weights + config + search-space YAML per model version)."""
from .models import MODEL_ARTIFACT_PATH, download_model, is_model_uri, register_model
from .tracking import SearchTracker, default_tracking_uri, mlflow_client

__all__ = ["MODEL_ARTIFACT_PATH", "SearchTracker", "default_tracking_uri", "download_model", "is_model_uri",
           "mlflow_client", "register_model"]

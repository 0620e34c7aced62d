"""autounfold: deep unfolding of iterative physical-layer solvers.

Core (pure PyTorch): ``channels``, ``problems``, ``algorithms``, ``unfolding``, ``training``,
``evaluation``. ``save`` / ``load`` keep a model as weights + config, never pickled code.
"""
__version__ = "0.1.0"


def save(model, path, config=None, metrics=None, overwrite=False):
    """Save ``model`` (an ``Unfolded``) with its experiment config to the directory ``path``; an
    existing ``path`` that is not an autounfold model is refused unless ``overwrite``."""
    from .artifacts import save as _save
    cfg = config if config is not None else getattr(model, "config", None)
    if cfg is None:
        from .errors import ArtifactError
        raise ArtifactError("save needs the model's ExperimentConfig (pass config=, or build the model with build_model)")
    return _save(model, path, cfg, metrics, overwrite=overwrite)


def load(path, map_location="cpu", tracking_uri=None):
    """Load a model: a directory written by ``save``, or a registry URI (``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``, ``runs:/RUN_ID/model``) resolved against MLflow (``tracking_uri``,
    else ``MLFLOW_TRACKING_URI``, else the embedded store). Returns an ``Unfolded`` in eval mode."""
    from .artifacts import load as _load
    if isinstance(path, str) and path.startswith(("models:/", "runs:/")):
        import tempfile
        from .registry.models import download_model
        with tempfile.TemporaryDirectory() as tmp:
            return _load(download_model(path, tmp, tracking_uri), map_location)
    return _load(path, map_location)

"""autounfold: deep unfolding of iterative physical-layer solvers.

Core (pure PyTorch): ``channels``, ``problems``, ``algorithms``, ``unfolding``, ``training``,
``evaluation``. ``save`` / ``load`` keep a model as weights + config, never pickled code.
"""
__version__ = "0.1.0"


def save(model, path, config=None, metrics=None):
    """Save ``model`` (an ``Unfolded``) with its experiment config to the directory ``path``."""
    from .artifacts import save as _save
    cfg = config if config is not None else getattr(model, "config", None)
    if cfg is None:
        from .errors import ArtifactError
        raise ArtifactError("save needs the model's ExperimentConfig (pass config=, or build the model with build_model)")
    return _save(model, path, cfg, metrics)


def load(path, map_location="cpu"):
    """Load a model directory written by ``save``; returns an ``Unfolded`` module in eval mode."""
    from .artifacts import load as _load
    return _load(path, map_location)

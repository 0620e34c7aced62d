"""Exceptions raised for people: each message names what was wrong and what is allowed."""


class AutoUnfoldError(Exception):
    """Base class of every error autounfold raises on purpose."""


class ConfigError(AutoUnfoldError, ValueError):
    """A configuration file or value is invalid (message names file, key, value, what is allowed)."""


class InputError(AutoUnfoldError, ValueError):
    """A tensor handed to the library has the wrong shape, dtype or non-finite values."""


class TrainingError(AutoUnfoldError, RuntimeError):
    """Training could not go on (for example a non-finite loss); nothing was saved."""


class ArtifactError(AutoUnfoldError, ValueError):
    """A saved model directory is missing files or holds something that is not an autounfold model."""


class SpaceError(ConfigError):
    """A search-space YAML is invalid (message names the file, the key, the value and what is allowed)."""


class SearchError(AutoUnfoldError, RuntimeError):
    """A search cannot start or go on (resources the cluster lacks, an unusable warm-start source, ...)."""


class RegistryError(AutoUnfoldError, RuntimeError):
    """The MLflow tracking store or model registry refused a request, or a model URI does not resolve."""

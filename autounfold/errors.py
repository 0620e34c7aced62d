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


def brief(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters): how a foreign library's error
    is quoted inside one of ours."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}"


def format_validation_error(err, origin: str, hide=()) -> str:
    """One line per invalid field of a pydantic ``ValidationError``: ``origin: dotted.key: message (got value)``.

    ``hide``: location parts that name a union member or a tagged-union tag rather than a key
    (pydantic puts them in ``loc``), dropped from the dotted key. The one formatter for experiment
    configs, search spaces, job specs and monitor settings."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if str(p) not in hide)
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        lines.append(f"{origin}: {key or '<root>'}: {msg}{shown}")
    return "\n".join(lines)

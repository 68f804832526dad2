"""Errors a user can cause. The CLI prints them without a traceback and exits with status 2.

Every message says what is wrong, where (file, key or value) and how to fix it
(docs/contracts.md#errors).
"""


class CSSError(Exception):
    """Base class of every error caused by user input (paths, configs, data, checkpoints)."""


class ConfigError(CSSError):
    """A configuration file, key or value is invalid."""


class TaskError(CSSError):
    """An unknown task, or an invalid user-defined task."""


class DataError(CSSError):
    """A dataset is missing, laid out wrongly or holds unexpected values."""


class CheckpointError(CSSError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class DependencyError(CSSError):
    """An optional dependency that the chosen configuration needs is not installed."""


def require(module: str, *, needed_for: str, install: str):
    """Import an optional heavy dependency, or raise a DependencyError that says how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only on machines lacking the module
        raise DependencyError(
            f"{needed_for} needs the Python package '{module}', which cannot be imported ({exc}). "
            f"Install it with: {install} (scripts/setup.sh does this)."
        ) from exc


class TrainingError(CSSError):
    """Training cannot continue: a loss turned inf/NaN (docs/controller.md#non-finite-losses)."""

"""User-facing errors. The CLI prints each as one line and exits non-zero."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of every error a user can cause; printed as one line."""

    exit_code = 2


class UsageError(HarnessError):
    """Bad command-line usage."""

    exit_code = 4


class UnknownNameError(HarnessError):
    """A model, task, metric, ... name that no plugin provides."""


class DuplicateNameError(HarnessError):
    """Two plugins provide the same name."""


class SpecError(HarnessError):
    """A task spec file is malformed or inconsistent."""


class DataError(HarnessError):
    """A dataset is missing, unreachable or corrupt."""


class ModelLoadError(HarnessError):
    """Model weights are missing, unreachable or corrupt."""


class ResultError(HarnessError):
    """A result file fails the schema or cannot be read."""


class PluginError(HarnessError):
    """A plugin failed to load or broke the plugin contract."""


class IncompatibleError(HarnessError):
    """A model cannot run a task (e.g. the task needs text and the model has none)."""


class blamed:  # noqa: N801 - used as a context manager, reads as a clause
    """Run plugin code, turning anything it raises (other than a HarnessError, which is already one
    line for the user) into one :class:`PluginError` line that names ``what`` -- the plugin and the
    call, e.g. ``"metric 'accuracy' (harness_metrics:accuracy)"``. ``SystemExit`` is caught too: a
    plugin cannot end the run with exit 0 and no result."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, (HarnessError, KeyboardInterrupt)):
            return False
        if not isinstance(exc, (Exception, SystemExit)):
            return False
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        raise PluginError(f"{self.what} raised {detail}") from exc

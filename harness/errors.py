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

"""``python -m harness`` is the ``harness`` command."""

from .cli import entry

entry()

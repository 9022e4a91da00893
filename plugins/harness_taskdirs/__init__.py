"""Registers the task specs shipped in the repository's ``tasks/`` folder.

Every ``*.yaml`` file under it is a task spec (file stem = task name); data the specs share --
class names, prompt templates -- lives beside them as ``.txt`` files (e.g. ``tasks/imagenet/``),
which specs insert with ``{$file: imagenet/classnames.txt}`` and which are never taken for tasks.

``tasks/`` holds data only, so it installs as the namespace package ``harness_tasks``
(see pyproject.toml); its folder is found through the import system, which works the
same for an editable checkout and an installed wheel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness import hookimpl


@hookimpl
def harness_register_task_dirs() -> list[Path]:
    spec = importlib.util.find_spec("harness_tasks")
    locations = spec.submodule_search_locations if spec else None
    return [Path(p) for p in locations or () if Path(p).is_dir()]

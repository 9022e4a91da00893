"""Suites: a named list of tasks run together and summarised by one number.

A suite is a YAML file among the task specs (conventionally ``tasks/suites/NAME.yaml``; file stem =
name, registered like a task by the task-dir plugins)::

    name: grain11             # = file stem
    version: 1                # bump when the member list or aggregate changes
    description: ...
    tasks: [task_a, task_b]   # the members: averaged
    separate: [task_c]        # optional: run with the suite, reported beside it, not averaged
    aggregate: mean           # the mean of the members' main scores (the only rule)

``harness run --task SUITE`` runs every member and separate task (each planned and checked like a
task given by name); the leaderboard adds a table per suite: per model, the mean of the members'
main scores over models that have every member, with the number of members.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import SpecError
from .taskspec import spec_hash
from .yamlfile import read_yaml_file

if TYPE_CHECKING:
    from .registry import Registries

SUITE_KEYS = {"name", "version", "description", "tasks", "separate", "aggregate"}
AGGREGATES = ("mean",)


@dataclass(frozen=True)
class Suite:
    """A validated suite; ``members`` / ``extra`` map each task name to its current spec sha256
    (empty strings when loaded without registries)."""

    name: str
    version: int
    tasks: tuple[str, ...]
    separate: tuple[str, ...]
    file: Path
    sha256: str
    description: str = ""
    aggregate: str = "mean"
    members: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def all_tasks(self) -> tuple[str, ...]:
        return self.tasks + self.separate


def _read(path: Path) -> Any:
    return read_yaml_file(Path(path), error=SpecError, what="suite file", max_bytes=2**20)


def is_suite_file(path: Path) -> bool:
    """A ``.yaml`` file is a suite when it has a ``tasks`` list and no ``kind``."""
    try:
        raw = _read(path)
    except SpecError:
        return False
    return isinstance(raw, dict) and "tasks" in raw and "kind" not in raw


def load_suite(path: Path, registries: Registries | None = None) -> Suite:
    """Parse and check ``path``; with ``registries``, every task must load (its spec sha recorded)."""
    path = Path(path)
    raw = _read(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a suite is a mapping with name, version, tasks")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown suite key(s) {unknown}; allowed: {sorted(SUITE_KEYS)}")
    if raw.get("name") != path.stem:
        raise SpecError(f"{path}: name: {raw.get('name')!r} must equal the file stem {path.stem!r}")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SpecError(f"{path}: version: expected an integer >= 1")
    lists = {}
    for key in ("tasks", "separate"):
        value = raw.get(key, [] if key == "separate" else None)
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            raise SpecError(f"{path}: {key}: expected a list of task names")
        lists[key] = tuple(value)
    if not lists["tasks"]:
        raise SpecError(f"{path}: tasks: a suite needs at least one task")
    every = lists["tasks"] + lists["separate"]
    twice = sorted({t for t in every if every.count(t) > 1})
    if twice:
        raise SpecError(f"{path}: task(s) {twice} listed more than once")
    if raw.get("aggregate", "mean") not in AGGREGATES:
        raise SpecError(f"{path}: aggregate: {raw.get('aggregate')!r}; allowed: {', '.join(AGGREGATES)}")
    suite = Suite(raw["name"], version, lists["tasks"], lists["separate"], path, spec_hash(raw),
                  raw.get("description", ""), raw.get("aggregate", "mean"))
    if registries is None:
        return suite
    from dataclasses import replace

    from .runner import find_task

    def shas(names: Iterable[str]) -> tuple[tuple[str, str], ...]:
        out = []
        for name in names:
            if name in registries.tasks and is_suite_file(registries.tasks.get(name)):
                raise SpecError(f"{path}: task {name!r} is a suite; suites do not nest")
            spec, _ = find_task(name, registries)
            out.append((name, spec.sha256))
        return tuple(out)

    return replace(suite, members=shas(suite.tasks), extra=shas(suite.separate))


def find_suite(name: str, registries: Registries) -> Suite | None:
    """The suite registered (or given as a path) under ``name``, else None."""
    if name in registries.tasks:
        path = registries.tasks.get(name)
    elif name.endswith((".yaml", ".yml")) and Path(name).is_file():
        path = Path(name)
    else:
        return None
    return load_suite(path, registries) if is_suite_file(path) else None


def expand_tasks(names: Iterable[str], registries: Registries) -> list[str]:
    """``names`` with each suite replaced by its tasks, then its separate tasks."""
    out: list[str] = []
    for name in names:
        suite = find_suite(name, registries)
        out += list(suite.all_tasks) if suite is not None else [name]
    return out


def registered_suites(registries: Registries) -> list[Suite]:
    """Every suite among the registered task files, its members resolved to their current specs; a suite
    whose members do not load here (a plugin missing) is matched by task name only, with a warning."""
    import warnings

    from .errors import HarnessError

    suites = []
    for _, entry in registries.tasks.items():
        if not is_suite_file(entry.item):
            continue
        try:
            suites.append(load_suite(entry.item, registries))
        except HarnessError as exc:
            warnings.warn(f"suite {entry.item.stem!r}: members matched by name only: {exc}", stacklevel=2)
            suites.append(load_suite(entry.item))
    return suites


__all__ = ["Suite", "expand_tasks", "find_suite", "is_suite_file", "load_suite", "registered_suites"]

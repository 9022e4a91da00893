"""Task specs: one YAML file per task, strictly validated, hashed into every result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from .errors import SpecError
from .schema import first_error, validate_against

if TYPE_CHECKING:
    from .registry import Registries


@dataclass(frozen=True)
class DatasetSource:
    """Where a task's data comes from: a pinned hub dataset, a local path, or a builder."""

    split: str
    hub: str | None = None
    revision: str | None = None
    name: str | None = None
    path: Path | None = None
    builder: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TaskSpec:
    """A validated task spec."""

    name: str
    version: int
    kind: str
    dataset: DatasetSource
    metrics: tuple[str, ...]
    main_score: str
    file: Path
    sha256: str
    description: str = ""
    columns: Mapping[str, str] = field(default_factory=dict, compare=False)
    prompts: Mapping[str, Any] = field(default_factory=dict, compare=False)
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: task spec file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read task spec: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None


def spec_hash(raw: Mapping[str, Any]) -> str:
    """sha256 of the spec's canonical JSON: formatting and comments do not change it."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_task_spec(path: Path, registries: Registries | None = None) -> TaskSpec:
    """Parse and validate ``path``; with ``registries``, also check names against plugins."""
    path = Path(path)
    raw = _read_yaml(path)
    problem = first_error("taskspec.v1", raw)
    if problem:
        raise SpecError(f"{path}: {problem}")
    if raw["name"] != path.stem:
        raise SpecError(f"{path}: name: {raw['name']!r} must equal the file stem {path.stem!r}")
    if raw["main_score"] not in raw["metrics"]:
        raise SpecError(f"{path}: main_score: {raw['main_score']!r} not in metrics {raw['metrics']}")
    source = dict(raw["dataset"])
    if "path" in source:
        local = Path(source["path"]).expanduser()
        source["path"] = local if local.is_absolute() else (path.parent / local).resolve()
    spec = TaskSpec(
        name=raw["name"],
        version=raw["version"],
        kind=raw["kind"],
        dataset=DatasetSource(**source),
        metrics=tuple(raw["metrics"]),
        main_score=raw["main_score"],
        file=path,
        sha256=spec_hash(raw),
        description=raw.get("description", ""),
        columns=raw.get("columns", {}),
        prompts=raw.get("prompts", {}),
        params=raw.get("params", {}),
    )
    if registries is not None:
        check_against_plugins(spec, registries)
    return spec


def check_against_plugins(spec: TaskSpec, registries: Registries) -> None:
    """Kind, metrics, builder, columns and params must match what the plugins provide."""
    where = spec.file

    def allowed(kind: str, name: str, names: Any) -> SpecError:
        return SpecError(f"{where}: {kind}: {name!r} is not registered; allowed values: {', '.join(names) or '(none)'}")

    if spec.kind not in registries.task_kinds:
        raise allowed("kind", spec.kind, list(registries.task_kinds))
    kind = registries.task_kinds.get(spec.kind)
    for metric in spec.metrics:
        if metric not in registries.metrics:
            raise allowed("metrics", metric, list(registries.metrics))
        missing = set(registries.metrics.get(metric).inputs) - kind.outputs
        if missing:
            raise SpecError(
                f"{where}: metrics: {metric!r} needs {sorted(missing)}, which kind {spec.kind!r} "
                f"does not produce (it produces {sorted(kind.outputs)})"
            )
    if spec.dataset.builder is not None and spec.dataset.builder not in registries.datasets:
        raise allowed("dataset.builder", spec.dataset.builder, list(registries.datasets))
    missing_roles = [role for role in kind.columns if role not in spec.columns]
    if missing_roles:
        raise SpecError(f"{where}: columns: kind {spec.kind!r} needs roles {list(kind.columns)}; missing {missing_roles}")
    problem = validate_against(dict(kind.params_schema) or {"type": "object", "maxProperties": 0}, dict(spec.params))
    if problem:
        raise SpecError(f"{where}: params.{problem}" if not problem.startswith("<top>") else f"{where}: params{problem[5:]}")

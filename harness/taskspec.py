"""Task specs: one YAML file per task, strictly validated, hashed into every result.

A spec may reference shared data files anywhere in its ``params``: a mapping ``{$file: PATH}`` is
replaced by the file's content -- ``.txt``: its non-empty lines (a list of strings), ``.json`` /
``.yaml``: the parsed value. PATH is relative to the spec's folder and must stay inside it (so
plugins and task folders ship class names, templates and descriptors beside their specs). The
spec hash covers the resolved content: editing a shared file changes the hash of every spec
that uses it.

Specs and their shared ``.yaml``/``.json`` files are read with :mod:`harness.yamlfile`: bounded size
(``MAX_SPEC_BYTES``, ``MAX_SHARED_FILE_BYTES`` per file, ``MAX_SHARED_TOTAL_BYTES`` per spec), bounded
nesting and alias expansion, no duplicate or non-string keys, JSON values only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import SpecError
from .schema import checked_params, first_error
from .yamlfile import parse_yaml, read_text_bounded, read_yaml_file

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
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """As written, shared files resolved; with registries, validated and defaults filled in."""


#: Largest task spec file.
MAX_SPEC_BYTES = 1 * 2**20


def _read_yaml(path: Path) -> Any:
    """The spec's value, read with the bounded strict loader (:mod:`harness.yamlfile`)."""
    return read_yaml_file(path, error=SpecError, what="task spec file", max_bytes=MAX_SPEC_BYTES)


#: Largest shared data file a spec may reference.
MAX_SHARED_FILE_BYTES = 16 * 2**20
#: Most bytes of shared files one spec may insert, counted per reference (a file referenced twice counts twice).
MAX_SHARED_TOTAL_BYTES = 32 * 2**20
FILE_REF = "$file"


def _read_shared(ref: Any, folder: Path, where: str, budget: list[int]) -> Any:
    if not isinstance(ref, str) or not ref:
        raise SpecError(f"{where}: {FILE_REF}: expected a relative file path")
    path = (folder / ref).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise SpecError(f"{where}: {FILE_REF}: {ref!r} is not a file inside {folder}")
    if path.suffix not in (".txt", ".json", ".yaml", ".yml"):
        raise SpecError(f"{where}: {FILE_REF}: {ref!r}: use a .txt, .json or .yaml file")
    name = f"{where}: {FILE_REF}: {ref!r}"
    text = read_text_bounded(path, name, SpecError, "shared file", MAX_SHARED_FILE_BYTES)
    budget[0] -= len(text.encode("utf-8"))
    if budget[0] < 0:
        raise SpecError(f"{name}: the spec's shared files add up to more than {MAX_SHARED_TOTAL_BYTES} bytes")
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    kind = "JSON" if path.suffix == ".json" else "YAML"
    return parse_yaml(text, name, SpecError, kind, invalid=f"{name} is not valid {kind}")  # JSON is YAML


def resolve_files(value: Any, folder: Path, where: str, _budget: list[int] | None = None) -> Any:
    """``value`` with every ``{$file: PATH}`` mapping replaced by the file's content (see the module
    docstring); together the references may insert at most ``MAX_SHARED_TOTAL_BYTES``."""
    budget = [MAX_SHARED_TOTAL_BYTES] if _budget is None else _budget
    if isinstance(value, dict):
        if FILE_REF in value:
            if len(value) != 1:
                raise SpecError(f"{where}: a {{{FILE_REF}: PATH}} mapping may have no other keys")
            return _read_shared(value[FILE_REF], folder, where, budget)
        return {key: resolve_files(item, folder, f"{where}.{key}", budget) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_files(item, folder, f"{where}[{i}]", budget) for i, item in enumerate(value)]
    return value


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
    raw["params"] = resolve_files(raw.get("params", {}), path.parent, f"{path}: params")
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
        params=raw["params"],
    )
    return check_against_plugins(spec, registries) if registries is not None else spec


def check_against_plugins(spec: TaskSpec, registries: Registries) -> TaskSpec:
    """Kind, metrics, builder, columns and params must match what the plugins provide; returns the
    spec with its params validated and defaults filled in."""
    where = spec.file

    def allowed(kind: str, name: str, names: Any) -> SpecError:
        return SpecError(f"{where}: {kind}: {name!r} is not registered; allowed values: {', '.join(names) or '(none)'}")

    if spec.kind not in registries.task_kinds:
        raise allowed("kind", spec.kind, list(registries.task_kinds))
    kind = registries.task_kinds.get(spec.kind)
    for metric in spec.metrics:
        if metric not in registries.metrics:
            raise allowed("metrics", metric, list(registries.metrics))
        missing = registries.metrics.get(metric).outputs - kind.outputs
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
    return replace(spec, params=checked_params(dict(kind.params_schema), dict(spec.params), str(where)))

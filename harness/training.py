"""Trainers in the core: ``harness train NAME`` runs a registered trainer on the engine runs use.

A trainer (``TrainerSpec``) gets a :class:`TrainContext`: its configuration (validated against the
trainer's schema, defaults filled in), the run's execution config (device, dtype, seed, cache,
progress), datasets by name, frozen models' features through the feature store, a compute handle,
and :meth:`TrainContext.save`, which writes checkpoint files atomically together with a record of
the frozen models' fingerprints (``harness-train.json``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .atomicfile import write_bytes_atomic, write_text_atomic
from .dataset import Split, load_dataset, subset_indices
from .errors import UsageError, blamed
from .yamlfile import parse_yaml, read_yaml_file
from .features import Features
from .modelloader import ModelLoader
from .taskkind import Compute, progress_bar
from .taskspec import DatasetSource

if TYPE_CHECKING:
    import datasets

    from .execution import ExecutionConfig
    from .registry import Registries
    from .specs import TrainerSpec

RECORD = "harness-train.json"


@dataclass(frozen=True)
class TrainData:
    """Rows a trainer trains on, with the dataset identity the feature store keys them by and the
    column roles of the task spec they came from (empty for builders and paths)."""

    rows: datasets.Dataset
    identity: Mapping[str, Any]
    columns: Mapping[str, str] = field(default_factory=dict)
    _split: Split | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, n: int, seed: int) -> TrainData:
        """A seeded random subset of at most ``n`` rows (their features shared with the whole set)."""
        index = subset_indices(len(self), n, seed)
        split = self._split.select(index)
        return replace(self, rows=split.data, _split=split)


@dataclass(frozen=True)
class TrainModel:
    """Features of a frozen model a trainer uses."""

    name: str
    model: Any
    record: Mapping[str, Any]
    _features: Features = field(repr=False)

    @property
    def embed_dim(self) -> int | None:
        return getattr(self.model, "embed_dim", None)

    def images(self, data: TrainData, column: str, output: str = "pooled") -> np.ndarray:
        """Image features of ``data[column]`` in row order."""
        return self._features.images(data._split, column, where=f"{self.name}: images", output=output)

    def texts(self, strings: Sequence[str]) -> np.ndarray:
        """``(N, D)`` text features, in order."""
        return self._features.texts(list(strings), where=f"{self.name}: texts")


@dataclass
class TrainContext:
    """What a trainer receives (see the module docstring)."""

    trainer: str
    config: Mapping[str, Any]
    execution: ExecutionConfig
    output: Path
    compute: Compute
    _loader: ModelLoader = field(repr=False)
    used_models: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.execution.seed

    def model(self, name: str, capability: str, role: str) -> TrainModel:
        """A frozen model by harness name (it must declare ``capability``), recorded with ``role``."""
        loaded = self._loader.load(name, capability)
        record = loaded.record(role, self.execution.device)
        if record not in self.used_models:
            self.used_models.append(record)
        features = loaded.features(self.execution, self._loader.registries, self.compute.group)
        return TrainModel(loaded.spec.name, loaded.model, record, features)

    def data(self, name: str, split: str = "train", config: Mapping[str, Any] | None = None) -> TrainData:
        """Rows named by ``name``: a task (name or YAML: its dataset and column roles), a registered
        dataset builder (with ``config``), or a local dataset path."""
        from .runner import find_task

        registries = self._loader.registries
        columns: Mapping[str, str] = {}
        if name in registries.tasks or name.endswith((".yaml", ".yml")):
            spec, _ = find_task(name, registries)
            source, columns = replace(spec.dataset, split=split), spec.columns
        elif name in registries.datasets:
            source = DatasetSource(split=split, builder=name, config=dict(config or {}))
        elif Path(name).exists():
            source = DatasetSource(split=split, path=Path(name).resolve())
        else:
            raise UsageError(f"{self.trainer}: data {name!r} is not a task, task file, dataset builder "
                             f"({', '.join(registries.datasets)}) or local dataset path")
        loaded = load_dataset(source, registries, self.execution.progress, self.execution)
        return TrainData(loaded.data, loaded.identity, columns, loaded.split)

    def bar(self, iterable: Any = None, *, desc: str, total: int | None = None) -> Any:
        """A progress bar (silent with ``--quiet``, off a terminal, and on ranks other than 0)."""
        return progress_bar(iterable, desc, total, self.execution.progress and self.compute.main)

    def save(self, files: Mapping[str, bytes | str], meta: Mapping[str, Any] | None = None) -> Path:
        """Write ``files`` (name -> content) into the output folder, each atomically, then
        ``harness-train.json`` (trainer, config, seed, harness version, the frozen models with their
        weights and code fingerprints, ``meta``). Only the main process writes."""
        import harness

        if not self.compute.main:
            return self.output
        for name, content in files.items():
            if Path(name).name != name:
                raise UsageError(f"{self.trainer}: checkpoint file name {name!r} must be a plain file name")
            data = content.encode("utf-8") if isinstance(content, str) else content
            write_bytes_atomic(self.output / name, data)
        record = {"trainer": self.trainer, "harness_version": harness.__version__, "seed": self.seed,
                  "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                  "config": dict(self.config), "models": self.used_models, "files": sorted(files), **(meta or {})}
        write_text_atomic(self.output / RECORD, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        return self.output


def add_trainer_options(parser: Any, spec: TrainerSpec) -> None:
    """``--NAME`` options for each top-level property of the trainer's config schema; a property whose
    option would clash with one ``harness train`` already has (``--batch-size``, ``--seed``, ...) is set
    with ``--set NAME=VALUE`` or ``--config`` only."""
    types = {"integer": int, "number": float, "string": str}
    for name, sub in (spec.config_schema.get("properties") or {}).items():
        flag = "--" + name.replace("_", "-")
        if flag in parser._option_string_actions:
            continue
        help_text = sub.get("description", "")
        if sub.get("type") == "boolean":
            parser.add_argument(flag, dest=f"cfg_{name}", action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif sub.get("type") in types:
            parser.add_argument(flag, dest=f"cfg_{name}", type=types[sub["type"]], default=None, help=help_text)
        else:  # objects and arrays: JSON text
            parser.add_argument(flag, dest=f"cfg_{name}", type=_json_value(flag), default=None,
                                help=f"{help_text} (JSON)")


def _json_value(flag: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{flag}: not JSON: {exc}") from None

    return parse


def _value(text: str) -> Any:
    """A ``--set`` value: JSON (so ``1e-3`` is a number), else YAML (``cosine``, ``[a, b]``)."""
    try:
        return json.loads(text)
    except ValueError:
        return parse_yaml(text, f"--set {text!r}", UsageError, invalid=f"--set: cannot read value {text!r}")


def trainer_config(args: Any, spec: TrainerSpec) -> dict[str, Any]:
    """The trainer's config: ``--config FILE``, then ``--set KEY=VALUE`` (YAML-typed), then its ``--NAME``
    options; validated against its schema with defaults filled in."""
    from .errors import SpecError
    from .schema import checked_params

    values: dict[str, Any] = {}
    if args.config is not None:
        loaded = read_yaml_file(args.config, name=f"--config {args.config}", error=UsageError, what="config file")
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {args.config}: expected a mapping")
        values.update(loaded)
    for item in args.overrides:
        key, eq, text = item.partition("=")
        if not eq:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        values[key.strip()] = _value(text)
    values.update({k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None})
    try:
        return checked_params(dict(spec.config_schema), values, f"harness train {spec.name}", field="config")
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def train(spec: TrainerSpec, config: Mapping[str, Any], execution: ExecutionConfig, output: Path,
          registries: Registries) -> Path:
    """Run trainer ``spec`` with ``config`` and write its checkpoint to ``output``."""
    from .specs import load_object

    execution, group = execution.joined()
    try:
        ctx = TrainContext(trainer=spec.name, config=config, execution=execution, output=Path(output),
                           compute=Compute(execution.device, execution.dtype, group),
                           _loader=ModelLoader(registries, execution))
        with blamed(f"trainer {spec.name!r} ({spec.factory})"):
            load_object(spec.factory)().train(ctx)
        return ctx.output
    finally:
        group.close()

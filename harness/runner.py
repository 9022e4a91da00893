"""One run: resolve and check everything, load the model once, evaluate each task, write results."""

from __future__ import annotations

import copy
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import harness

from .allocator import state as allocator_state
from .dataset import Split, load_dataset, subset_indices
from .errors import DataError, IncompatibleError, PluginError, UsageError, blamed
from .execution import ExecutionConfig
from .features import Features
from .hardware import numerics, peak_memory, process_seconds, reset_peak_memory
from .modelloader import LoadedModel, ModelLoader
from .processgroup import ProcessGroup
from .registry import Registries
from .result import SCHEMA_VERSION, validate_result
from .records import build_records, records_digest, records_path, records_text
from .resultfile import check_output_dir, keep_unsaved, result_name, result_path
from .scoring import GROUPS, SampleScores, score_samples
from .specs import ModelSpec, TaskKindSpec, load_object
from .taskkind import Compute, TaskContext
from .taskspec import DatasetSource, TaskSpec, load_task_spec

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class RunConfig:
    """Everything ``harness run`` was asked to do for one model."""

    model: str
    tasks: tuple[str, ...]
    execution: ExecutionConfig = ExecutionConfig()
    limit: int | None = None
    output_dir: Path = Path("results")
    writers: tuple[str, ...] = ("json",)


@dataclass(frozen=True)
class Plan:
    """The run after name resolution and compatibility checks, before anything heavy loads."""

    model: ModelSpec
    model_plugin: str
    tasks: tuple[tuple[TaskSpec, TaskKindSpec, str], ...]


def find_task(name: str, registries: Registries) -> tuple[TaskSpec, str]:
    """(validated spec, providing plugin) of a registered task name or a task YAML path."""
    if name.endswith((".yaml", ".yml")) and name not in registries.tasks:
        return load_task_spec(Path(name), registries), "(file)"
    entry = registries.tasks.entry(name)
    return load_task_spec(entry.item, registries), entry.plugin


def plan(config: RunConfig, registries: Registries) -> Plan:
    """Resolve the model and tasks and check they fit, without importing torch."""
    model, plugin = registries.resolve_model(config.model)
    from .suite import expand_tasks

    tasks = []
    for name in expand_tasks(config.tasks, registries):  # a suite runs its tasks
        spec, task_plugin = find_task(name, registries)
        kind = registries.task_kinds.get(spec.kind)
        missing = kind.needs - model.capabilities
        if missing:
            raise IncompatibleError(
                f"model {model.name!r} has capabilities {sorted(model.capabilities)} but task {spec.name!r} "
                f"(kind {kind.name!r}) needs {sorted(kind.needs)}"
            )
        tasks.append((spec, kind, task_plugin))
    identities = [(spec.name, spec.sha256) for spec, _, _ in tasks]
    for name, sha in identities:
        if identities.count((name, sha)) > 1:
            raise UsageError(f"--task: task {name!r} (spec {sha[:12]}) is given more than once; each task runs once")
    for writer in config.writers:
        registries.writers.get(writer)
    check_output_dir(config.output_dir)
    return Plan(model=model, model_plugin=plugin, tasks=tuple(tasks))


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(config: RunConfig, registries: Registries) -> list[Path]:
    """Evaluate ``config.model`` on every task; return the paths written (none on ranks other than 0)."""
    return list(run_models([config], registries))


def run_models(configs: list[RunConfig], registries: Registries) -> Iterator[Path]:
    """:func:`run` for each config in turn (e.g. one per ``--model``), yielding paths as they are
    written; every config is planned and checked before any model loads, and under torchrun the
    process group is joined once for all of them. Models load through one :class:`ModelLoader`, so a
    tower shared by several models' tasks loads once."""
    plans = [plan(config, registries) for config in configs]
    execution, group = configs[0].execution.joined()
    loader = ModelLoader(registries, execution)
    try:
        for config, the_plan in zip(configs, plans):
            yield from _run_one(replace(config, execution=execution), the_plan, loader, group)
    finally:
        group.close()


def _run_one(config: RunConfig, the_plan: Plan, loader: ModelLoader, group: ProcessGroup) -> list[Path]:
    registries = loader.registries
    if group.main:
        registries.pm.notify("harness_run_started", run=config)
    prepared = [prepare_task(config, loader, task, group) for task in the_plan.tasks]
    loaded = loader.load(config.model)
    written = []
    for task in prepared:
        evaluated = evaluate_task(config, loaded, loader, task, group)
        if evaluated is None:
            continue
        doc, records = evaluated
        validate_result(doc, f"result of {task.spec.name}")
        registries.pm.notify("harness_task_finished", run=config, result=copy.deepcopy(doc))
        written += _write(config, registries, doc, records)
    return written


def _write(config: RunConfig, registries: Registries, doc: dict[str, Any], records: str) -> list[Path]:
    """Hand the result to every writer; if one cannot write (full disk, a file where a folder
    should be), keep the result under the cache root and end with one line saying where."""
    written = []
    for writer in config.writers:
        spec = registries.writers.get(writer)
        try:
            with blamed(f"writer {writer!r} ({spec.factory})"):
                written.append(load_object(spec.factory)(copy.deepcopy(doc), config.output_dir, records))
        except PluginError as exc:
            if isinstance(exc.__cause__, OSError):
                raise keep_unsaved(doc, records, exc.__cause__, result_path(doc, config.output_dir),
                                   config.execution.cache_dir) from None
            raise
    return written


@dataclass(frozen=True)
class PreparedTask:
    """A task whose data is loaded and checked by its kind, before any model loads."""

    spec: TaskSpec
    kind: TaskKindSpec
    plugin: str
    context: TaskContext
    """The kind's context, without a model yet (see :func:`evaluate_task`)."""
    whole: Split
    evaluated: int
    load_data_s: float


def prepare_task(config: RunConfig, loader: ModelLoader, task: tuple[TaskSpec, TaskKindSpec, str],
                 group: ProcessGroup = ProcessGroup()) -> PreparedTask:
    """Load the task's data (``--limit`` applied) and run its kind's optional ``check(ctx)``, so that
    data and spec problems end the run before any model loads."""
    spec, kind, task_plugin = task
    execution = config.execution
    start = time.perf_counter()
    load_split = _split_loader(spec, loader, group)
    whole = load_split(spec.dataset.split)
    index = subset_indices(len(whole), config.limit, execution.seed)
    split = whole if len(index) == len(whole) else whole.select(index)
    ctx = TaskContext(name=spec.name, params=spec.params, columns=spec.columns, seed=execution.seed,
                      compute=Compute(execution.device, execution.dtype, group), split=spec.dataset.split,
                      _evaluated=split, _load_split=load_split, _features=None, _loader=loader,
                      _progress=execution.progress)
    check = getattr(load_object(kind.factory)(), "check", None)
    if check is not None:
        with blamed(f"task kind {kind.name!r} ({kind.factory}): check"):
            check(ctx)
    return PreparedTask(spec, kind, task_plugin, ctx, whole, len(index), time.perf_counter() - start)


def check_columns(split: Split, spec: TaskSpec, where: str) -> None:
    """Every column the spec maps must exist in ``split`` (checked before anything is extracted)."""
    missing = sorted({c for c in spec.columns.values() if c not in split.data.column_names})
    if missing:
        raise DataError(f"{where}: the spec maps column(s) {missing}, which the dataset does not have; "
                        f"its columns are {split.data.column_names}")


def _split_loader(spec: TaskSpec, loader: ModelLoader, group: ProcessGroup) -> Any:
    """``split name -> Split`` of the task's dataset, each loaded once and its columns checked."""
    loaded: dict[str, Split] = {}
    progress = loader.execution.progress

    def load_split(split: str) -> Split:
        if split not in loaded:
            source: DatasetSource = replace(spec.dataset, split=split)
            with group.main_first():
                loaded[split] = load_dataset(source, loader.registries, progress, loader.execution).split
            check_columns(loaded[split], spec, f"task {spec.name}: split {split!r}")
        return loaded[split]

    return load_split


def evaluate_task(config: RunConfig, loaded: LoadedModel, loader: ModelLoader, task: PreparedTask,
                  group: ProcessGroup = ProcessGroup()) -> tuple[dict[str, Any], str] | None:
    """Evaluate one prepared task: its (not yet validated) result document and per-sample records
    text (None on ranks other than 0)."""
    spec, kind = task.spec, task.kind
    execution, registries = config.execution, loader.registries
    _seed_everything(execution.seed)
    reset_peak_memory(execution.device)
    start = time.perf_counter()
    parts_before = [part.counters() for part in loaded.parts]
    features = loaded.features(execution, registries, group)
    generations = loaded.generations(execution, registries, group)
    ctx = replace(task.context, _features=features, _generations=generations)
    kind_start = time.perf_counter()
    with blamed(f"task kind {kind.name!r} ({kind.factory})"):
        outputs = load_object(kind.factory)().evaluate(ctx)
    kind_s = time.perf_counter() - kind_start
    counters = group.gather({**asdict(features.counters), **{f"gen_{k}": v for k, v in asdict(generations.counters).items()}})
    if not group.main:
        return None
    metric_start = time.perf_counter()
    metrics, samples, arrays = score_samples(kind.name, spec.metrics, registries.metrics, outputs, execution.seed)
    end = time.perf_counter()
    times = {"load_model": loaded.load_s, "load_data": task.load_data_s, "kind": kind_s,
             "metrics": end - metric_start, "total": loaded.load_s + task.load_data_s + end - start}
    doc = _document(config, loaded, registries, (spec, task.plugin), task.whole, task.evaluated, features,
                    counters or [], times, metrics, group.world_size)
    text = records_text(_records(ctx, samples, arrays, kind.records))
    parts = [{**part.record, "cache": {k: v - before[k] for k, v in part.counters().items()}}
             for part, before in zip(loaded.parts, parts_before)]
    doc = dict(doc, auxiliary_models=[*parts, *ctx.used_models])
    doc["records"] = {"file": records_path(Path(result_name(doc))).name, "sha256": records_digest(text),
                      "n": text.count("\n")}
    return doc, text


def _records(ctx: TaskContext, samples: dict[str, SampleScores], arrays: dict[str, np.ndarray],
             fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per-sample records: each output row's sample id (the evaluated rows' ids when the kind
    returned one row per evaluated row, else ``#<position>``), its per-metric scores and the
    outputs the kind keeps (``fields``)."""
    missing = [name for name in fields if name not in arrays]
    if missing:
        raise PluginError(f"{ctx.where}: the kind keeps {missing} in its records but did not return them")
    n = len(next(iter(arrays.values()))) if arrays else 0
    evaluated = ctx._evaluated
    ids = evaluated.sample_ids() if len(evaluated) == n else [f"#{i}" for i in range(n)]
    return build_records(ids, {name: s.scores for name, s in samples.items()},
                         {name: s.classes for name, s in samples.items() if s.classes is not None},
                         arrays.get(GROUPS), {name: arrays[name] for name in fields})


def cost_rates(counters: list[dict[str, Any]]) -> dict[str, float | None]:
    """``images_per_s``, ``texts_per_s``, ``requests_per_s`` and ``tokens_per_s`` of the gathered
    counters (one per rank): what all ranks computed over the slowest rank's time, each rate over
    its own time -- images over the time inside ``ctx.images``, texts over the time inside
    ``ctx.texts``, requests and tokens over generation time; None when nothing was computed."""

    def rate(count: str, seconds: str) -> float | None:
        n, s = sum(c[count] for c in counters), max(c[seconds] for c in counters)
        return round(n / s, 3) if n and s else None

    return {"images_per_s": rate("images", "image_seconds"), "texts_per_s": rate("texts", "text_seconds"),
            "requests_per_s": rate("gen_requests", "gen_seconds"), "tokens_per_s": rate("gen_tokens", "gen_seconds")}


def _document(config: RunConfig, loaded: LoadedModel, registries: Registries,
              task: tuple[TaskSpec, str], whole: Split, evaluated: int, features: Features,
              counters: list[dict[str, Any]], times: dict[str, float], metrics: dict[str, Any],
              world_size: int) -> dict[str, Any]:
    """The result document of one task, less ``auxiliary_models``."""
    import torch

    spec, task_plugin = task
    images, texts = sum(c["images"] for c in counters), sum(c["texts"] for c in counters)
    extract_s = max(c["seconds"] for c in counters)
    requests = sum(c["gen_requests"] for c in counters)
    generate_s = max(c["gen_seconds"] for c in counters)
    diffs = [c["max_abs_diff"] for c in counters if c["max_abs_diff"] is not None]
    check = None
    execution = config.execution
    if execution.check_determinism:
        used = features.batch_size_used or 1
        check = {"batch_sizes": [used, max(1, (used + 1) // 2)], "max_abs_diff": max(diffs) if diffs else None}
        print(f"harness: {spec.name}: determinism check: largest per-sample |difference| between batch sizes "
              f"{check['batch_sizes'][0]} and {check['batch_sizes'][1]}: {check['max_abs_diff']}", file=sys.stderr)
    r = lambda x: round(x, 4)  # noqa: E731
    return {
        "schema_version": SCHEMA_VERSION,
        "harness_version": harness.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "plugins": [vars(p) for p in registries.pm.plugins_info()],
        "model": {**loaded.record(), "capabilities": sorted(loaded.spec.capabilities),
                  "embed_dim": getattr(loaded.model, "embed_dim", None)},
        "task": {"name": spec.name, "version": spec.version, "kind": spec.kind,
                 "spec_sha256": spec.sha256, "plugin": task_plugin},
        "dataset": whole.identity,
        "n_samples": {"total": len(whole), "evaluated": evaluated, "partial": evaluated < len(whole)},
        "seed": execution.seed,
        "execution": {"device": execution.device, "dtype": execution.dtype, "dtype_mode": "autocast",
                      "allocator": allocator_state(),
                      "batch_size": features.batch_size_used,
                      "batch_size_requested": execution.batch_size, "num_workers": execution.num_workers,
                      "num_workers_used": features.workers_used,
                      "preprocess": list(features.preprocess_used),
                      "world_size": world_size, "torch_version": torch.__version__,
                      "python_version": platform.python_version(),
                      "determinism": {**numerics(execution.device, execution.dtype, features.channels_last,
                                                                 loaded.attention(execution.device)),
                                      "check": check}},
        "cache": {"enabled": execution.cache, "image_hits": features.counters.image_hits, "image_misses": images,
                  "text_hits": features.counters.text_hits, "text_misses": texts,
                  "response_hits": counters[0]["gen_request_hits"], "response_misses": requests},
        "metrics": metrics,
        "main_score": {"name": spec.main_score, "value": metrics[spec.main_score]["value"]},
        "cost": {
            "wall_time_s": r(times["total"]),
            **cost_rates(counters),
            "phases_s": {"load_model": r(times["load_model"]), "load_data": r(times["load_data"]),
                         "extract": r(extract_s), "generate": r(generate_s),
                         "task": r(max(0.0, times["kind"] - extract_s - generate_s)),
                         "metrics": r(times["metrics"])},
            **peak_memory(execution.device),
            "process_s": r(process_seconds()),  # the whole process so far, imports included
        },
    }

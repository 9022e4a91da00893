"""Load a task's data (pinned hub dataset, local path or registered builder) as a `datasets.Dataset`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from .contenthash import content_fingerprint
from .errors import DataError
from .execution import ExecutionConfig
from .specs import load_object
from .taskspec import DatasetSource

if TYPE_CHECKING:
    import datasets

    from .registry import Registries

_FILE_TYPES = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}
#: Files that ``datasets`` itself writes into a local dataset (e.g. ``filter`` on a ``load_from_disk``
#: dataset caches its result beside the data): not part of the content identity.
_DERIVED = {"load_from_disk": ("cache-*.arrow",)}


@dataclass(frozen=True)
class LoadedDataset:
    """The rows of one split and what identifies them in results."""

    data: datasets.Dataset
    identity: dict[str, Any]

    @property
    def split(self) -> Split:
        """All rows, with the identity the feature store keys them by."""
        return Split(self.data, self.identity)


@dataclass(frozen=True)
class Split:
    """Rows of a split (all, or a subset), what identifies the whole split, and each row's number in it.

    The feature store keys a row by the split's ``identity`` and the row's sample id: the value
    of an ``id`` column when the whole split has one with unique values, else the row number in
    the whole split (kept through :meth:`select`, so a ``--limit`` subset shares features with a
    full run). For reading, a Split stands in for its ``datasets.Dataset``: ``len``, indexing,
    ``features``, ``column_names`` and other attributes are the data's.
    """

    data: datasets.Dataset
    identity: dict[str, Any] | None = None
    rows: np.ndarray | None = None
    """Row numbers of ``data`` in the whole split; None when ``data`` is the whole split."""
    whole: datasets.Dataset | None = None
    """The whole split when ``data`` is a subset of it."""

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("data", "identity", "rows", "whole"):
            raise AttributeError(name)
        return getattr(self.data, name)

    def select(self, index: Any) -> Split:
        """The rows at positions ``index`` of this split, keeping their numbers in the whole split."""
        index = np.asarray(index, dtype=np.int64)
        rows = index if self.rows is None else self.rows[index]
        return Split(self.data.select(index), self.identity, rows, self.whole if self.whole is not None else self.data)

    def sample_ids(self) -> list[str]:
        """The store's id of every row (see the class docstring), as strings."""
        whole = self.whole if self.whole is not None else self.data
        if "id" in whole.column_names:
            all_ids = [str(v) for v in whole["id"]]
            if len(set(all_ids)) == len(all_ids):
                return all_ids if self.rows is None else [all_ids[int(r)] for r in self.rows]
        rows = range(len(self.data)) if self.rows is None else self.rows
        return [f"#{int(r)}" for r in rows]


def _from_hub(source: DatasetSource) -> tuple[datasets.Dataset, dict[str, Any]]:
    import datasets

    try:
        data = datasets.load_dataset(source.hub, source.name, revision=source.revision, split=source.split)
    except Exception as exc:  # offline, missing split, auth: all end the run the same way
        raise DataError(
            f"cannot load hub dataset {source.hub!r}@{source.revision} split {source.split!r}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            " (the hub is unreachable offline: use a local `path:` dataset)"
        ) from None
    identity = {"source": "hub", "id": source.hub + (f"/{source.name}" if source.name else ""),
                "revision": source.revision, "fingerprint": data._fingerprint}
    return data, identity


def _from_path(source: DatasetSource,
               execution: ExecutionConfig | None = None) -> tuple[datasets.Dataset, dict[str, Any]]:
    """A local dataset, identified by its content (:func:`harness.contenthash.content_fingerprint`; file
    digests remembered under ``execution.root`` unless there is no execution or it runs ``--no-cache``)."""
    import datasets

    path = Path(source.path)
    if not path.exists():
        raise DataError(f"dataset path {str(path)!r} does not exist")
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loader = "load_from_disk"
            data = datasets.load_from_disk(str(path))
            if isinstance(data, datasets.DatasetDict):
                data = data[source.split]
        elif path.is_dir():
            loader = "imagefolder"
            data = datasets.load_dataset("imagefolder", data_dir=str(path), split=source.split)
        elif path.suffix in _FILE_TYPES:
            loader = _FILE_TYPES[path.suffix]
            data = datasets.load_dataset(loader, data_files={source.split: str(path)}, split=source.split)
        else:
            raise DataError(f"dataset path {str(path)!r}: unsupported file type (use {', '.join(_FILE_TYPES)} or a folder)")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot load dataset at {str(path)!r} split {source.split!r}: {type(exc).__name__}: {exc}") from None
    cache_root = execution.root if execution is not None and execution.cache else None
    try:
        fingerprint = content_fingerprint(path, loader, cache_root, _DERIVED.get(loader, ()))
    except OSError as exc:
        raise DataError(f"dataset path {str(path)!r}: cannot read {exc.filename or 'a file'}: "
                        f"{exc.strerror or exc}") from None
    identity = {"source": "path", "id": str(path), "revision": None, "fingerprint": fingerprint}
    return data, identity


def _from_builder(source: DatasetSource, registries: Registries,
                  execution: ExecutionConfig) -> tuple[datasets.Dataset, dict[str, Any]]:
    spec = registries.datasets.get(source.builder)
    config = dict(source.config)
    try:
        data = load_object(spec.factory)(config, source.split, execution)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"dataset builder {spec.name!r} rejected config {config} split {source.split!r}: {exc}") from None
    identity = {"source": "builder", "id": spec.name, "revision": spec.version,
                "fingerprint": data._fingerprint, "config": config}
    return data, identity


def load_dataset(source: DatasetSource, registries: Registries, progress: bool = False,
                 execution: ExecutionConfig | None = None) -> LoadedDataset:
    """Load the split named by ``source``; ``datasets`` shows progress bars only with ``progress``;
    a builder gets ``execution`` (its cache root: ``execution.root``). A local ``path`` is identified
    by the content of its files (``identity["fingerprint"]``), not by paths and modification times."""
    import datasets

    if progress:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
    if source.hub is not None:
        data, identity = _from_hub(source)
    elif source.path is not None:
        data, identity = _from_path(source, execution)
    else:
        data, identity = _from_builder(source, registries, execution or ExecutionConfig())
    identity["split"] = source.split
    return LoadedDataset(data=data, identity=identity)


def subset_indices(total: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a ``--limit`` run: a seeded random subset, sorted; all rows without a limit."""
    if limit is None or limit >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=limit, replace=False))


_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _expanded(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: config.{key} must be a non-empty path string, got {value!r}")
    unset = [m.group(1) for m in _VARIABLE.finditer(value) if m.group(1) not in os.environ]
    if unset:
        raise DataError(f"{where}: config.{key} {value!r}: environment variable {unset[0]} is not set")
    return os.path.expanduser(os.path.expandvars(value))


def builder_paths(config: Mapping[str, Any], builder: str, allowed: Iterable[str], required: Iterable[str],
                  files: Iterable[str] = (), folders: Iterable[str] = (),
                  either: Iterable[str] = ()) -> dict[str, Path]:
    """The paths of a dataset builder's config, checked, with one DataError line for each problem:
    unknown or missing keys; ``~`` and ``${VAR}`` expanded (an unset variable is an error);
    relative paths resolved inside ``config["root"]`` (an absolute folder) and refused without it
    (builder configs are not read relative to the spec); ``files`` must be files, ``folders``
    folders, ``either`` one or the other. Returns key -> path for the path keys present.
    Public API for dataset builders (``harness.builder_paths``)."""
    where = f"dataset builder {builder!r}"
    allowed = set(allowed)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown config key(s) {', '.join(map(repr, unknown))}; allowed: "
                        f"{', '.join(sorted(allowed))}")
    missing = [key for key in required if key not in config]
    if missing:
        raise DataError(f"{where}: config.{missing[0]} is required (keys: {', '.join(sorted(allowed))})")
    root = None
    if "root" in config:
        root = Path(_expanded(config["root"], "root", where))
        if not root.is_absolute():
            raise DataError(f"{where}: config.root {config['root']!r} must be an absolute path (after ~ and ${{VAR}})")
        if not root.is_dir():
            raise DataError(f"{where}: config.root: {str(root)!r} is not a folder")
    files, folders, either = list(files), list(folders), list(either)
    paths = {}
    for key in [*files, *folders, *either]:
        if key not in config:
            continue
        path = Path(_expanded(config[key], key, where))
        if not path.is_absolute():
            if root is None:
                raise DataError(f"{where}: config.{key} {config[key]!r} is relative: builder paths are not read "
                                "relative to the task spec; give an absolute path, ~, ${VAR}, or config.root")
            path = root / path
        if key in folders and not path.is_dir():
            raise DataError(f"{where}: config.{key}: {str(path)!r} is not a folder")
        if key in files and not path.is_file() or key in either and not path.exists():
            raise DataError(f"{where}: config.{key}: {str(path)!r} does not exist or is not a file")
        paths[key] = path
    return paths


def builder_json(path: Path, what: str, max_bytes: int, lines: bool = False) -> Any:
    """The JSON document in ``path`` (``lines``: a list of the JSON values of its non-blank lines),
    refused in one DataError line when larger than ``max_bytes``, unreadable or not valid JSON
    (``what`` names the file: ``"annotations file"``). Public API for dataset builders
    (``harness.builder_json``)."""
    import json

    try:
        if path.stat().st_size > max_bytes:
            raise DataError(f"{what} {str(path)!r} is larger than {max_bytes} bytes")
        text = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    try:
        if lines:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{what} {str(path)!r} is not valid JSON: {str(exc).splitlines()[0]}") from None


def builder_images(folder: Path, names: Sequence[str], labels: Sequence[str], where: str,
                   rows: str = "records") -> list[Path]:
    """``folder / name`` for every row, all checked to exist as files (each folder listed once, not a
    stat per image); one DataError line saying how many ``rows`` have none and naming the first
    (its ``label`` and image name). Public API for dataset builders (``harness.builder_images``)."""
    present: dict[Path, set[str]] = {}
    paths, missing = [], []
    for name, label in zip(names, labels):
        path = Path(folder) / name
        if path.parent not in present:
            try:
                present[path.parent] = {entry.name for entry in os.scandir(path.parent) if entry.is_file()}
            except OSError:
                present[path.parent] = set()
        if path.name not in present[path.parent]:
            missing.append((label, name))
        paths.append(path)
    if missing:
        label, name = missing[0]
        raise DataError(f"{where}: {len(missing)} of {len(names)} {rows} have no image file in {str(folder)!r} "
                        f"(first: {label}, image {name!r})")
    return paths

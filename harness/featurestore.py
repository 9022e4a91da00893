"""A content-addressed store of features, reused across tasks, runs and processes.

A *feature set* is everything one encoder produced for one kind of input, named by a key
(a JSON object: for images the encoder name and weights fingerprint, the preprocessing
fingerprint, the dataset identity, the column, the output and the dtype; for texts the
encoder; for other plugins anything they choose). Within a set every row is addressed by a
sample id (a dataset's ``id`` column or row number; for texts the sha256 of the text).

Layout under the root (``$HARNESS_CACHE_DIR/features``, default ``~/.cache/harness/features``)::

    <set id>/key.json              the key (set id = sha256 of its canonical JSON, 32 hex digits)
    <set id>/manifest.jsonl        one line per shard: file, sha256, shape, sample ids
    <set id>/<sha256>.safetensors  a shard: tensor ``features`` (n, ...) float32; set id and sample ids in its metadata
    <set id>/.lock                 held (filelock) while the manifest changes

Shards are named by the sha256 of their bytes, written to a temporary file in the same folder,
fsynced and renamed into place; only then is their manifest line appended (under the lock, after
checking that no other writer covered the same ids meanwhile). Readers verify each shard's
checksum; a corrupt or missing shard is dropped from the manifest with a warning and its samples
read as missing, so the caller recomputes them. The manifest is append-only (a line per shard, not
one growing JSON document rewritten per shard): a process killed mid-append leaves at most a
partial last line, which readers skip and the next writer terminates. A killed writer loses at
most the shard it was writing; an orphaned shard file costs only disk (``harness cache verify``
removes it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .atomicfile import append_line, write_bytes_atomic, write_text_atomic
from .errors import HarnessError
from .execution import cache_root

#: Bumped when the layout or the meaning of keys changes: old sets are then simply never hit.
STORE_VERSION = 1
LOCK_TIMEOUT_S = 600.0
#: Unreferenced files younger than this may belong to a writer still at work; ``verify`` keeps them.
ORPHAN_AGE_S = 3600.0


class StoreError(HarnessError):
    """The feature store cannot be used (unwritable folder, lock timeout, unknown set)."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal values give equal text (and so equal digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def text_id(text: str) -> str:
    """The sample id of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SetSummary:
    """What ``harness cache ls`` shows for one feature set."""

    id: str
    key: dict[str, Any]
    samples: int
    shards: int
    bytes: int


class FeatureSet:
    """One keyed set of per-sample feature arrays (public API: plugins may read and write sets)."""

    def __init__(self, root: Path, key: Mapping[str, Any]) -> None:
        self.key = json.loads(canonical_json({"store_version": STORE_VERSION, **key}))
        self.id = hashlib.sha256(canonical_json(self.key).encode()).hexdigest()[:32]
        self.path = Path(root) / self.id
        self.manifest = self.path / "manifest.jsonl"

    @classmethod
    def at(cls, folder: Path) -> FeatureSet:
        """The set stored in ``folder`` (its key read from ``key.json``)."""
        feature_set = cls.__new__(cls)
        feature_set.key = json.loads((folder / "key.json").read_text("utf-8"))
        feature_set.id, feature_set.path, feature_set.manifest = folder.name, folder, folder / "manifest.jsonl"
        return feature_set

    def __repr__(self) -> str:
        return f"FeatureSet({self.id}, {self.path})"

    # -- reading ---------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """The manifest's shard entries, in write order (unparseable lines skipped)."""
        try:
            lines = self.manifest.read_bytes().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StoreError(f"feature store: cannot read {self.manifest}: {exc.strerror or exc}") from None
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a partial line left by a killed writer
            if isinstance(entry, dict) and {"file", "sha256", "ids"} <= entry.keys():
                entries.append(entry)
        return entries

    def sample_ids(self) -> set[str]:
        """Every sample id with features in the set (per the manifest; checksums not read)."""
        return {i for entry in self.entries() for i in entry["ids"]}

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found, values)``: a bool mask over ``ids`` and the ``(len(ids), ...)`` float32
        rows (zeros where not found; None when nothing was found). Corrupt shards are dropped."""
        wanted: dict[str, int] = {}
        for position, sample in enumerate(ids):
            wanted.setdefault(str(sample), position)
        found = np.zeros(len(ids), dtype=bool)
        values: np.ndarray | None = None
        plan: dict[str, tuple[dict[str, Any], list[int], list[int]]] = {}
        for entry in self.entries():
            for row, sample in enumerate(entry["ids"]):
                position = wanted.get(sample)
                if position is not None and not found[position]:
                    rows, positions = plan.setdefault(entry["file"], (entry, [], []))[1:]
                    rows.append(row)
                    positions.append(position)
                    found[position] = True
        found[:] = False
        for entry, rows, positions in plan.values():
            array = self._load(entry)
            if array is None:
                continue
            if values is None:
                values = np.zeros((len(ids), *array.shape[1:]), dtype=np.float32)
            values[positions] = array[rows]
            found[positions] = True
        if values is not None and len(wanted) < len(ids):  # duplicate ids in the request
            for position, sample in enumerate(ids):
                first = wanted[str(sample)]
                if first != position and found[first]:
                    values[position], found[position] = values[first], True
        return found, values

    def _load(self, entry: dict[str, Any]) -> np.ndarray | None:
        """The shard's array after checking its sha256; None (and the shard dropped) if bad."""
        path = self.path / entry["file"]
        try:
            blob = path.read_bytes()
        except OSError as exc:
            self.drop(entry["file"], f"unreadable ({type(exc).__name__})")
            return None
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            self.drop(entry["file"], "sha256 mismatch")
            return None
        from safetensors.numpy import load

        try:
            array = load(blob)["features"]
        except Exception as exc:  # safetensors raises its own error types on malformed files
            self.drop(entry["file"], f"unparseable ({type(exc).__name__})")
            return None
        if len(array) != len(entry["ids"]):
            self.drop(entry["file"], "row count differs from its manifest entry")
            return None
        return array

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the set's file lock (manifest changes happen only under it)."""
        import filelock

        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with filelock.FileLock(str(self.path / ".lock"), timeout=LOCK_TIMEOUT_S):
                yield
        except filelock.Timeout:
            raise StoreError(f"feature store: timed out after {LOCK_TIMEOUT_S:.0f}s waiting for {self.path}/.lock") from None

    def write(self, ids: Sequence[str], values: np.ndarray, info: Mapping[str, Any] | None = None) -> bool:
        """Store ``values`` (first axis = ``ids``) as one shard; False if every id was already stored."""
        from safetensors.numpy import save

        ids = [str(i) for i in ids]
        values = np.ascontiguousarray(values, dtype=np.float32)
        if len(ids) != len(values) or not ids:
            raise ValueError(f"feature store: {len(ids)} ids for {len(values)} rows")
        # one metadata entry: safetensors keeps metadata in a hash map, so several keys would be
        # serialised in a per-process random order and equal shards would get different bytes
        blob = save({"features": values}, metadata={"harness": json.dumps({"set": self.id, "ids": ids}, sort_keys=True)})
        sha = hashlib.sha256(blob).hexdigest()
        name = f"{sha}.safetensors"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not (self.path / name).exists():
                write_bytes_atomic(self.path / name, blob)
            with self.lock():
                if not (self.path / "key.json").exists():
                    write_text_atomic(self.path / "key.json", json.dumps(self.key, indent=2, sort_keys=True) + "\n")
                entries = self.entries()
                covered = {i for entry in entries for i in entry["ids"]}
                if covered.issuperset(ids):
                    if name not in {entry["file"] for entry in entries}:
                        (self.path / name).unlink(missing_ok=True)
                    return False
                entry = {"file": name, "sha256": sha, "shape": list(values.shape), "ids": ids,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(info or {})}
                append_line(self.manifest, json.dumps(entry, sort_keys=True))
        except OSError as exc:
            raise StoreError(f"feature store: cannot write to {self.path}: {exc.strerror or exc}") from None
        return True

    def drop(self, file: str, reason: str) -> None:
        """Remove a shard and its manifest lines (its samples will be recomputed)."""
        warnings.warn(f"feature store: shard {file[:16]} of set {self.id[:12]} is {reason}; "
                      "dropping it (its samples are recomputed)", stacklevel=3)
        with self.lock():
            kept = [entry for entry in self.entries() if entry["file"] != file]
            write_text_atomic(self.manifest, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
            (self.path / file).unlink(missing_ok=True)

    def verify(self) -> tuple[int, int, int]:
        """Check every shard's checksum, drop bad ones, delete old orphans: ``(ok, dropped, orphans)``."""
        ok = dropped = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for entry in self.entries():
                if self._load(entry) is None:
                    dropped += 1
                else:
                    ok += 1
        referenced = {entry["file"] for entry in self.entries()} | {"key.json", "manifest.jsonl", ".lock"}
        orphans = 0
        for path in self.path.iterdir() if self.path.is_dir() else []:
            if path.name not in referenced and time.time() - path.stat().st_mtime > ORPHAN_AGE_S:
                path.unlink(missing_ok=True)
                orphans += 1
        return ok, dropped, orphans

    def summary(self) -> SetSummary:
        entries = self.entries()
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()) if self.path.is_dir() else 0
        return SetSummary(self.id, self.key, len({i for e in entries for i in e["ids"]}), len(entries), size)


class FeatureStore:
    """A folder of feature sets. ``FeatureStore.default()`` is the one runs use."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def default(cls, cache_dir: Path | str | None = None) -> FeatureStore:
        """``<cache root>/features`` (see :func:`cache_root`)."""
        return cls(cache_root(cache_dir) / "features")

    def open(self, key: Mapping[str, Any]) -> FeatureSet:
        """The set named by ``key`` (created on its first write)."""
        return FeatureSet(self.root, key)

    def sets(self) -> list[FeatureSet]:
        """Every set with a readable key, sorted by id."""
        found = []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            try:
                found.append(FeatureSet.at(folder))
            except (OSError, ValueError):
                continue
        return found

    def find(self, prefix: str) -> FeatureSet:
        """The one set whose id starts with ``prefix``."""
        matches = [s for s in self.sets() if s.id.startswith(prefix)]
        if len(matches) != 1:
            what = "no feature set" if not matches else f"{len(matches)} feature sets"
            raise StoreError(f"{what} in {self.root} with an id starting {prefix!r} (see `harness cache ls`)")
        return matches[0]

    def remove(self, feature_set: FeatureSet) -> None:
        """Delete a set (under its lock, so no writer is mid-append)."""
        with feature_set.lock():
            for path in feature_set.path.iterdir():
                if path.name != ".lock":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        shutil.rmtree(feature_set.path, ignore_errors=True)

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

The manifest is not trusted: a line is used only if its ``file`` is a shard name
(``<64 hex>.safetensors``, equal to its ``sha256``) inside the set's folder, with ids and a shape
that agree; anything else is ignored with a warning (``harness cache verify`` removes the line).
Every file is read without following symbolic links, only if it is a regular file, and only up
to a size bound checked before reading (a shard: its manifest shape times 4 bytes plus header
room; ``key.json`` 1 MiB; the manifest 1 GiB). Only a shard that was read and found corrupt
(checksum, format or size) is deleted; one that cannot be read (another user's file without
read permission, a symbolic link, a device) is left in place and its samples are recomputed.
A cache folder that cannot be written (a read-only or another group's cache) still serves what
it holds: new features are computed but not cached, with one warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .atomicfile import (UnsafeFileError, append_line, file_lock, is_real_dir, is_regular, read_regular,
                         write_bytes_atomic, write_text_atomic)
from .errors import HarnessError
from .execution import cache_root

#: Bumped when the layout or the meaning of keys changes: old sets are then simply never hit.
STORE_VERSION = 1
LOCK_TIMEOUT_S = 600.0
#: Unreferenced files younger than this may belong to a writer still at work; ``verify`` keeps them.
ORPHAN_AGE_S = 3600.0
#: A shard's file name: the sha256 of its bytes. Manifest entries naming anything else are ignored.
SHARD_NAME = re.compile(r"[0-9a-f]{64}\.safetensors")
#: A set's folder name: the first 32 hex digits of the sha256 of its key.
SET_NAME = re.compile(r"[0-9a-f]{32}")
MAX_KEY_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 1 << 30
#: Room allowed in a shard beyond its float32 values and (twice) its metadata: header framing and padding.
SHARD_HEADER_SLACK = 1 << 16
#: Cache folders already warned about as unwritable in this process (one warning each).
_UNWRITABLE_WARNED: set[str] = set()


class StoreError(HarnessError):
    """The feature store cannot be used (unwritable folder, lock timeout, unknown set)."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal values give equal text (and so equal digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def text_id(text: str) -> str:
    """The sample id of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def permission_denied(exc: BaseException) -> bool:
    """An OSError that says this user may not (EACCES, EPERM) or nobody can (EROFS) do it."""
    return isinstance(exc, PermissionError) or (isinstance(exc, OSError)
                                                and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS))


def entry_problem(entry: Mapping[str, Any]) -> str | None:
    """Why a manifest entry cannot be used (None if it can): its file must be a shard name in the
    set's folder matching its sha256, its ids strings, its shape a list of sizes led by their count."""
    file, sha, ids, shape = entry.get("file"), entry.get("sha256"), entry.get("ids"), entry.get("shape")
    if not isinstance(file, str) or not SHARD_NAME.fullmatch(file):
        return "its file is not a shard name (<64 hex>.safetensors) in the set's folder"
    if sha != file[:64]:
        return "its sha256 is not its file's name"
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return "its ids are not a list of strings"
    if (not isinstance(shape, list) or not shape or shape[0] != len(ids)
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
        return "its shape does not match its ids"
    return None


def max_shard_bytes(entry: Mapping[str, Any], set_id: str) -> int:
    """The largest file the shard of ``entry`` can be: float32 values, metadata (escaped at most twice over)."""
    metadata = json.dumps({"set": set_id, "ids": entry["ids"]}, sort_keys=True)
    return 8 + 4 * math.prod(entry["shape"]) + 2 * len(metadata) + SHARD_HEADER_SLACK


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


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
        self._unwritable = False

    @classmethod
    def at(cls, folder: Path) -> FeatureSet:
        """The set stored in ``folder`` (its key read from ``key.json``: a regular file of at most 1 MiB)."""
        folder = Path(folder)
        if not is_real_dir(folder):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder (or a symbolic link)", str(folder))
        key = json.loads(read_regular(folder / "key.json", MAX_KEY_BYTES).decode("utf-8"))
        if not isinstance(key, dict):
            raise ValueError(f"{folder / 'key.json'} holds no JSON object")
        feature_set = cls.__new__(cls)
        feature_set.key = key
        feature_set.id, feature_set.path, feature_set.manifest = folder.name, folder, folder / "manifest.jsonl"
        feature_set._unwritable = False
        return feature_set

    def __repr__(self) -> str:
        return f"FeatureSet({self.id}, {self.path})"

    def _warn(self, message: str) -> None:
        warnings.warn(f"feature store: {message}", stacklevel=4)

    def _folder_problem(self) -> str | None:
        """Why the set's folder must not be used (it exists but is a symbolic link or no folder)."""
        try:
            info = os.lstat(self.path)
        except OSError:
            return None
        if stat.S_ISLNK(info.st_mode):
            return "is a symbolic link"
        return None if stat.S_ISDIR(info.st_mode) else "is not a folder"

    # -- reading ---------------------------------------------------------------------------
    def _manifest_lines(self, strict: bool) -> tuple[list[bytes], bool]:
        """``(lines, replace)``: the manifest's lines, and whether a writer must replace (not append to) it.

        A missing manifest is empty. One that is a symbolic link, no regular file or too large is
        ignored with a warning (and replaced by the next writer). One this user may not read is
        ignored with a warning, or with ``strict`` (writers) raises its ``PermissionError``.
        """
        try:
            return read_regular(self.manifest, MAX_MANIFEST_BYTES).splitlines(), False
        except (FileNotFoundError, NotADirectoryError):
            return [], False
        except UnsafeFileError as exc:
            if not strict:
                self._warn(f"ignoring the manifest of set {self.id[:12]} ({exc.strerror}); its samples are recomputed")
            return [], True
        except OSError as exc:
            if permission_denied(exc):
                if strict:
                    raise
                self._warn(f"cannot read the manifest of set {self.id[:12]} ({exc.strerror or exc}); "
                           "its samples are recomputed")
                return [], False
            raise StoreError(f"feature store: cannot read {self.manifest}: {exc.strerror or exc}") from None

    def _scan(self, strict: bool = False, warn: bool = True) -> tuple[list[dict[str, Any]], list[str], bool]:
        """``(entries, problems, replace)``: usable entries in write order, one line per ignored
        entry (warned about when ``warn``), and :meth:`_manifest_lines`' ``replace``."""
        lines, replace = self._manifest_lines(strict)
        entries, problems = [], []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a partial line left by a killed writer
            if not isinstance(entry, dict):
                continue
            problem = entry_problem(entry)
            if problem is None:
                entries.append(entry)
                continue
            problems.append(f"manifest entry {_shown(entry.get('file'))} of set {self.id[:12]} is ignored: {problem}")
            if warn:
                self._warn(f"{problems[-1]} (its samples are recomputed; `harness cache verify` removes the line)")
        return entries, problems, replace

    def entries(self) -> list[dict[str, Any]]:
        """The manifest's usable shard entries, in write order (partial lines skipped; entries that
        name no shard of this folder skipped with a warning)."""
        return self._scan()[0]

    def sample_ids(self) -> set[str]:
        """Every sample id with features in the set (per the manifest; checksums not read)."""
        return {i for entry in self.entries() for i in entry["ids"]}

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found, values)``: a bool mask over ``ids`` and the ``(len(ids), ...)`` float32
        rows (zeros where not found; None when nothing was found). Corrupt shards are dropped;
        a sample whose shard fails is looked for in the set's other shards."""
        found = np.zeros(len(ids), dtype=bool)
        problem = self._folder_problem()
        if problem is not None:
            self._warn(f"the folder of set {self.id[:12]} ({self.path}) {problem}: ignored, its samples are recomputed")
            return found, None
        wanted: dict[str, int] = {}
        for position, sample in enumerate(ids):
            wanted.setdefault(str(sample), position)
        values: np.ndarray | None = None
        entries = self.entries()
        failed: set[str] = set()
        while True:
            plan: dict[str, tuple[dict[str, Any], list[int], list[int]]] = {}
            planned = np.zeros(len(ids), dtype=bool)
            for entry in entries:
                if entry["file"] in failed:
                    continue
                for row, sample in enumerate(entry["ids"]):
                    position = wanted.get(sample)
                    if position is not None and not found[position] and not planned[position]:
                        rows, positions = plan.setdefault(entry["file"], (entry, [], []))[1:]
                        rows.append(row)
                        positions.append(position)
                        planned[position] = True
            if not plan:
                break
            for file, (entry, rows, positions) in plan.items():
                array = self._load(entry)
                if array is None:
                    failed.add(file)
                    continue
                if values is None:
                    values = np.zeros((len(ids), *array.shape[1:]), dtype=np.float32)
                elif values.shape[1:] != array.shape[1:]:
                    self._warn(f"shard {file[:16]} of set {self.id[:12]} has rows of shape {list(array.shape[1:])}, "
                               f"others {list(values.shape[1:])}: ignored, its samples are recomputed")
                    failed.add(file)
                    continue
                values[positions] = array[rows]
                found[positions] = True
        if values is not None and len(wanted) < len(ids):  # duplicate ids in the request
            for position, sample in enumerate(ids):
                first = wanted[str(sample)]
                if first != position and found[first]:
                    values[position], found[position] = values[first], True
        return found, values

    def _load(self, entry: dict[str, Any]) -> np.ndarray | None:
        """The shard's array after checking its size, sha256 and contents; None (with a warning) if
        it cannot be used. Only a shard read and found corrupt is deleted; one that cannot be read
        is left in place (another user's file) or, if it is no regular file, only forgotten."""
        file = entry["file"]
        try:
            blob = read_regular(self.path / file, max_shard_bytes(entry, self.id))
        except FileNotFoundError as exc:
            self.drop(file, f"unreadable ({type(exc).__name__})", delete=False)
            return None
        except UnsafeFileError as exc:
            if exc.errno == errno.EFBIG:
                self.drop(file, "larger than its manifest entry allows")
            else:
                self.drop(file, f"{exc.strerror} (not read, left in place)", delete=False)
            return None
        except OSError as exc:
            self._warn(f"shard {file[:16]} of set {self.id[:12]} is unreadable ({exc.strerror or type(exc).__name__}"
                       f"{': another user may own it' if permission_denied(exc) else ''}); "
                       "its samples are recomputed, the shard is left in place")
            return None
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            self.drop(file, "corrupt (sha256 mismatch)")
            return None
        from safetensors.numpy import load

        try:
            array = load(blob)["features"]
        except Exception as exc:  # safetensors raises its own error types on malformed files
            self.drop(file, f"unparseable ({type(exc).__name__})")
            return None
        if len(array) != len(entry["ids"]):
            self.drop(file, "row count differs from its manifest entry")
            return None
        if array.dtype != np.float32 or list(array.shape) != entry["shape"]:
            self.drop(file, "shape or dtype differs from its manifest entry")
            return None
        return array

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the set's file lock (manifest changes happen only under it). Raises ``OSError``
        (``PermissionError`` in a read-only cache) and :class:`StoreError` on a timeout."""
        import filelock

        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / ".lock"
        if os.path.islink(lock_path):  # never open (or truncate) a link's target
            lock_path.unlink()
        try:
            with file_lock(lock_path, LOCK_TIMEOUT_S):
                yield
        except filelock.Timeout:
            raise StoreError(f"feature store: timed out after {LOCK_TIMEOUT_S:.0f}s waiting for {self.path}/.lock") from None

    def _cannot_write(self, exc: OSError | None, what: str | None = None) -> None:
        """Remember that this set cannot be written; warn once per cache folder."""
        self._unwritable = True
        where = str(self.path.parent)
        if where not in _UNWRITABLE_WARNED:
            _UNWRITABLE_WARNED.add(where)
            where_failed = getattr(exc, "filename", None) or self.path
            why = what or f"cannot write to {where_failed} ({getattr(exc, 'strerror', None) or exc})"
            self._warn(f"{why}; features are computed but not cached")

    def write(self, ids: Sequence[str], values: np.ndarray, info: Mapping[str, Any] | None = None) -> bool:
        """Store ``values`` (first axis = ``ids``) as one shard; False if every id was already
        stored, or if the cache cannot be written (a read-only cache: one warning, nothing cached)."""
        from safetensors.numpy import save

        ids = [str(i) for i in ids]
        values = np.ascontiguousarray(values, dtype=np.float32)
        if len(ids) != len(values) or not ids:
            raise ValueError(f"feature store: {len(ids)} ids for {len(values)} rows")
        if self._unwritable:
            return False
        problem = self._folder_problem()
        if problem is not None:
            self._cannot_write(None, f"the folder of set {self.id[:12]} ({self.path}) {problem}")
            return False
        # one metadata entry: safetensors keeps metadata in a hash map, so several keys would be
        # serialised in a per-process random order and equal shards would get different bytes
        blob = save({"features": values}, metadata={"harness": json.dumps({"set": self.id, "ids": ids}, sort_keys=True)})
        sha = hashlib.sha256(blob).hexdigest()
        name = f"{sha}.safetensors"
        written = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not is_regular(self.path / name):  # a link or other non-file under the name is replaced, never followed
                write_bytes_atomic(self.path / name, blob)
                written = True
            with self.lock():
                if not is_regular(self.path / "key.json"):
                    write_text_atomic(self.path / "key.json", json.dumps(self.key, indent=2, sort_keys=True) + "\n")
                entries, _, replace = self._scan(strict=True, warn=False)
                wanted = set(ids)
                covered = {i for entry in entries if wanted.intersection(entry["ids"])
                           and is_regular(self.path / entry["file"]) for i in entry["ids"]}
                if covered.issuperset(ids):
                    if written and name not in {entry["file"] for entry in entries}:
                        (self.path / name).unlink(missing_ok=True)
                    return False
                entry = {"file": name, "sha256": sha, "shape": list(values.shape), "ids": ids,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(info or {})}
                if replace:  # the manifest was a link, a device or oversized: replaced, not written through
                    write_text_atomic(self.manifest, "".join(json.dumps(e, sort_keys=True) + "\n"
                                                             for e in [*entries, entry]))
                else:
                    append_line(self.manifest, json.dumps(entry, sort_keys=True))
        except OSError as exc:
            if permission_denied(exc):
                if written:
                    (self.path / name).unlink(missing_ok=True)
                self._cannot_write(exc)
                return False
            raise StoreError(f"feature store: cannot write to {self.path}: {exc.strerror or exc}") from None
        return True

    def drop(self, file: str, reason: str, delete: bool = True) -> bool:
        """Remove a shard's manifest lines and (``delete``) the shard itself, with a warning (its
        samples will be recomputed). Only a shard name in this folder is ever deleted, never
        through a link. In a cache this user cannot write, nothing changes (the warning says so);
        returns whether the manifest was changed."""
        if not SHARD_NAME.fullmatch(file):
            delete = False
        try:
            with self.lock():
                entries, _, _ = self._scan(strict=True, warn=False)
                kept = [entry for entry in entries if entry["file"] != file]
                write_text_atomic(self.manifest, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
                if delete and not stat.S_ISDIR(os.lstat(self.path / file).st_mode):
                    (self.path / file).unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        except (OSError, StoreError) as exc:
            self._unwritable = True  # one warning, this one: the writes that follow are silently skipped
            _UNWRITABLE_WARNED.add(str(self.path.parent))
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._warn(f"shard {file[:16]} of set {self.id[:12]} is {reason}; its samples are recomputed "
                       f"but not cached, and the shard stays: cannot change {self.path} ({why})")
            return False
        self._warn(f"shard {file[:16]} of set {self.id[:12]} is {reason}; "
                   f"{'dropping it' if delete else 'forgetting it'} (its samples are recomputed)")
        return True
    def verify(self, report: list[str] | None = None) -> tuple[int, int, int]:
        """Check every shard (size, checksum, contents), drop bad ones and manifest lines naming no
        shard of this folder, delete old orphans: ``(ok, dropped, orphans)``. ``report`` gets one
        line per problem. Nothing outside the folder is touched and no link is followed."""
        report = [] if report is None else report
        ok = dropped = 0
        problem = self._folder_problem()
        if problem is not None:
            report.append(f"the folder of set {self.id[:12]} ({self.path}) {problem}: not checked")
            return 0, 0, 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entries, invalid, replace = self._scan(warn=False)
            if invalid or replace:
                report.extend(invalid)
                try:
                    with self.lock():
                        kept, _, _ = self._scan(strict=True, warn=False)
                        write_text_atomic(self.manifest, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
                    dropped += len(invalid)
                    report.append(f"manifest of set {self.id[:12]}: {len(invalid)} unusable line(s) removed"
                                  if invalid else f"manifest of set {self.id[:12]} replaced (it was no regular file)")
                except (OSError, StoreError) as exc:
                    why = getattr(exc, "strerror", None) or exc
                    report.append(f"manifest of set {self.id[:12]} left as it is: {why}")
            for entry in entries:
                if self._load(entry) is None:
                    dropped += 1
                else:
                    ok += 1
        report.extend(str(w.message).removeprefix("feature store: ") for w in caught)
        referenced = {entry["file"] for entry in self._scan(warn=False)[0]} | {"key.json", "manifest.jsonl", ".lock"}
        orphans = 0
        for path in self.path.iterdir() if self.path.is_dir() else []:
            if path.name in referenced:
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode) or time.time() - info.st_mtime <= ORPHAN_AGE_S:
                continue  # the store makes no folders; a young file may be a writer's work in progress
            try:
                path.unlink()  # a symbolic link is removed itself, its target untouched
                orphans += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.append(f"orphan {path.name[:24]} of set {self.id[:12]} left in place: {exc.strerror or exc}")
        return ok, dropped, orphans

    def summary(self) -> SetSummary:
        entries = self.entries()
        size = 0
        for path in self.path.iterdir() if is_real_dir(self.path) else []:
            try:
                info = os.lstat(path)
            except OSError:
                continue
            size += info.st_size if stat.S_ISREG(info.st_mode) else 0
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
        """Every set with a readable key, sorted by id (folders named like a set id only, never links)."""
        found = []
        try:
            folders = sorted(self.root.iterdir()) if self.root.is_dir() else []
        except OSError as exc:
            raise StoreError(f"feature store: cannot list {self.root}: {exc.strerror or exc}") from None
        for folder in folders:
            if not SET_NAME.fullmatch(folder.name) or not is_real_dir(folder):
                continue
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
        """Delete a set (under its lock, so no writer is mid-append). Links inside it are removed
        themselves, never followed; a set folder that is itself a link is only unlinked."""
        folder = feature_set.path
        try:
            if os.path.islink(folder):
                folder.unlink()
                return
            with feature_set.lock():
                for path in folder.iterdir():
                    if path.name == ".lock":
                        continue
                    if stat.S_ISDIR(os.lstat(path).st_mode):
                        shutil.rmtree(path)  # a real folder: rmtree removes links inside it, never their targets
                    else:
                        path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"feature store: cannot remove {folder}: {exc.strerror or exc}") from None
        shutil.rmtree(folder, ignore_errors=True)

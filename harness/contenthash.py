"""Content identity of local datasets: a fingerprint of the bytes of every file, not of paths and times.

``datasets`` fingerprints a local folder by file paths and modification times, so images replaced
with ``cp -p`` (or unpacked from an archive with fixed times) keep the old fingerprint and the
feature store would serve the old images' features. :func:`content_fingerprint` hashes (sha256)
every file under a dataset path -- a folder, recursively and following links, or one data file --
and combines the digests with the files' relative paths and a name for how the path is loaded.

Each file's digest is remembered in a small sqlite file under the run's cache root
(:data:`DIGESTS_FILE`), keyed by the file's path, size, modification and change times (ns), inode
and device: a warm run of a 50,000-image folder costs a ``stat`` per file (about a second) instead of
reading every byte. The change time (``ctime``) cannot be set by users (``cp -p``, ``touch -d`` and
``os.utime`` all update it), so a file rewritten in place with its old size and mtime is hashed
again. A file changed within :data:`RACY_NS` of being hashed is not remembered (its times may not
have moved yet: "racy git"). A cache that cannot be opened or written is skipped (logged at INFO:
it costs time, never correctness).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import sqlite3
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, NamedTuple

log = logging.getLogger(__name__)

#: The digest cache, under the cache root.
DIGESTS_FILE = "content-digests.sqlite"
#: Files whose mtime or ctime lie this close to the hashing time are hashed again next time.
RACY_NS = 2 * 10**9
#: Threads hashing files (hashlib releases the GIL; reading overlaps hashing).
HASH_THREADS = min(8, (os.cpu_count() or 1) + 2)
_FORMAT = "harness-content-v1"


class _File(NamedTuple):
    relative: str
    path: str
    key: tuple[int, int, int, int, int]
    """(size, mtime_ns, ctime_ns, inode, device)"""


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (hex)."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _entry(relative: str, path: str, info: os.stat_result) -> _File:
    return _File(relative, path, (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev))


def _walk(root: Path, skip: tuple[str, ...] = ()) -> Iterator[_File]:
    """Every regular file under ``root`` (links followed, each real folder visited once) whose name
    matches none of the ``skip`` patterns (fnmatch), any order."""
    root_info = os.stat(root)
    if not stat.S_ISDIR(root_info.st_mode):
        yield _entry("", os.path.abspath(root), root_info)
        return
    seen = {(root_info.st_dev, root_info.st_ino)}
    stack = [(os.path.abspath(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for item in entries:
                try:
                    info = item.stat()  # follows links
                except OSError:  # a dangling link: not data
                    continue
                relative = prefix + item.name
                if stat.S_ISDIR(info.st_mode):
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        stack.append((item.path, relative + "/"))
                elif stat.S_ISREG(info.st_mode) and not any(fnmatch.fnmatchcase(item.name, p) for p in skip):
                    yield _entry(relative, item.path, info)


class DigestCache:
    """File digests by (path, size, mtime_ns, ctime_ns, inode, device), in sqlite (see the module docstring)."""

    def __init__(self, file: Path) -> None:
        self.file = Path(file)
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.file, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                         "ctime_ns INTEGER, inode INTEGER, device INTEGER, sha256 TEXT)")
        self._db.commit()

    def lookup(self, root: str) -> dict[str, tuple[tuple[int, ...], str]]:
        """``path -> (key, digest)`` of every remembered file at or under ``root``."""
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, ctime_ns, inode, device, sha256 FROM digests "
            "WHERE path = ? OR (path >= ? AND path < ?)", (root, root + "/", root + "0"))  # '0' follows '/'
        return {row[0]: (tuple(row[1:6]), row[6]) for row in rows}

    def get(self, path: str) -> tuple[tuple[int, ...], str] | None:
        """``(key, digest)`` remembered for the file ``path``, or None."""
        row = self._db.execute("SELECT size, mtime_ns, ctime_ns, inode, device, sha256 FROM digests WHERE path = ?",
                               (path,)).fetchone()
        return None if row is None else (tuple(row[:5]), row[5])

    def remember(self, entries: list[tuple[_File, str]], gone: list[str] = ()) -> None:
        """Store ``entries`` and forget the files ``gone`` (remembered under the root, no longer there)."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 [(f.path, *f.key, digest) for f, digest in entries])
            self._db.executemany("DELETE FROM digests WHERE path = ?", [(path,) for path in gone])

    def close(self) -> None:
        self._db.close()


def _open_cache(cache_root: Path | None) -> DigestCache | None:
    if cache_root is None:
        return None
    try:
        return DigestCache(Path(cache_root) / DIGESTS_FILE)
    except (OSError, sqlite3.Error) as exc:
        log.info("content digests are not cached (%s: %s); every file is hashed", cache_root / DIGESTS_FILE, exc)
        return None


def content_fingerprint(path: Path | str, loader: str, cache_root: Path | None = None,
                        skip: tuple[str, ...] = ()) -> str:
    """sha256 (hex) over ``loader`` (how the path is read, e.g. ``imagefolder``) and each file's
    relative path, size and sha256, for every file under ``path`` (or of the file ``path``) except
    those whose name matches a ``skip`` pattern; digests are remembered under ``cache_root`` (None:
    none are)."""
    path = Path(path)
    files = sorted(_walk(path, skip))
    cache = _open_cache(cache_root)
    try:
        known = {}
        if cache is not None:
            try:
                known = cache.lookup(os.path.abspath(path))
            except (sqlite3.Error, UnicodeError) as exc:  # UnicodeError: a path sqlite cannot store
                log.info("content digest cache unreadable (%s); every file is hashed", exc)
                cache.close()
                cache = None
        digests: dict[str, str] = {}
        missing = []
        for f in files:
            hit = known.get(f.path)
            if hit is not None and hit[0] == f.key:
                digests[f.path] = hit[1]
            else:
                missing.append(f)
        started = time.time_ns()
        if len(missing) > 1:
            with ThreadPoolExecutor(HASH_THREADS) as pool:
                digests.update(zip((f.path for f in missing), pool.map(file_digest, (f.path for f in missing))))
        elif missing:
            digests[missing[0].path] = file_digest(missing[0].path)
        settled = [(f, digests[f.path]) for f in missing if max(f.key[1], f.key[2]) < started - RACY_NS]
        gone = sorted(set(known) - {f.path for f in files})
        if cache is not None and (settled or gone):
            try:
                cache.remember(settled, gone)
            except (sqlite3.Error, UnicodeError) as exc:
                log.info("content digests not remembered (%s)", exc)
    finally:
        if cache is not None:
            cache.close()
    total = hashlib.sha256(f"{_FORMAT}\n{loader}\n".encode())
    for f in files:
        total.update(f"{f.relative}\0{f.key[0]}\0{digests[f.path]}\n".encode("utf-8", "surrogateescape"))
    return total.hexdigest()


class FileDigests:
    """sha256 of single files (a dataset builder's JSON files and images), remembered in the same
    digest cache as :func:`content_fingerprint` under ``execution.root`` (none with the cache off).
    Call it per file, then :meth:`save` once. Public API (``harness.FileDigests``)."""

    def __init__(self, execution: object = None) -> None:
        root = getattr(execution, "root", None) if getattr(execution, "cache", False) else None
        self._cache = _open_cache(Path(root)) if root is not None else None
        self._pending: list[tuple[_File, str]] = []
        self._started = time.time_ns()

    def __call__(self, path: str | os.PathLike[str]) -> str:
        """The sha256 of ``path`` (a one-line DataError if it cannot be read)."""
        from .errors import DataError

        try:
            entry = _entry("", os.path.abspath(path), os.stat(path))
            hit = self._cached(entry.path)
            if hit is not None and hit[0] == entry.key:
                return hit[1]
            digest = file_digest(path)
        except OSError as exc:
            raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        if max(entry.key[1], entry.key[2]) < self._started - RACY_NS:
            self._pending.append((entry, digest))
        return digest

    def _cached(self, path: str) -> tuple[tuple[int, ...], str] | None:
        if self._cache is None:
            return None
        try:
            return self._cache.get(path)
        except (sqlite3.Error, UnicodeError) as exc:
            log.info("content digest cache unreadable (%s); files are hashed", exc)
            self._cache.close()
            self._cache = None
            return None

    def save(self) -> None:
        """Remember the digests computed (a cache that cannot be written only costs time)."""
        if self._cache is None:
            return
        try:
            if self._pending:
                self._cache.remember(self._pending)
        except (sqlite3.Error, UnicodeError) as exc:
            log.info("content digests not remembered (%s)", exc)
        finally:
            self._cache.close()
            self._cache, self._pending = None, []

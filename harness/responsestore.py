"""A store of generative models' responses, like the feature store: reused across runs and tasks,
written as responses arrive, so a killed run resumes where it stopped.

A *response set* is everything one model answered under one precision: its key is the model's
identity (name, plugin, weights fingerprint, code fingerprint), its chat template and the dtype.
Within a set, a response is addressed by its request's key: sha256 of the request's content --
the prompt (or context and continuation), the sha256 of every image's pixels, mode and size, and
the generation settings (seed included, so a sampled request is reproducible and never confused
with another seed's sample). A second model never sees the first one's answers: they are in
another set.

Layout under the root (``<cache root>/responses``)::

    <set id>/key.json          the key (set id = first 32 hex digits of sha256 of its canonical JSON)
    <set id>/responses.jsonl   one line per response: {"key": <64 hex>, "response": {...}}
    <set id>/.lock             held while lines are appended

Lines are appended (and fsynced) under the lock after every batch; readers skip a partial last
line and anything that is not a well-formed entry. Files are read as the feature store reads its
own: regular files only, never through a symbolic link, size-bounded.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from .atomicfile import UnsafeFileError, append_line, file_lock, read_regular_from, write_text_atomic
from .execution import cache_root
from .featurestore import LOCK_TIMEOUT_S, StoreError, canonical_json, permission_denied

#: Bumped when request keys or the layout change: old sets are then never hit.
STORE_VERSION = 1
MAX_RESPONSES_BYTES = 1 << 32
_KEY_CHARS = frozenset("0123456789abcdef")


def image_digest(image: Any) -> str:
    """sha256 of an image's pixels, mode and size (a PIL image), or of the bytes of a path or bytes."""
    if isinstance(image, (bytes, bytearray)):
        return hashlib.sha256(image).hexdigest()
    if isinstance(image, (str, Path)):
        return hashlib.sha256(Path(image).read_bytes()).hexdigest()
    digest = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def request_key(kind: str, content: Mapping[str, Any], images: Sequence[Any]) -> str:
    """The key of one request: sha256 of ``kind``, its content (prompt, settings, ...) and its images' digests."""
    body = {"kind": kind, **content, "images": [image_digest(image) for image in images]}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


class ResponseSet:
    """The responses of one model identity (see the module docstring)."""

    def __init__(self, root: Path, key: Mapping[str, Any]) -> None:
        self.key = json.loads(canonical_json({"store_version": STORE_VERSION, **key}))
        self.id = hashlib.sha256(canonical_json(self.key).encode()).hexdigest()[:32]
        self.path = Path(root) / self.id
        self.file = self.path / "responses.jsonl"
        self._unwritable = False
        self._index: dict[str, dict[str, Any]] = {}
        self._offset = 0
        self._identity: tuple[int, int] | None = None

    def read(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """request key -> stored response, for the ``keys`` the set has (the last line wins)."""
        self._refresh()
        return {key: self._index[key] for key in set(keys) if key in self._index}

    def _refresh(self) -> None:
        """Parse what was appended to the file since the last read (a kind asks once per chunk of
        rows: re-reading the whole growing file each time would be quadratic); start over when the
        file is another one or shorter than what was read."""
        try:
            data, info = read_regular_from(self.file, MAX_RESPONSES_BYTES, self._offset)
            if (info.st_dev, info.st_ino) != self._identity or info.st_size < self._offset:
                if self._offset:  # replaced or cut since the last read: read it whole again
                    data, info = read_regular_from(self.file, MAX_RESPONSES_BYTES)
                self._index, self._offset, self._identity = {}, 0, (info.st_dev, info.st_ino)
        except (FileNotFoundError, NotADirectoryError):
            self._index, self._offset, self._identity = {}, 0, None
            return
        except (UnsafeFileError, OSError) as exc:
            warnings.warn(f"response store: ignoring {self.file} ({exc.strerror or exc}); its requests are recomputed",
                          stacklevel=3)
            self._index, self._offset, self._identity = {}, 0, None
            return
        complete = data.rfind(b"\n") + 1  # a partial last line is read again once it is finished
        self._offset += complete
        for line in data[:complete].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a partial line left by a killed writer
            if (isinstance(entry, dict) and isinstance(entry.get("response"), dict)
                    and isinstance(entry.get("key"), str)):
                self._index[entry["key"]] = entry["response"]

    def write(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Append ``(request key, response)`` lines under the lock (a cache that cannot be written
        is warned about once; the responses are still returned to the run)."""
        if self._unwritable or not items:
            return
        for key, _ in items:
            if len(key) != 64 or not set(key) <= _KEY_CHARS:
                raise ValueError(f"response store: bad request key {key!r}")
        text = "\n".join(json.dumps({"key": key, "response": dict(response)}, sort_keys=True, allow_nan=False)
                         for key, response in items)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with file_lock(self.path / ".lock", LOCK_TIMEOUT_S):
                if not (self.path / "key.json").exists():
                    write_text_atomic(self.path / "key.json", json.dumps(self.key, indent=2, sort_keys=True) + "\n")
                append_line(self.file, text)
        except OSError as exc:
            if not permission_denied(exc):
                raise StoreError(f"response store: cannot write to {self.path}: {exc.strerror or exc}") from None
            self._unwritable = True
            warnings.warn(f"response store: cannot write to {self.path} ({exc.strerror or exc}); responses are "
                          "computed but not cached", stacklevel=2)


class ResponseStore:
    """A folder of response sets (``<cache root>/responses``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def default(cls, cache_dir: Path | str | None = None) -> ResponseStore:
        """``<cache root>/responses`` (see :func:`harness.execution.cache_root`)."""
        return cls(cache_root(cache_dir) / "responses")

    def open(self, key: Mapping[str, Any]) -> ResponseSet:
        return ResponseSet(self.root, key)


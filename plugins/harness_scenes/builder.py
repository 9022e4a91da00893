"""Build a split of the scenes as a ``datasets.Dataset``, with in-memory and on-disk caches.

``build(config, split, execution)`` is the factory the ``scenes`` DatasetSpec names. The
fingerprint is sha256(version, canonical config, split), so it is the same in every process;
the generated split is kept in memory (a few most recent) and saved under the run's cache
root, ``execution.root / "scenes" / <fingerprint>`` (``--cache-dir``), written to a temporary
folder and renamed into place so that readers never see half a dataset. Without an
``execution`` (a direct call) nothing is written to disk.

The saved folder is checked before use: ``harness-integrity.json``, written last, records the
sha256 and size of every file ``save_to_disk`` wrote; a folder whose files differ (labels edited
on disk, a file replaced, added or removed, a symbolic link), or that has no record (an older or
interrupted cache), is rebuilt and replaced with a warning. A cache this user cannot read (another
user's private folder) is left alone: the split is built in memory, with a warning. Folders and
files get the permissions the umask allows, so a group can share the cache.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .config import VERSION, SceneConfig, parse
from .drawing import bbox, render
from .scene import SceneSampler

if TYPE_CHECKING:
    import datasets

    from harness import ExecutionConfig

#: How many built splits stay in memory.
MEMORY_SLOTS = 16
#: (cache folder or None, fingerprint) -> split: each cache root gets its own files on disk.
_MEMORY: OrderedDict[tuple[str | None, str], datasets.Dataset] = OrderedDict()
EXPORT_FORMATS = ("imagefolder", "disk")
#: zlib level of the PNGs: fast; noisy pixels barely compress anyway. Part of the byte-exact output.
PNG_LEVEL = 1
#: The integrity record of a saved split: written last, into the folder it describes.
INTEGRITY = "harness-integrity.json"
INTEGRITY_VERSION = 1
MAX_INTEGRITY_BYTES = 1 << 20


class _Unreadable(Exception):
    """The cache folder exists but this user may not read it (it is left alone)."""


class _Damaged(Exception):
    """The cache folder differs from its integrity record (it is rebuilt)."""


def build(config: Mapping[str, Any] | None, split: str, execution: ExecutionConfig | None = None) -> datasets.Dataset:
    """The rows of ``split`` for ``config`` (see the package docstring for keys and columns), cached
    on disk under ``execution.root`` (see the module docstring).

    Raises ``ValueError`` (one line, naming the allowed keys) for a bad config or split.
    """
    cfg = parse(config, split)
    folder = cache_dir(execution)
    key = (None if folder is None else str(folder), cfg.fingerprint)
    data = _MEMORY.get(key)
    if data is None:
        if folder is None:
            data = generate(cfg)
        else:
            try:
                data = _from_disk(cfg, folder)
            except _Unreadable:
                data = generate(cfg)  # another user's cache: used by nobody, changed by nobody
            else:
                if data is None:
                    stale = os.path.lexists(folder / cfg.fingerprint)
                    data = _to_disk(cfg, generate(cfg), folder, replace=stale)
        _MEMORY[key] = data
        while len(_MEMORY) > MEMORY_SLOTS:
            _MEMORY.popitem(last=False)
    _MEMORY.move_to_end(key)
    return _fresh(data)


def features(cfg: SceneConfig) -> datasets.Features:
    """The column types of a split built with ``cfg``."""
    from datasets import ClassLabel, Features, Image, List, Value

    return Features({
        "id": Value("string"),
        "image": Image(),
        "label": ClassLabel(names=[f"{color} {shape}" for shape in cfg.shapes for color in cfg.colors]),
        "shape": ClassLabel(names=list(cfg.shapes)),
        "color": ClassLabel(names=list(cfg.colors)),
        "background": ClassLabel(names=list(cfg.backgrounds)),
        "caption": Value("string"),
        "n_objects": Value("int32"),
        "counts": List(Value("int32"), length=len(cfg.shapes)),
        "present": List(Value("bool"), length=len(cfg.shapes)),
        "objects": List({
            "shape": Value("string"),
            "color": Value("string"),
            "bbox": List(Value("int32"), length=4),
            "center": List(Value("int32"), length=2),
        }),
    })


def rows(cfg: SceneConfig) -> dict[str, list[Any]]:
    """Every column of the split as Python lists (images as PNG bytes)."""
    sampler = SceneSampler(cfg)
    columns: dict[str, list[Any]] = {name: [] for name in features(cfg)}
    size, shapes, colors = cfg.image_size, cfg.shapes, cfg.colors
    prefix = f"scenes-v{VERSION}-{cfg.scene_key}-{cfg.split}"
    for index in range(cfg.n):
        scene = sampler.sample(index)
        buffer = io.BytesIO()
        render(scene, size).save(buffer, format="PNG", compress_level=PNG_LEVEL)
        primary = scene.objects[0]
        counts = [sum(obj.shape == shape for obj in scene.objects) for shape in shapes]
        columns["id"].append(f"{prefix}-{index:06d}")
        columns["image"].append({"bytes": buffer.getvalue(), "path": None})
        columns["label"].append(shapes.index(primary.shape) * len(colors) + colors.index(primary.color))
        columns["shape"].append(shapes.index(primary.shape))
        columns["color"].append(colors.index(primary.color))
        columns["background"].append(cfg.backgrounds.index(scene.background))
        columns["caption"].append(scene.caption())
        columns["n_objects"].append(len(scene.objects))
        columns["counts"].append(counts)
        columns["present"].append([c > 0 for c in counts])
        columns["objects"].append([
            {"shape": obj.shape, "color": obj.color, "bbox": bbox(obj, size), "center": list(obj.center)}
            for obj in scene.objects
        ])
    return columns


def generate(cfg: SceneConfig) -> datasets.Dataset:
    """Draw the split (no caching) and stamp it with the deterministic fingerprint."""
    import datasets

    feats = features(cfg)
    info = datasets.DatasetInfo(
        features=feats,
        description=f"procedural scenes v{VERSION}, split {cfg.split}: {json.dumps(cfg.canonical())}",
        dataset_name="scenes",
    )
    data = datasets.Dataset.from_dict(rows(cfg), features=feats, info=info, split=cfg.split)
    data._fingerprint = cfg.fingerprint
    return data


def _fresh(data: datasets.Dataset) -> datasets.Dataset:
    """A new ``Dataset`` over the same table, so format changes by one caller never reach another."""
    import datasets

    return datasets.Dataset(data.data, info=data.info, split=data.split, fingerprint=data._fingerprint)


def cache_dir(execution: ExecutionConfig | None) -> Path | None:
    """Where built splits are saved: ``scenes/`` under the run's cache root (None without a run)."""
    return None if execution is None else Path(execution.root) / "scenes"


@contextmanager
def _quiet() -> Iterator[None]:
    """No ``datasets`` progress bars for a cache write (restored afterwards)."""
    import datasets

    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _temp_dir(parent: Path, prefix: str) -> Path:
    """A new uniquely named folder in ``parent``, made by ``os.mkdir`` so that it has the umask's
    permissions (``tempfile.mkdtemp``'s 0700 would lock a group out of a shared cache)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(8)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _open_regular(path: Path) -> int:
    """A read-only fd of ``path`` if it is a regular file, never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Damaged(f"{path.name} is a symbolic link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Damaged(f"{path.name} is not a regular file")
    return fd


def _digest(path: Path) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a regular file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with os.fdopen(_open_regular(path), "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _digest_folder(path: Path) -> dict[str, dict[str, Any]]:
    """The digest of every file in ``path`` but the record itself (a subfolder or link is damage)."""
    files = {}
    for name in sorted(os.listdir(path)):
        if name != INTEGRITY:
            files[name] = _digest(path / name)
    return files


def _check(cfg: SceneConfig, path: Path) -> None:
    """Raise :class:`_Damaged` unless ``path`` holds exactly the files its record lists, unchanged."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise _Damaged("it is a symbolic link" if stat.S_ISLNK(info.st_mode) else "it is not a folder")
    try:
        fd = _open_regular(path / INTEGRITY)
    except FileNotFoundError:
        raise _Damaged(f"no {INTEGRITY} (written by an older version, or interrupted)") from None
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > MAX_INTEGRITY_BYTES:
            raise _Damaged(f"{INTEGRITY} is larger than {MAX_INTEGRITY_BYTES} bytes")
        try:
            record = json.loads(handle.read(MAX_INTEGRITY_BYTES + 1))
        except ValueError:
            raise _Damaged(f"{INTEGRITY} is not JSON") from None
    if (not isinstance(record, dict) or record.get("version") != INTEGRITY_VERSION
            or record.get("fingerprint") != cfg.fingerprint or not isinstance(record.get("files"), dict)):
        raise _Damaged(f"{INTEGRITY} does not describe this split")
    expected: dict[str, Any] = record["files"]
    actual = _digest_folder(path)
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            raise _Damaged(f"{name} is missing")
        if name not in expected:
            raise _Damaged(f"{name} was added")
        if actual[name] != expected[name]:
            raise _Damaged(f"{name} differs from its recorded sha256 (edited on disk?)")


def _from_disk(cfg: SceneConfig, folder: Path) -> datasets.Dataset | None:
    """The saved split if its files match their integrity record; None if there is none or it is
    damaged (warned about; the caller rebuilds it). Raises :class:`_Unreadable` (after a warning)
    if this user may not read it."""
    path = folder / cfg.fingerprint
    if not os.path.lexists(path):
        try:
            os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _unreadable(path, exc)
        return None
    import datasets

    try:
        _check(cfg, path)
        saved = json.loads((path / "state.json").read_text(encoding="utf-8"))["_fingerprint"]
        data = datasets.load_from_disk(str(path))
        if saved != cfg.fingerprint or len(data) != cfg.n:
            raise _Damaged("it holds another split")
    except PermissionError as exc:
        _unreadable(path, exc)
    except Exception as exc:  # a damaged cache is replaced, never fatal (writes are atomic)
        reason = str(exc) if isinstance(exc, _Damaged) else f"{type(exc).__name__}: {exc}"
        warnings.warn(f"scenes: rebuilding unreadable cache {path}: {reason}", stacklevel=3)
        return None
    data._fingerprint = cfg.fingerprint  # load_from_disk re-applies the format, which renames it
    return data


def _unreadable(path: Path, exc: OSError) -> None:
    warnings.warn(f"scenes: cannot read cache {path} ({exc.strerror or exc}; another user's?): "
                  "using the split built in memory, the cache is left as it is", stacklevel=4)
    raise _Unreadable(str(path))


def _remove(path: Path) -> None:
    """Delete a stale cache entry: a link is unlinked (its target untouched), a folder removed."""
    if os.path.islink(path) or not os.path.isdir(path):
        Path(path).unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _to_disk(cfg: SceneConfig, data: datasets.Dataset, folder: Path, replace: bool = False) -> datasets.Dataset:
    """Save ``data`` to the cache ``folder`` atomically (temporary folder with its integrity record
    written last, then renamed into place); ``replace``: a damaged copy there is swapped out. Returns ``data``."""
    from harness import write_text_atomic

    path = folder / cfg.fingerprint
    tmp = stale = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_dir(path.parent, f".{cfg.fingerprint}.")
        with _quiet():
            data.save_to_disk(str(tmp))
        record = {"version": INTEGRITY_VERSION, "fingerprint": cfg.fingerprint, "files": _digest_folder(tmp)}
        write_text_atomic(tmp / INTEGRITY, json.dumps(record, indent=1, sort_keys=True) + "\n")
        if replace and os.path.lexists(path):
            stale = path.parent / f".{cfg.fingerprint}.stale-{os.getpid()}-{time.time_ns()}"
            os.rename(path, stale)  # renames a link itself, never its target
        if os.path.lexists(path):  # a concurrent copy: keep whichever is there
            return data
        os.rename(tmp, path)
        tmp = None
    except OSError as exc:
        if replace:
            warnings.warn(f"scenes: cannot replace the damaged cache {path} ({exc.strerror or exc}): "
                          "using the split built in memory", stacklevel=3)
        elif not os.path.lexists(path):
            warnings.warn(f"scenes: cannot cache to {path}: {exc}", stacklevel=3)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if stale is not None:
            _remove(stale)
    return data


def export(config: Mapping[str, Any] | None, split: str, out_dir: str | Path, format: str = "imagefolder",
           execution: ExecutionConfig | None = None) -> Path:
    """Write a split for use outside harness; return the folder written (``execution``: see :func:`build`).

    ``imagefolder``: ``out_dir/<split>/<id>.png`` plus ``metadata.jsonl`` (class names as
    words), loadable with ``datasets.load_dataset("imagefolder", data_dir=out_dir)`` or as a
    ``path:`` task dataset. ``disk``: ``Dataset.save_to_disk(out_dir/<split>)``.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r} (formats: {', '.join(EXPORT_FORMATS)})")
    data = build(config, split, execution)
    folder = Path(out_dir) / split
    if format == "disk":
        with _quiet():
            data.save_to_disk(str(folder))
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    feats = data.features
    named = ("label", "shape", "color", "background")
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for row in data.cast_column("image", type(feats["image"])(decode=False)):
            (folder / f"{row['id']}.png").write_bytes(row["image"]["bytes"])
            meta = {k: feats[k].int2str(v) if k in named else v for k, v in row.items() if k != "image"}
            handle.write(json.dumps({"file_name": f"{row['id']}.png", **meta}) + "\n")
    return folder

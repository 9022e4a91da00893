"""Build a split of the scenes as a ``datasets.Dataset``, with in-memory and on-disk caches.

``build(config, split, execution)`` is the factory the ``scenes`` DatasetSpec names. The
fingerprint is sha256(version, canonical config, split), so it is the same in every process;
the generated split is kept in memory (a few most recent) and saved under the run's cache
root, ``execution.root / "scenes" / <fingerprint>`` (``--cache-dir``), written to a temporary
folder and renamed into place so that readers never see half a dataset. Without an
``execution`` (a direct call) nothing is written to disk.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
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
            data = _from_disk(cfg, folder) or _to_disk(cfg, generate(cfg), folder)
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


def _from_disk(cfg: SceneConfig, folder: Path) -> datasets.Dataset | None:
    path = folder / cfg.fingerprint
    if not (path / "state.json").exists():
        return None
    import datasets

    try:
        saved = json.loads((path / "state.json").read_text(encoding="utf-8"))["_fingerprint"]
        data = datasets.load_from_disk(str(path))
    except Exception as exc:  # a damaged cache is removed and rebuilt, never fatal (writes are atomic)
        warnings.warn(f"scenes: rebuilding unreadable cache {path}: {type(exc).__name__}: {exc}", stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)
        return None
    if saved != cfg.fingerprint or len(data) != cfg.n:
        return None
    data._fingerprint = cfg.fingerprint  # load_from_disk re-applies the format, which renames it
    return data


def _to_disk(cfg: SceneConfig, data: datasets.Dataset, folder: Path) -> datasets.Dataset:
    """Save ``data`` to the cache ``folder`` atomically (temporary folder, then rename); return it."""
    path = folder / cfg.fingerprint
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{cfg.fingerprint}.", dir=path.parent)
        with _quiet():
            data.save_to_disk(tmp)
        if path.exists():  # a stale or concurrent copy: keep whichever is there
            return data
        os.rename(tmp, path)
        tmp = None
    except OSError as exc:
        if not path.exists():
            warnings.warn(f"scenes: cannot cache to {path}: {exc}", stacklevel=3)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
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

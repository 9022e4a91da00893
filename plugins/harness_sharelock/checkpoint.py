"""harness's ShareLock checkpoint: a folder with ``sharelock.safetensors`` and ``sharelock.json``.

``sharelock.safetensors`` holds the head's state dict under the official parameter names
(``language_projector.projection.0.weight``, ...). ``sharelock.json`` holds::

    {"format": "harness-sharelock", "format_version": 1,
     "config": {...every ShareLockConfig field...},
     "vision_dim": 1280, "language_dim": 384, "embed_dim": 1280,
     "vision": {"name": "torchvision:mobilenet_v2", "embed_dim": ..., "revision": ..., "fingerprint": ..., ...},
     "language": {"name": "lm:all-MiniLM-L6-v2", ...},
     "transform": "encoder",          # images preprocessed by the vision tower ("sharelock": official eval transform)
     "pairs": {...dataset identity...}, "training": {...TrainResult.summary()...}}

Both files are written to temporary names and renamed, weights first, so a folder with a
``sharelock.json`` is always complete (``harness train sharelock`` writes the same files through
``TrainContext.save``, which adds ``harness-train.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ModelLoadError, load_state_strict, write_bytes_atomic

from .config import ShareLockConfig

FORMAT = "harness-sharelock"
FORMAT_VERSION = 1
WEIGHTS = "sharelock.safetensors"
META = "sharelock.json"
TRANSFORMS = ("encoder", "sharelock")


def files(model: Any, meta: dict[str, Any]) -> dict[str, bytes]:
    """``{WEIGHTS: ..., META: ...}`` of ``model`` (a ShareLock) and ``meta`` (vision, language, pairs,
    training, ...), weights first: written in this order, a folder with a ``sharelock.json`` is complete."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict(),
           "vision_dim": model.vision_dim, "language_dim": model.language_dim, "embed_dim": model.embed_dim,
           "transform": "encoder", **meta}
    if doc["transform"] not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {doc['transform']!r}")
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    return {WEIGHTS: save(state, metadata={"format": FORMAT}), META: text.encode("utf-8")}


def save(directory: Path, model: Any, meta: dict[str, Any]) -> Path:
    """Write :func:`files` to ``directory``, each atomically, in order."""
    directory = Path(directory)
    for name, content in files(model, meta).items():
        write_bytes_atomic(directory / name, content)
    return directory


def read_meta(directory: Path) -> dict[str, Any]:
    """The ``sharelock.json`` of a checkpoint folder, checked for format and version."""
    path = Path(directory) / META
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{directory}: not a ShareLock checkpoint folder (no {META})") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not a {FORMAT} file")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: format_version {doc.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    return doc


def load(directory: Path) -> tuple[Any, dict[str, Any]]:
    """(ShareLock in eval mode, meta) from a checkpoint folder; strict about names and shapes."""
    from safetensors.torch import load_file

    from .model import ShareLock

    doc = read_meta(directory)
    config = ShareLockConfig.from_dict(doc["config"], where=f"{directory}/{META}: config")
    model = ShareLock(config, int(doc["vision_dim"]), int(doc["language_dim"]))
    try:
        state = load_file(str(Path(directory) / WEIGHTS), device="cpu")
    except Exception as exc:  # missing or corrupt file
        raise ModelLoadError(f"{directory}/{WEIGHTS}: cannot read weights: {type(exc).__name__}: {exc}") from None
    load_state_strict(model, state, str(Path(directory) / WEIGHTS), "the ShareLock config")
    return model.eval(), doc

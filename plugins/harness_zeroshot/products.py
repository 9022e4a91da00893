"""``products2023``: a user-supplied image-folder classification set with class descriptors.

GRAIN (arXiv 2412.04429) evaluates on Products-2023, which is not released; this builder reads a
set laid out as below and validates it on load (each problem one line, before any model loads)::

    ROOT/
      classes.json        {"classname": ["descriptor", ...], ...}   key order = label order
      images/
        <classname>/      one folder per key of classes.json, named exactly as the key
          *.jpg|*.jpeg|*.png|*.webp|*.bmp|*.gif

Config: ``{root: PATH}`` (``~`` and ``$VARS`` expanded; relative paths are relative to the working
directory), optional ``classes: FILE`` (default ``classes.json``) and ``images: DIR`` (default
``images``). Only split ``test`` exists. Rows: ``image`` (the file's bytes, so the dataset
fingerprint follows the content), ``label`` (ClassLabel in the JSON's key order), ``path``.
Specs give the same JSON as ``params.descriptors`` (``{$file: ...}``) to evaluate with descriptions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from harness import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def read_classes(path: Path) -> dict[str, list[str]]:
    """The class -> descriptors mapping of ``path`` (key order kept), checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"products2023: class file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"products2023: class file {str(path)!r} cannot be read: {exc}") from None

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise DataError(f"products2023: {str(path)!r}: class {dup!r} appears twice")
        return dict(pairs)

    try:
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise DataError(f"products2023: {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or len(value) < 2:
        raise DataError(f"products2023: {str(path)!r}: expected an object {{classname: [descriptor, ...]}} "
                        "with at least 2 classes")
    for name, descs in value.items():
        if not name.strip() or "/" in name or name in (".", ".."):
            raise DataError(f"products2023: {str(path)!r}: class name {name!r} cannot be a folder name")
        if not isinstance(descs, list) or not all(isinstance(d, str) and d for d in descs):
            raise DataError(f"products2023: {str(path)!r}: class {name!r}: descriptors must be a list of "
                            "non-empty strings")
    return value


def scan(root: Path, classes_file: str = "classes.json", images_dir: str = "images") -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names in label order, [(image path, label)]), every problem a one-line DataError:
    a class folder missing, a class without images, a folder not in the JSON, an unreadable image."""
    from PIL import Image

    if not root.is_dir():
        raise DataError(f"products2023: root {str(root)!r} is not a folder")
    names = list(read_classes(root / classes_file))
    folder = root / images_dir
    if not folder.is_dir():
        raise DataError(f"products2023: image folder {str(folder)!r} does not exist")
    present = sorted(p.name for p in folder.iterdir() if p.is_dir())
    extra = [p for p in present if p not in names]
    if extra:
        raise DataError(f"products2023: folder {str(folder / extra[0])!r} is not a class of {classes_file} "
                        f"({len(extra)} such folders)")
    items: list[tuple[Path, int]] = []
    for label, name in enumerate(names):
        class_dir = folder / name
        if not class_dir.is_dir():
            raise DataError(f"products2023: class {name!r} of {classes_file} has no folder {str(class_dir)!r}")
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"products2023: class {name!r} of {classes_file} has no images in {str(class_dir)!r} "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            try:
                with Image.open(path) as image:
                    image.verify()
            except Exception as exc:  # PIL raises many types for a broken file
                raise DataError(f"products2023: unreadable image {str(path)!r}: {type(exc).__name__}: {exc}") from None
            items.append((path, label))
    return names, items


def build(config: Mapping[str, Any] | None, split: str, execution: Any = None) -> Any:
    """The dataset of ``config['root']`` (see the module docstring)."""
    import datasets

    config = dict(config or {})
    unknown = sorted(set(config) - {"root", "classes", "images"})
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed: root, classes, images")
    if "root" not in config:
        raise ValueError("config.root (the dataset folder) is required")
    if split != "test":
        raise ValueError(f"split {split!r}: only 'test' exists")
    root = Path(os.path.expandvars(str(config["root"]))).expanduser()
    if "$" in str(root):
        raise DataError(f"products2023: root {str(config['root'])!r}: an environment variable is not set")
    names, items = scan(root, str(config.get("classes", "classes.json")), str(config.get("images", "images")))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                                  "path": datasets.Value("string")})
    rows = {"image": [{"bytes": p.read_bytes(), "path": None} for p, _ in items],
            "label": [label for _, label in items],
            "path": [str(p.relative_to(root)) for p, _ in items]}
    return datasets.Dataset.from_dict(rows, features=features)

"""``karpathy``: COCO / Flickr30k Karpathy splits from local files (no downloads).

Layout (Karpathy's ``dataset_coco.json`` / ``dataset_flickr30k.json``, from the NeuralTalk release)::

    ANNOTATIONS.json   {"images": [{"filename": "...jpg", "filepath": "val2014" (COCO only),
                                     "split": "test"|"val"|"train"|"restval", "imgid": 0,
                                     "sentences": [{"raw": "A caption."}, ...]}, ...]}
    IMAGES/            COCO: IMAGES/val2014/COCO_val2014_*.jpg (``filepath``/``filename``);
                       Flickr30k: IMAGES/*.jpg (``filename``)

Config: ``{annotations: FILE, images: DIR[, root: DIR]}`` (``harness.builder_paths``: ``~`` and ``${VAR}``
expanded, relative paths inside ``root``). Split ``test`` is the
5,000-image COCO / 1,000-image Flickr30k test split (5 captions each). Rows: ``image`` (the file),
``captions`` (the ``raw`` sentences, in order), ``id`` (``imgid``). The dataset fingerprint covers
the annotations and image paths, not the image bytes.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from harness import DataError, builder_paths


def build(config: Mapping[str, Any] | None, split: str, execution: Any = None) -> Any:
    import datasets

    paths = builder_paths(dict(config or {}), "karpathy", {"root", "annotations", "images"}, ("annotations", "images"),
                          files=("annotations",), folders=("images",))
    annotations, images = paths["annotations"], paths["images"]
    try:
        doc = json.loads(annotations.read_text(encoding="utf-8"))
        entries = [e for e in doc["images"] if e["split"] == split]
    except FileNotFoundError:
        raise DataError(f"karpathy: annotations {str(annotations)!r} do not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"karpathy: annotations {str(annotations)!r}: not a Karpathy split file "
                        f"({type(exc).__name__}: {exc})") from None
    if not entries:
        raise DataError(f"karpathy: annotations {str(annotations)!r}: no images in split {split!r}")
    rows: dict[str, list[Any]] = {"image": [], "captions": [], "id": []}
    for entry in entries:
        path = images / entry.get("filepath", "") / entry["filename"]
        if not path.is_file():
            raise DataError(f"karpathy: image {str(path)!r} (split {split!r}) does not exist")
        rows["image"].append({"path": str(path), "bytes": None})
        rows["captions"].append([s["raw"] for s in entry["sentences"]])
        rows["id"].append(str(entry.get("imgid", entry["filename"])))
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.Sequence(datasets.Value("string")),
                                  "id": datasets.Value("string")})
    return datasets.Dataset.from_dict(rows, features=features)

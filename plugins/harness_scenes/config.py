"""Validation and canonical form of a scenes builder config, and the identities derived from it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .vocabulary import BACKGROUNDS, COLORS, MAX_OBJECTS, SHAPES

#: Bumped whenever the same config would draw different pixels or rows.
VERSION = "1"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULTS: dict[str, Any] = {
    "n": 200,
    "image_size": 64,
    "min_objects": 1,
    "max_objects": 1,  # when absent: min_objects
    "shapes": list(SHAPES),
    "colors": list(COLORS),
    "backgrounds": list(BACKGROUNDS),
    "seed": 0,
}
MIN_SIZE, MAX_SIZE, MAX_ROWS = 32, 512, 1_000_000


@dataclass(frozen=True)
class SceneConfig:
    """A validated config for one split (``n`` already resolved for that split)."""

    split: str
    n: int
    image_size: int
    min_objects: int
    max_objects: int
    shapes: tuple[str, ...]
    colors: tuple[str, ...]
    backgrounds: tuple[str, ...]
    seed: int

    def canonical(self, with_n: bool = True) -> dict[str, Any]:
        """Every key with its value (defaults filled in), JSON-ready; ``split`` left out."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "split"}
        if not with_n:
            del data["n"]
        return data

    @property
    def fingerprint(self) -> str:
        """sha256(version, canonical config, split), 32 hex digits: the ``datasets`` fingerprint."""
        return digest({"version": VERSION, "config": self.canonical(), "split": self.split})[:32]

    @property
    def scene_key(self) -> str:
        """8 hex digits naming what the rows look like, ``n`` aside (rows are prefix-stable in ``n``)."""
        return digest({"version": VERSION, "config": self.canonical(with_n=False)})[:8]

    @property
    def split_seed(self) -> int:
        """The seed of this split: derived from (seed, split), so splits differ but reproduce."""
        return int(digest({"seed": self.seed, "split": self.split})[:16], 16)


def digest(value: Any) -> str:
    """sha256 (hex) of ``value``'s canonical JSON: the scenes builders' ids, keys and fingerprints."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def with_max_objects(config: Mapping[str, Any], default: int) -> dict[str, Any]:
    """A copy of a question builder's ``config`` with ``max_objects`` defaulting to ``default`` (or
    to ``min_objects`` when that is larger)."""
    config = dict(config)
    if "max_objects" not in config:
        low = config.get("min_objects", 1)
        config["max_objects"] = max(default, low) if isinstance(low, int) else default
    return config


def _fail(message: str) -> ValueError:
    shown = {k: "all" if isinstance(v, list) else v for k, v in DEFAULTS.items()} | {"max_objects": "min_objects"}
    allowed = ", ".join(f"{k} (default {v})" for k, v in shown.items())
    return ValueError(f"{message}; allowed keys: {allowed}")


def _integer(config: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = config.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _words(config: Mapping[str, Any], key: str, vocabulary: Any) -> tuple[str, ...]:
    value = config.get(key, DEFAULTS[key])
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise _fail(f"{key} must be a non-empty list drawn from {', '.join(vocabulary)}; got {value!r}")
    unknown = [w for w in value if w not in vocabulary]
    if unknown:
        raise _fail(f"{key}: unknown {', '.join(map(repr, unknown))} (choose from {', '.join(vocabulary)})")
    if len(set(value)) != len(value):
        raise _fail(f"{key} lists a name twice: {value!r}")
    return tuple(value)


def _rows(config: Mapping[str, Any], split: str) -> int:
    value = config.get("n", DEFAULTS["n"])
    if isinstance(value, Mapping):
        extra = sorted(set(value) - set(SPLITS))
        if extra:
            raise _fail(f"n: unknown split(s) {', '.join(map(repr, extra))} (splits: {', '.join(SPLITS)})")
        value = value.get(split, DEFAULTS["n"])
    return _integer({"n": value}, "n", 1, MAX_ROWS)


def parse(config: Mapping[str, Any] | None, split: str) -> SceneConfig:
    """Validate ``config`` for ``split``; raise a one-line ``ValueError`` naming the allowed keys.

    ``n`` is an integer, or a mapping split -> integer (e.g. ``{train: 1000, test: 200}``).
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise _fail(f"unknown config key(s) {', '.join(map(repr, unknown))}")
    if split not in SPLITS:
        raise _fail(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
    min_objects = _integer(config, "min_objects", 1, MAX_OBJECTS)
    max_objects = _integer({"max_objects": min_objects, **config}, "max_objects", 1, MAX_OBJECTS)
    if max_objects < min_objects:
        raise _fail(f"max_objects ({max_objects}) is below min_objects ({min_objects})")
    return SceneConfig(
        split=split,
        n=_rows(config, split),
        image_size=_integer(config, "image_size", MIN_SIZE, MAX_SIZE),
        min_objects=min_objects,
        max_objects=max_objects,
        shapes=_words(config, "shapes", SHAPES),
        colors=_words(config, "colors", COLORS),
        backgrounds=_words(config, "backgrounds", BACKGROUNDS),
        seed=_integer(config, "seed", 0, 2**63 - 1),
    )

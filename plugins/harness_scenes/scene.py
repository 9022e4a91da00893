"""Sampling one scene (what is where) from a seeded generator, and describing it in words.

Row ``i`` of a split depends only on (config without ``n``, split, i): a split of
``n = 100`` is the first 100 rows of the same split with ``n = 1000``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SceneConfig
from .vocabulary import COLORS, join, quantity


def pick(rng: np.random.Generator, options: Any) -> Any:
    """One of ``options``, drawn with ``rng`` (the question builders' seeded choice)."""
    options = list(options)
    return options[int(rng.integers(len(options)))]

#: Largest circumradius of an object, as a fraction of the image size, in a one-object config.
LARGEST = 0.40
#: Smallest circumradius relative to the largest; and the floor in pixels.
SMALLEST, MIN_RADIUS = 0.55, 3.0
#: Most colour jitter per RGB channel.
JITTER = 8
#: Most rotation of a shape, in degrees either way.
TILT = 15.0


@dataclass(frozen=True)
class SceneObject:
    """One drawn object. ``center`` is the pixel (x, y) its outline is drawn around (always inside it)."""

    shape: str
    color: str
    center: tuple[int, int]
    radius: float
    angle: float
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """Objects largest first (``objects[0]`` is the primary object), the background and a noise seed."""

    objects: tuple[SceneObject, ...]
    background: str
    light: tuple[float, float]
    noise_seed: int

    def caption(self) -> str:
        """``a red circle and two blue squares on a grey background`` (groups in order of size)."""
        groups: dict[tuple[str, str], int] = {}
        for obj in self.objects:
            groups[(obj.color, obj.shape)] = groups.get((obj.color, obj.shape), 0) + 1
        things = join([quantity(count, color, shape) for (color, shape), count in groups.items()])
        return f"{things} on a {self.background} background"


class SceneSampler:
    """Draws the scenes of one split: ``sample(i)`` is row ``i``."""

    def __init__(self, config: SceneConfig) -> None:
        self.config = config
        self._blocks: dict[int, np.ndarray] = {}
        high = LARGEST * config.image_size / math.sqrt(config.max_objects)
        self._radii = (max(MIN_RADIUS, SMALLEST * high), max(MIN_RADIUS, high))
        self._gap = max(2.0, 0.04 * config.image_size)

    def primary(self, index: int) -> tuple[str, str]:
        """(shape, colour) of row ``index``'s primary object: every combination once per block, shuffled."""
        shapes, colors = self.config.shapes, self.config.colors
        size = len(shapes) * len(colors)
        block, offset = divmod(index, size)
        if block not in self._blocks:
            self._blocks[block] = np.random.default_rng([self.config.split_seed, 1, block]).permutation(size)
        combo = int(self._blocks[block][offset])
        return shapes[combo // len(colors)], colors[combo % len(colors)]

    def sample(self, index: int) -> Scene:
        """Row ``index``: a seeded, independent draw."""
        cfg = self.config
        rng = np.random.default_rng([cfg.split_seed, 2, index])
        count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        radii = np.sort(rng.uniform(*self._radii, size=count))[::-1]
        centers, radii = self._place(rng, radii)
        kinds = [self.primary(index)] + [
            (cfg.shapes[int(rng.integers(len(cfg.shapes)))], cfg.colors[int(rng.integers(len(cfg.colors)))])
            for _ in range(count - 1)
        ]
        objects = []
        for (shape, color), center, radius in zip(kinds, centers, radii):
            jitter = rng.integers(-JITTER, JITTER + 1, size=3)
            rgb = tuple(int(v) for v in np.clip(np.array(COLORS[color]) + jitter, 0, 255))
            angle = 0.0 if shape == "circle" else float(rng.uniform(-TILT, TILT))
            objects.append(SceneObject(shape, color, center, float(radius), round(angle, 3), rgb))  # type: ignore[arg-type]
        background = cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]
        light = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-18, 18)))
        return Scene(tuple(objects), background, light, int(rng.integers(2**62)))

    def _place(self, rng: np.random.Generator, radii: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Centres with no two objects closer than the gap, largest first; shrink all and retry on failure."""
        size = self.config.image_size
        for _ in range(40):
            centers: list[tuple[int, int]] = []
            for radius in radii:
                low, high = math.ceil(radius), math.floor(size - 1 - radius)
                candidates = rng.integers(low, max(low, high) + 1, size=(64, 2))
                ok = np.ones(len(candidates), dtype=bool)
                for (x, y), other in zip(centers, radii):
                    reach = radius + other + self._gap
                    ok &= ((candidates[:, 0] - x) ** 2 + (candidates[:, 1] - y) ** 2) >= reach * reach
                if not ok.any():
                    break
                x, y = candidates[int(np.argmax(ok))]
                centers.append((int(x), int(y)))
            else:
                return centers, radii
            radii = radii * 0.9
        raise RuntimeError(f"cannot place {len(radii)} objects in a {size}px image")  # unreachable in practice

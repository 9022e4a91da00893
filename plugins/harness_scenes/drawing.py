"""Rendering a scene with PIL: textured, lit, noisy background; flat-coloured, antialiased shapes.

Shapes are polygons drawn at twice the image size and box-filtered down (antialiasing),
then mild Gaussian pixel noise is added to the whole image.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .scene import Scene, SceneObject
from .vocabulary import BACKGROUNDS

SUPERSAMPLE = 2
NOISE_STD = 3.0


def _regular(sides: int, radius: float, inner: float | None = None) -> list[tuple[float, float]]:
    """A regular polygon (or star, with ``inner`` radius) pointing up, in unit coordinates, y down."""
    steps = sides * (2 if inner else 1)
    points = []
    for k in range(steps):
        r = inner if inner and k % 2 else radius
        theta = -math.pi / 2 + 2 * math.pi * k / steps
        points.append((r * math.cos(theta), r * math.sin(theta)))
    return points


def _heart() -> list[tuple[float, float]]:
    ts = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    x = 16 * np.sin(ts) ** 3
    y = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts))
    y = y - (y.max() + y.min()) / 2  # centre the bounding box on the anchor (which stays inside)
    scale = 0.92 / max(np.abs(x).max(), np.abs(y).max())
    return list(zip((x * scale).tolist(), (y * scale).tolist()))


def _cross(half: float = 0.86, arm: float = 0.3) -> list[tuple[float, float]]:
    a, h = arm, half
    return [(-a, -h), (a, -h), (a, -a), (h, -a), (h, a), (a, a), (a, h), (-a, h), (-a, a), (-h, a), (-h, -a), (-a, -a)]


#: Outlines in unit coordinates (circumradius <= 1, y down), sized to look about equally large.
OUTLINES: dict[str, list[tuple[float, float]]] = {
    "circle": _regular(48, 0.86),
    "square": [(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)],
    "triangle": _regular(3, 1.0),
    "diamond": [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)],
    "pentagon": _regular(5, 0.92),
    "hexagon": _regular(6, 0.9),
    "star": _regular(5, 1.0, inner=0.42),
    "cross": _cross(),
    "heart": _heart(),
}


def outline(obj: SceneObject) -> np.ndarray:
    """The object's polygon in image pixels (continuous coordinates, pixel (x, y) spans [x, x+1))."""
    unit = np.asarray(OUTLINES[obj.shape])
    theta = math.radians(obj.angle)
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    return unit @ rotation * obj.radius + (np.asarray(obj.center) + 0.5)


def bbox(obj: SceneObject, size: int) -> list[int]:
    """``[x0, y0, x1, y1]``: the integer pixel box holding the object (x1, y1 exclusive)."""
    points = outline(obj)
    low, high = np.floor(points.min(axis=0)), np.ceil(points.max(axis=0))
    return [int(v) for v in np.clip(np.concatenate([low, high]), 0, size)]


@lru_cache(maxsize=64)
def _texture(name: str, size: int) -> np.ndarray:
    """The background's two-tone pattern at ``size`` pixels, float32 (size, size, 3)."""
    kind, first, second = BACKGROUNDS[name]
    y, x = np.mgrid[0:size, 0:size]
    period = max(4, size // 8)
    if kind == "stripes":
        mask = ((x + y) // period) % 2
    elif kind == "checker":
        mask = (x // period + y // period) % 2
    else:
        mask = np.zeros_like(x)
    tones = np.array([first, second], dtype=np.float32)
    return tones[mask]


def _background(scene: Scene, size: int) -> np.ndarray:
    """Texture plus a linear lighting ramp: ``light = (direction, strength)``."""
    direction, strength = scene.light
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    shade = strength * (ramp[None, :] * math.cos(direction) + ramp[:, None] * math.sin(direction))
    return np.clip(_texture(scene.background, size) + shade[:, :, None], 0, 255).astype(np.uint8)


def render(scene: Scene, size: int) -> Image.Image:
    """The RGB image of ``scene`` at ``size`` x ``size`` pixels (deterministic given the scene)."""
    big = size * SUPERSAMPLE
    canvas = Image.fromarray(_background(scene, big), "RGB")
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        points = outline(obj) * SUPERSAMPLE
        draw.polygon([(float(x), float(y)) for x, y in points], fill=obj.rgb)
    small = np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32)
    noise = np.random.default_rng(scene.noise_seed).standard_normal(small.shape, dtype=np.float32) * NOISE_STD
    return Image.fromarray(np.clip(np.rint(small + noise), 0, 255).astype(np.uint8), "RGB")

"""A procedural segmentation benchmark for demos and tests, generated on the fly.

Every scene is a textured background with 1-4 objects drawn on top of each other. Each object
class has a shape, a hue range and a size range. Classes come in pairs that share a hue range and
differ only by shape (class 1 circle / class 2 cross, class 3 square / class 4 ring, ...), so
colour alone cannot separate them; with more than 8 classes the shapes repeat in another hue, so
shape alone cannot either. Scenes are deterministic functions of (seed, split, index), so a
dataset needs no files and every process of a distributed run sees the same images.

Label maps follow the VOC conventions (docs/protocol-2d.md#datasets-on-disk): background 0, object
classes 1..K and, optionally, a 1-pixel ignore border (255) along the inside of every object outline.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

IGNORE_LABEL = 255
SPLIT_CODES = {"train": 0, "test": 1}

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(u, v), np.arctan2(v, u)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Equilateral triangle inscribed in the unit circle: three half-planes at distance 0.5."""
    inside = np.ones(u.shape, dtype=bool)
    for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
        inside &= u * math.cos(angle) + v * math.sin(angle) <= 0.5
    return inside


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five-pointed star: the outline radius oscillates between 0.45 and 1 with the angle."""
    radius, angle = _polar(u, v)
    return radius <= 0.45 + 0.55 * ((1 + np.cos(5 * angle)) / 2) ** 2


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The unit disc minus a disc shifted to the right."""
    return (np.hypot(u, v) <= 1.0) & (np.hypot(u - 0.45, v) > 0.75)


# Shapes in (u, v) object coordinates: the object's radius is 1.
# Consecutive shapes form the pairs that share a hue, so each pair is chosen to differ clearly.
SHAPES: dict[str, ShapeFn] = {
    "circle": lambda u, v: np.hypot(u, v) <= 0.85,
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0))
    | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0)),
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.75,
    "ring": lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u, v) >= 0.55),
    "triangle": _triangle,
    "crescent": _crescent,
    "star": _star,
    "ellipse": lambda u, v: u**2 + (v / 0.5) ** 2 <= 1.0,
}
_SHAPE_NAMES = tuple(SHAPES)


@dataclass(frozen=True)
class ClassStyle:
    """How objects of one class look: shape, hue centre (0..1), radius range (fraction of size)."""

    name: str
    shape: str
    hue: float
    radius: tuple[float, float]


def class_styles(num_classes: int) -> list[ClassStyle]:
    """Styles of object classes 1..num_classes (index 0 of the list is class 1).

    Class k has shape number (k-1) mod 8 and hue group (k-1) // 2, so consecutive pairs share a
    hue and differ by shape; hue groups are spread with the golden ratio so they stay apart.
    """
    styles = []
    for k in range(1, num_classes + 1):
        shape = _SHAPE_NAMES[(k - 1) % len(_SHAPE_NAMES)]
        group = (k - 1) // 2
        hue = (0.05 + group * 0.6180339887) % 1.0
        low = 0.18 + 0.03 * ((k - 1) % 3)
        cycle = (k - 1) // len(_SHAPE_NAMES)
        name = shape if cycle == 0 else f"{shape}{cycle + 1}"
        styles.append(ClassStyle(name=name, shape=shape, hue=hue, radius=(low, low + 0.12)))
    return styles


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-saturation texture (gradient, stripes or smooth noise) as float32 (H, W, 3)."""
    first = _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.9))
    second = _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.9))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(3)
    angle = rng.uniform(0, 2 * math.pi)
    along = (xx * math.cos(angle) + yy * math.sin(angle)) / max(height, width)
    if kind == 0:  # linear gradient
        mix = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == 1:  # sinusoidal stripes
        frequency = rng.uniform(2.0, 8.0)
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * along + rng.uniform(0, 2 * math.pi))
    else:  # smooth noise: a coarse random grid upsampled bilinearly
        coarse = rng.random((5, 5)).astype(np.float32)
        gy = yy / max(height - 1, 1) * 4
        gx = xx / max(width - 1, 1) * 4
        y0, x0 = np.minimum(gy.astype(int), 3), np.minimum(gx.astype(int), 3)
        fy, fx = gy - y0, gx - x0
        mix = (
            coarse[y0, x0] * (1 - fy) * (1 - fx)
            + coarse[y0 + 1, x0] * fy * (1 - fx)
            + coarse[y0, x0 + 1] * (1 - fy) * fx
            + coarse[y0 + 1, x0 + 1] * fy * fx
        )
    mix = mix[..., None]
    return first * (1 - mix) + second * mix


def _inner_border(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label (a 1-pixel band inside each outline)."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    return differs & (labels > 0)


class SyntheticScenes:
    """Deterministic procedural scenes: ``scenes[i] -> (image (H, W, 3), labels (H, W))``, uint8.

    num_images: length of the split; size: int (square) or (height, width); num_classes: K object
    classes, labels 1..K (0 background); seed and split ("train" or "test") select the scenes;
    borders: mark a 1-pixel ignore border (255) inside each object outline, like VOC.
    """

    def __init__(
        self,
        num_images: int,
        size: int | tuple[int, int] = 64,
        num_classes: int = 8,
        seed: int = 0,
        split: str = "train",
        borders: bool = True,
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
        if not 1 <= num_classes <= 254:
            raise ValueError(f"num_classes must be in 1..254, got {num_classes}")
        if isinstance(size, int):
            size = (size, size)
        self.height, self.width = int(size[0]), int(size[1])
        if self.height < 8 or self.width < 8:
            raise ValueError(f"size must be at least 8x8 pixels, got {size}")
        self.num_images = int(num_images)
        self.num_classes = num_classes
        self.seed = int(seed)
        self.split = split
        self.borders = borders
        self.styles = class_styles(num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Name of every label: "background", then the class styles' names."""
        return ("background",) + tuple(style.name for style in self.styles)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"scene {index} out of range 0..{self.num_images - 1}")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        height, width = self.height, self.width
        image = _background(rng, height, width)
        labels = np.zeros((height, width), dtype=np.uint8)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
        size = min(height, width)
        # Drawing order is occlusion order: later objects cover earlier ones.
        for k in rng.integers(1, self.num_classes + 1, size=rng.integers(1, 5)):
            self._draw(rng, self.styles[k - 1], int(k), image, labels, yy, xx, size)
        image += rng.normal(0.0, 4.0, image.shape).astype(np.float32)  # sensor-like noise
        if self.borders:
            labels[_inner_border(labels)] = IGNORE_LABEL
        return np.clip(image, 0, 255).astype(np.uint8), labels

    @staticmethod
    def _draw(
        rng: np.random.Generator,
        style: ClassStyle,
        label: int,
        image: np.ndarray,
        labels: np.ndarray,
        yy: np.ndarray,
        xx: np.ndarray,
        size: int,
    ) -> None:
        """Paint one object of ``style`` at a random position, scale and rotation (in place)."""
        radius = rng.uniform(*style.radius) * size
        cy = rng.uniform(0.1, 0.9) * labels.shape[0]
        cx = rng.uniform(0.1, 0.9) * labels.shape[1]
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * math.cos(angle) + dy * math.sin(angle)) / radius
        v = (-dx * math.sin(angle) + dy * math.cos(angle)) / radius
        inside = SHAPES[style.shape](u, v)
        colour = _hsv(
            style.hue + rng.uniform(-0.03, 0.03), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
        )
        # A gentle shading ramp across the object, so objects are not flat colour patches.
        shading = 1.0 + rng.uniform(0.05, 0.2) * np.clip(u[inside], -1, 1)
        image[inside] = colour[None, :] * shading[:, None]
        labels[inside] = label

"""Training augmentation and input features of whole scenes (docs/pointcloud-scenes.md#augmentation).

Geometry, applied to the scene's coordinates before grid sampling (so that the voxels of an
augmented scene are those of the scene as the network sees it):

- rotation about the vertical axis through the scene's centre by an angle U(0, 2 pi);
- scaling by U(0.9, 1.1), the same factor on every axis;
- a mirror in x and one in y, each with probability 1/2;
- jitter N(0, 0.005 m) clipped to +-0.02 m per coordinate.

Colour, applied to the sampled points: a translation of all points by U(-0.05, 0.05) x 255 per
channel, then per-point noise N(0, 0.05 x 255), clipped to 0..255.

Features (``FEATURES`` = 6 per point): rgb / 127.5 - 1, then the position relative to the sample:
x and y minus the sample's mean, z minus its lowest point (a height).
"""

from __future__ import annotations

import math

import numpy as np

FEATURES = 6
SCALE = (0.9, 1.1)
JITTER_SIGMA, JITTER_CLIP = 0.005, 0.02
COLOUR_SHIFT, COLOUR_NOISE = 0.05, 0.05


def rotate_z(coord: np.ndarray, angle: float) -> np.ndarray:
    """``coord`` rotated by ``angle`` about the vertical axis through its (x, y) centre."""
    centre = (coord.max(axis=0) + coord.min(axis=0)) / 2
    centre[2] = 0.0
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (coord - centre) @ rotation.T + centre


def augment_geometry(coord: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation, scaling, mirrors and jitter of (n, 3) float64 coordinates (module docstring)."""
    coord = rotate_z(np.asarray(coord, dtype=np.float64), float(rng.uniform(0.0, 2.0 * math.pi)))
    coord = coord * rng.uniform(*SCALE)
    for axis in (0, 1):
        if rng.random() < 0.5:
            coord[:, axis] = -coord[:, axis]
    return coord + np.clip(rng.normal(0.0, JITTER_SIGMA, coord.shape), -JITTER_CLIP, JITTER_CLIP)


def augment_colour(color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shift of every point's colour, then per-point noise; float 0..255 (module docstring)."""
    color = np.asarray(color, dtype=np.float64)
    color = color + rng.uniform(-COLOUR_SHIFT, COLOUR_SHIFT, 3) * 255
    color = color + rng.normal(0.0, COLOUR_NOISE * 255, color.shape)
    return np.clip(color, 0, 255)


def scene_features(coord: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Features (n, 6) float32 of a sample's points: rgb / 127.5 - 1, x and y minus their mean,
    z minus its minimum."""
    coord = np.asarray(coord, dtype=np.float64)
    position = coord - np.r_[coord[:, :2].mean(axis=0), coord[:, 2].min()] if len(coord) else coord
    rgb = np.asarray(color, dtype=np.float64) / 127.5 - 1.0
    return np.concatenate([rgb, position], axis=1).astype(np.float32)

"""Per-access point sampling, training augmentation and the 9 input features of a block.

docs/pointcloud-datasets.md#sampling. One access of a block:

1. ``sample_indices``: ``num_points`` indices drawn uniformly at random (with replacement only
   when the block has fewer points), or every point in file order for ``num_points=None``;
2. ``block_features`` on the sampled points: xyz made block-local (minus the minimum over the
   *sampled* points), optionally augmented (rotation about z by U(0, 2 pi) around that origin,
   then Gaussian jitter sigma 0.01 clipped to +-0.05 on xyz only, no re-shift after rotation),
   then the features xyz, rgb / 255 and the per-axis min-max normalised xyz, shape (9, N);
   with ``height_base`` (``data.height_feature``) a 10th channel, the height z - height_base in
   metres (docs/pointcloud-datasets.md#height-feature).

``rng`` is anything with numpy's ``choice`` / ``uniform`` / ``normal`` methods: the ``np.random``
module itself (the global RNG, which the training engine reseeds per sample) or a
``np.random.Generator`` (seeded evaluation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NUM_FEATURES = 9
HEIGHT_FEATURES = 1  # the optional height above the block's minimum (data.height_feature)
JITTER_SIGMA = 0.01
JITTER_CLIP = 0.05


def sample_indices(num_total: int, num_points: int | None, rng: Any = np.random) -> np.ndarray:
    """Indices (int64) of the points one access uses.

    ``num_points=None``: ``arange(num_total)`` (every point, file order, no randomness used).
    Otherwise ``num_points`` indices drawn uniformly; without replacement when the block has at
    least that many points, with replacement otherwise (a small block still fills the batch).
    """
    if num_total <= 0:
        raise ValueError(f"cannot sample points from an empty block (num_total={num_total})")
    if num_points is None:
        return np.arange(num_total, dtype=np.int64)
    if num_points <= 0:
        raise ValueError(f"num_points must be positive or None, got {num_points}")
    return np.asarray(rng.choice(num_total, num_points, replace=num_total < num_points), dtype=np.int64)


def rotate_jitter(xyz: np.ndarray, rng: Any = np.random) -> np.ndarray:
    """Training augmentation of block-local xyz (float32 (n, 3)): rotation about the z axis
    through the origin by an angle U(0, 2 pi), then jitter N(0, 0.01) clipped to +-0.05."""
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    rotated = xyz @ rotation.T
    jitter = np.clip(rng.normal(0.0, JITTER_SIGMA, size=xyz.shape), -JITTER_CLIP, JITTER_CLIP)
    return (rotated + jitter.astype(np.float32)).astype(np.float32)


def min_max(xyz: np.ndarray) -> np.ndarray:
    """Per-axis min-max normalisation to [0, 1]; an axis without extent (all points equal, or a
    single sampled point) becomes 0 instead of dividing by zero."""
    low = xyz.min(axis=0)
    extent = xyz.max(axis=0) - low
    extent = np.where(extent > 0, extent, 1.0).astype(np.float32)
    return ((xyz - low) / extent).astype(np.float32)


def num_features(height_feature: bool = False) -> int:
    """Input channels of the model: 9, or 10 with the height feature."""
    return NUM_FEATURES + (HEIGHT_FEATURES if height_feature else 0)


def block_features(coord: np.ndarray, color: np.ndarray, *, augment: bool = False,
                   rng: Any = np.random, height_base: float | None = None) -> np.ndarray:
    """Features (9, n) float32 of already sampled points: [xyz block-local (augmented when
    ``augment``), rgb / 255, min-max normalised xyz]; ``coord`` (n, 3) in scene coordinates,
    ``color`` (n, 3) uint8.

    ``height_base`` (the minimum z over all points of the block, in scene coordinates) adds a
    10th channel z - height_base: metres, from the coordinates before augmentation and never
    normalised (docs/pointcloud-datasets.md#height-feature)."""
    xyz = np.asarray(coord, dtype=np.float32)
    channels = []
    if height_base is not None:
        channels.append(xyz[:, 2:3] - np.float32(height_base))
    xyz = xyz - xyz.min(axis=0)
    if augment:
        xyz = rotate_jitter(xyz, rng)
    rgb = np.asarray(color, dtype=np.float32) / 255.0
    return np.concatenate([xyz, rgb, min_max(xyz), *channels], axis=1).T.copy()

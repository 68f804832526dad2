"""Grid sampling, crops and batches of whole scenes (docs/pointcloud-scenes.md#sampling).

A scene is sampled on a grid of cubic voxels of side ``voxel_size`` (S3DIS 0.05 m, ScanNet 0.02 m,
aerial LiDAR tens of centimetres), so that the network sees one point per voxel:

- **training** (``grid_sample``): one random point of every occupied voxel, drawn anew at every
  access, so that over the epochs every point of the scene is seen;
- **test** (``grid_fragments``): the points of each voxel are put in a fixed order and fragment i
  takes the i-th point of every voxel that has one. The fragments partition the scene, so
  predicting every fragment and summing the softmax back per point scores every point exactly once.

``crop`` then bounds a training sample to ``max_points``: the points nearest to a random point of the
sample (a sphere, or an axis-aligned box with the L-infinity distance). Batches concatenate the
samples' points and record where each sample ends (``offsets``), rather than padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

CROPS = ("sphere", "box")


def voxel_index(coord: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(voxel of every point, number of occupied voxels): points in the same cube of side
    ``voxel_size`` (counted from the scene's minimum corner) share a voxel id 0..V-1."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    coord = np.asarray(coord, dtype=np.float64)
    cells = np.floor((coord - coord.min(axis=0)) / voxel_size).astype(np.int64)
    _, voxel = np.unique(cells, axis=0, return_inverse=True)
    voxel = voxel.reshape(-1)
    return voxel, int(voxel.max()) + 1 if len(voxel) else 0


def grid_sample(coord: np.ndarray, voxel_size: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of one random point per occupied voxel (ascending voxel id)."""
    voxel, _ = voxel_index(coord, voxel_size)
    # a random key per point, then the smallest key of each voxel wins: uniform within the voxel
    order = np.lexsort((rng.random(len(voxel)), voxel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = voxel[order][1:] != voxel[order][:-1]
    return order[first]


def grid_fragments(coord: np.ndarray, voxel_size: float) -> list[np.ndarray]:
    """The test fragments of a scene: fragment i holds the i-th point (in index order) of every voxel
    with more than i points. Together they hold every point exactly once."""
    voxel, _ = voxel_index(coord, voxel_size)
    order = np.argsort(voxel, kind="stable")  # by voxel, then by point index
    sorted_voxel = voxel[order]
    starts = np.flatnonzero(np.r_[True, sorted_voxel[1:] != sorted_voxel[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return [np.sort(order[rank == i]) for i in range(int(rank.max()) + 1 if len(rank) else 0)]


def crop(coord: np.ndarray, max_points: int, rng: np.random.Generator, mode: str = "sphere") -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` points: all of them when there are few enough, else
    the ``max_points`` nearest to a random point (L2 for "sphere", L-infinity for "box")."""
    if mode not in CROPS:
        raise ValueError(f"crop mode must be one of {CROPS}, got {mode!r}")
    if max_points <= 0:
        raise ValueError(f"max_points must be positive, got {max_points}")
    n = len(coord)
    if n <= max_points:
        return np.arange(n)
    coord = np.asarray(coord, dtype=np.float64)
    offset = np.abs(coord - coord[rng.integers(n)])
    distance = np.sqrt((offset ** 2).sum(axis=1)) if mode == "sphere" else offset.max(axis=1)
    return np.sort(np.argpartition(distance, max_points - 1)[:max_points])


def collate_scenes(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """A batch of scene samples, each (features (n_i, C), labels (n_i,)): the points concatenated, and
    ``offsets[b]`` the end of sample b (its points are ``offsets[b-1]:offsets[b]``)."""
    if not items:
        raise ValueError("a batch needs at least one sample")
    features = torch.cat([f for f, _ in items])
    labels = torch.cat([l for _, l in items])
    offsets = torch.tensor(np.cumsum([len(l) for _, l in items]), dtype=torch.int64)
    return {"features": features, "labels": labels, "offsets": offsets}

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

CROPS = ("sphere", "box")


def voxel_cells(coord: np.ndarray, voxel_size: float) -> np.ndarray:
    """The integer cell (n, 3) of every point on the grid of side ``voxel_size`` that starts at the
    points' minimum corner: the model's voxel coordinates."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    coord = np.asarray(coord, dtype=np.float64)
    if not len(coord):
        return np.zeros((0, 3), dtype=np.int64)
    return np.floor((coord - coord.min(axis=0)) / voxel_size).astype(np.int64)


def voxel_index(coord: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(voxel of every point, number of occupied voxels): points in the same cube of side
    ``voxel_size`` (counted from the scene's minimum corner) share a voxel id 0..V-1."""
    cells = voxel_cells(coord, voxel_size)
    # one int64 key per cell, x major: the ids come in the order of np.unique over the rows (lexicographic),
    # several times faster than np.unique(cells, axis=0)
    extent = cells.max(axis=0) + 1 if len(cells) else np.ones(3, np.int64)
    key = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]
    _, voxel = np.unique(key, return_inverse=True)
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


@dataclass
class SceneBatch:
    """The model input of a batch of scene samples: ``features`` (N, C) and ``grid`` (N, 3) voxel
    coordinates of every point, the samples concatenated, and ``offsets`` (B,), the end of each
    sample (its points are ``offsets[b-1]:offsets[b]``). ``len`` is the number of samples; ``to``
    and ``pin_memory`` are what the engine and the DataLoader call on a batch's input."""

    features: torch.Tensor
    grid: torch.Tensor
    offsets: torch.Tensor

    def __len__(self) -> int:
        return len(self.offsets)

    def to(self, device: Any, non_blocking: bool = False) -> "SceneBatch":
        return SceneBatch(*(t.to(device, non_blocking=non_blocking) for t in (self.features, self.grid, self.offsets)))

    def pin_memory(self) -> "SceneBatch":
        return SceneBatch(self.features.pin_memory(), self.grid.pin_memory(), self.offsets.pin_memory())

    def sample_index(self) -> torch.Tensor:
        """(N,) the sample of every point (PLOP's adaptive factor is per sample, css.losses.pseudo)."""
        return point_samples(self.offsets)


def point_samples(offsets: torch.Tensor) -> torch.Tensor:
    """(N,) the sample of every point of a batch whose sample b ends at ``offsets[b]``."""
    sizes = torch.diff(offsets, prepend=offsets.new_zeros(1))
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), sizes)


def collate_scenes(items: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[SceneBatch, torch.Tensor]:
    """A batch of scene samples, each (features (n_i, C), grid (n_i, 3), labels (n_i,)): the
    :class:`SceneBatch` of their points concatenated, and the labels (1, N) in the layout of the
    model's logits (1, C, N)."""
    if not items:
        raise ValueError("a batch needs at least one sample")
    features = torch.cat([f for f, _, _ in items])
    grid = torch.cat([g for _, g, _ in items])
    labels = torch.cat([lab for _, _, lab in items])
    offsets = torch.tensor(np.cumsum([len(lab) for _, _, lab in items]), dtype=torch.int64)
    return SceneBatch(features, grid, offsets), labels.unsqueeze(0)

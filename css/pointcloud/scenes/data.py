"""Whole scenes of a task step (``data.unit: scene``; docs/pointcloud-scenes.md#data).

The scenes come from the split's scene file (``<root>/<split>_scenes.h5``, written by
``python -m css.pointcloud.prepare`` beside the blocks). A step's scenes follow the block rules,
applied to whole scenes (css.pointcloud.data.select_blocks): train = the scenes that show a current
class by the presence rule on their stored counts, test = every test scene; labels are
``Task.remap``-ed with the protocol's void handling, as for blocks.

One training access of a scene: the augmented coordinates (css.pointcloud.scenes.transforms), one
random point per voxel (``grid_sample``), a crop to ``max_points``, the colour augmentation and the
features. It returns ``(features (n, 6) float32, grid (n, 3) int64 voxel coordinates, labels (n,)
int64)``; ``collate_scenes`` makes batches of them. The test metric reads every point through
``fragments`` instead (css.pointcloud.scenes.evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from css.errors import ConfigError
from css.pointcloud.data import check_fits_store, label_set, open_split, remap_labels, select_blocks
from css.pointcloud.scenes.sampling import CROPS, crop, grid_fragments, grid_sample, voxel_cells
from css.pointcloud.scenes.transforms import augment_colour, augment_geometry, rotate_z, scene_features
from css.pointcloud.store import BlockStore
from css.tasks.index import presence_share, shown_labels
from css.tasks.task import Task


class SceneDataset(Dataset):
    """The whole scenes of one task step and split (module docstring). ``ids`` are the scene names.

    ``seed=None`` draws each access from numpy's global RNG (which the training engine reseeds per
    sample), an int from ``default_rng([seed, i])``."""

    def __init__(self, store: BlockStore, indices: np.ndarray, task: Task, step: int, split: str, *,
                 voxel_size: float, max_points: int | None, crop_mode: str, augment: bool, seed: int | None,
                 protocol: str, overlap: bool) -> None:
        if crop_mode not in CROPS:
            raise ConfigError(f"data.crop: {crop_mode!r} is not one of {', '.join(CROPS)}")
        self.store, self.indices = store, np.asarray(indices, dtype=np.int64)
        self.ids = [store.ids[i] for i in self.indices]
        self.task, self.step, self.split = task, step, split
        self.voxel_size, self.max_points, self.crop_mode = float(voxel_size), max_points, crop_mode
        self.augment, self.seed, self.protocol, self.overlap = augment, seed, protocol, overlap
        self.label_set = label_set(store, protocol)
        self.presence: np.ndarray | None = None  # presence[k, l]: scene k shows label l (the presence rule)

    def shown_labels(self) -> set[int]:
        """The dataset labels some scene shows under the presence rule (css.controller.preflight)."""
        return shown_labels(self.presence)

    def __len__(self) -> int:
        return len(self.indices)

    def rng(self, i: int) -> np.random.Generator:
        if self.seed is None:  # the global RNG, reseeded per sample by the engine, seeds this access
            return np.random.default_rng(np.random.randint(0, 2**31 - 1))
        return np.random.default_rng([int(self.seed), int(i)])

    def load(self, i: int) -> dict[str, np.ndarray]:
        """Every point of scene i: coord (n, 3) float64 metres, color (n, 3) uint8, label (n,) model labels."""
        scene = self.store.block(int(self.indices[i]), self.label_set)
        scene["coord"] = scene["coord"].astype(np.float64)
        scene["label"] = remap_labels(self.task, scene["label"], self.step, self.split, protocol=self.protocol,
                                      overlap=self.overlap)
        return scene

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = self.rng(i)
        scene = self.load(i)
        coord, color = scene["coord"], scene["color"]
        if self.augment:
            coord = augment_geometry(coord, rng)
        cells = voxel_cells(coord, self.voxel_size)
        points = grid_sample(coord, self.voxel_size, rng)
        if self.max_points is not None:
            points = points[crop(coord[points], self.max_points, rng, self.crop_mode)]
        color = augment_colour(color[points], rng) if self.augment else color[points]
        return (torch.from_numpy(scene_features(coord[points], color)), torch.from_numpy(cells[points]),
                torch.from_numpy(np.ascontiguousarray(scene["label"][points])))

    def fragments(self, i: int, angle: float = 0.0) -> tuple[dict[str, np.ndarray], Iterator[tuple]]:
        """Scene i loaded, and its test fragments (``grid_fragments``) of the scene rotated by ``angle``
        about the vertical axis: ``(point indices, features (n, 6), grid (n, 3))`` each. The fragments
        hold every point of the scene exactly once."""
        scene = self.load(i)
        return scene, cloud_fragments(scene["coord"], scene["color"], self.voxel_size, angle)


def cloud_fragments(coord: np.ndarray, color: np.ndarray, voxel_size: float,
                    angle: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The test fragments of a cloud rotated by ``angle`` about the vertical axis: ``(point indices,
    features (n, 6), grid (n, 3))`` each, together every point exactly once (the test metric's and
    ``css.predict``'s input)."""
    coord = rotate_z(np.asarray(coord, dtype=np.float64), angle) if angle else np.asarray(coord, dtype=np.float64)
    cells = voxel_cells(coord, voxel_size)
    for points in grid_fragments(coord, voxel_size):
        yield points, scene_features(coord[points], color[points]), cells[points]


def build_scene_dataset(name: str, root: str | os.PathLike | None, *, task: Task, step: int, split: str,
                        voxel_size: float, max_points: int | None = None, crop_mode: str = "sphere",
                        augment: bool = False, seed: int | None = None, protocol: str = "reference",
                        overlap: bool = True, presence: tuple[float, int] = (0.0, 100),
                        store: BlockStore | None = None, options: dict[str, Any] | None = None) -> SceneDataset:
    """The whole scenes of ``task`` step ``step`` and ``split`` (module docstring); ``store`` reuses an
    opened scene file (``open_split(..., unit="scene")``)."""
    if store is None:
        store = open_split(name, root, split, options=options, unit="scene")
    check_fits_store(task, store)
    indices = select_blocks(store, task, step, split, protocol=protocol, overlap=overlap, presence=presence)
    dataset = SceneDataset(store, indices, task, step, split, voxel_size=voxel_size, max_points=max_points,
                           crop_mode=crop_mode, augment=augment, seed=seed, protocol=protocol, overlap=overlap)
    fraction, min_count = presence
    dataset.presence = presence_share(store.counts(label_set(store, protocol))[indices], store.sizes[indices],
                                      fraction=fraction, min_count=min_count)
    return dataset

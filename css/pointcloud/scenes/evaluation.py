"""The test metric of whole scenes: every point of every test scene, exactly once
(docs/pointcloud-scenes.md#evaluation).

A scene is cut into its grid fragments (``SceneDataset.fragments``: fragment i holds the i-th point
of every voxel), each fragment is one sample of a batch, and the softmax of every point is added to
that point's row; with ``rotations`` > 1 the scene is predicted again rotated about z by 2 pi k / R
and those softmaxes are added too. A point's prediction is the class of its summed softmax (through
the step's predictor, css.pointcloud.channels.class_predictor). The scenes are shared round-robin
among the processes and the confusion matrix is summed over them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from css.checkpoint import unwrap
from css.distributed import DistEnv, all_reduce_sum
from css.engine.loaders import progress
from css.engine.precision import autocast
from css.metrics import ConfusionMatrix
from css.pointcloud.scenes.data import cloud_fragments
from css.pointcloud.scenes.sampling import collate_scenes


def _groups(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    group: list[Any] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class CloudFragments:
    """Clouds that are no dataset, (coord, color) each (css.predict's inputs, a benchmark's scene), read as
    ``scene_probabilities`` reads a SceneDataset's scenes."""

    def __init__(self, clouds: list[tuple[np.ndarray, np.ndarray]], voxel_size: float) -> None:
        self.clouds, self.voxel_size = clouds, voxel_size

    def fragments(self, i: int, angle: float = 0.0) -> tuple[dict[str, np.ndarray], Iterator[tuple]]:
        coord, color = self.clouds[i]
        return {"coord": coord}, cloud_fragments(coord, color, self.voxel_size, angle)


@torch.no_grad()
def scene_probabilities(model: torch.nn.Module, dataset: Any, i: int, *, num_classes: int, device: torch.device,
                        batch_size: int, precision: str = "fp32",
                        rotations: int = 1) -> tuple[dict[str, np.ndarray], torch.Tensor, int]:
    """(scene i loaded, the summed softmax (n, C) of every point, forward passes run). ``dataset`` is
    anything with ``fragments(i, angle) -> (scene with "coord", fragments)`` (SceneDataset, the clouds of
    css.predict); ``model`` is in eval mode; ``batch_size`` fragments go through one forward pass."""
    probs: torch.Tensor | None = None
    scene: dict[str, np.ndarray] = {}
    forwards = 0
    for r in range(rotations):
        scene, fragments = dataset.fragments(i, 2 * math.pi * r / rotations)
        if probs is None:
            probs = torch.zeros(len(scene["coord"]), num_classes, device=device)
        for group in _groups(fragments, max(1, batch_size)):
            batch, _ = collate_scenes([(torch.from_numpy(f), torch.from_numpy(g), torch.zeros(len(f), dtype=torch.int64))
                                       for _, f, g in group])
            with autocast(device, precision):
                logits = model(batch.to(device)).logits
            index = torch.from_numpy(np.concatenate([points for points, _, _ in group])).to(device)
            probs.index_add_(0, index, logits[0].float().softmax(0).t())
            forwards += 1
    assert probs is not None
    return scene, probs, forwards


@torch.no_grad()
def evaluate_scenes(model: torch.nn.Module, dataset: Any, *, num_classes: int, env: DistEnv, batch_size: int,
                    precision: str = "fp32", rotations: int = 1, desc: str = "eval",
                    predict: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ConfusionMatrix:
    """The confusion matrix over every point of every scene of ``dataset`` (module docstring), summed over
    processes. ``cm.points`` / ``cm.blocks`` (scenes) / ``cm.forwards`` (forward passes) count over all
    processes; ``cm.samples`` the scenes too; ``cm.metric = "scene"``."""
    predict = predict or (lambda logits: logits.argmax(1))
    model = unwrap(model)  # each process runs its own scenes: no DDP collective may wait on the others
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device=env.device)
    mine = range(env.rank, len(dataset), env.world_size)
    points, forwards = 0, 0
    for i in progress(mine, env, len(mine), desc):
        scene, probs, used = scene_probabilities(model, dataset, i, num_classes=num_classes, device=env.device,
                                                 batch_size=batch_size, precision=precision, rotations=rotations)
        cm.update(predict(probs.t().unsqueeze(0)), torch.from_numpy(scene["label"]).unsqueeze(0))
        points += len(scene["label"])
        forwards += used
    cm.all_reduce()
    counts = all_reduce_sum(torch.tensor([points, len(mine), forwards], dtype=torch.int64, device=env.device))
    cm.metric = "scene"
    # samples: the scenes, as a block run counts its blocks; forwards: the passes that scored them
    cm.points, cm.blocks, cm.forwards = (int(v) for v in counts.tolist())
    cm.samples = cm.blocks
    model.train(was_training)
    return cm

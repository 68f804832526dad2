"""What a modality supplies to the modality-agnostic controller (docs/architecture.md#the-modality-contract).

A modality builds the model of a step (one classifier head per step), the datasets of a step and
split (already filtered and remapped for the task), loads pretrained weights and imports foreign
checkpoints. ``get_modality(name)`` imports the branch lazily so the core runs without the heavy
dependencies of the other branch.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch.utils.data import Dataset

from css.errors import ConfigError


class Modality(Protocol):
    name: str
    collate: Callable | None

    def task(self, cfg: Any) -> Any: ...

    def build_model(self, cfg: Any, classes_per_step: list[int], env: Any) -> torch.nn.Module: ...

    def dataset(self, cfg: Any, task: Any, step: int, split: str) -> Dataset: ...

    def load_pretrained(self, model: torch.nn.Module, cfg: Any) -> None: ...

    def import_weights(self, model: torch.nn.Module, path: str) -> Any: ...

    def evaluate(self, model: torch.nn.Module, dataset: Dataset, cfg: Any, task: Any, step: int,
                 env: Any) -> Any: ...
    """The step's test metric as a ConfusionMatrix (summed over processes): the modality owns
    its evaluation (images: argmax of full-resolution logits; point clouds: sampled points)."""


def task_from_config(cfg: Any, load_dataset_task: Callable[..., Any]) -> Any:
    """The task of a config through a modality's ``load_dataset_task(dataset, spec, root=, options=)``:
    ``task.steps`` (class groups) when given, else ``task.name``; a user task keeps its name."""
    import dataclasses

    spec: Any = cfg.task.steps if cfg.task.steps is not None else cfg.task.name
    task = load_dataset_task(cfg.data.dataset, spec, root=cfg.data.root, options=cfg.data.options or None)
    if cfg.task.steps is not None and task.name != cfg.task.name:
        task = dataclasses.replace(task, name=cfg.task.name)
    return task


def get_modality(name: str) -> Modality:
    if name == "image":
        from css.image.modality import ImageModality

        return ImageModality()
    if name == "pointcloud":
        from css.pointcloud.modality import PointCloudModality

        return PointCloudModality()
    raise ConfigError(f"modality: {name!r} is not one of image, pointcloud")

"""Inspection of an image dataset (``python -m css.data inspect``): its layout checked, then per step
the train and test images kept and the train pixels per class (docs/datasets.md#inspect). The label
counts behind the numbers are computed once and cached (css.tasks.index)."""

from __future__ import annotations

from typing import Any

from css.errors import ConfigError
from css.image.data import load_dataset_task, load_split
from css.image.datasets import DATASETS
from css.tasks.inspection import InspectedSplit, StepSummary, format_report, summarise
from css.tasks.task import Task


def image_split(dataset: str, root: str | None, split: str, *, cache_dir: str | None = None,
                options: dict[str, Any] | None = None) -> InspectedSplit:
    """An image split: label histograms from css.image.data.load_split; any pixel shows a label."""
    index = load_split(dataset, root, split, cache_dir=cache_dir, options=options)
    return InspectedSplit(index.class_index(), index.presence())


def inspect_dataset(dataset: str, root: str | None, task: Task, *, overlap: bool = True, cache_dir: str | None = None,
                    options: dict[str, Any] | None = None) -> list[StepSummary]:
    """Per-step image counts and train pixel counts of ``task`` on ``dataset``."""
    train, test = (image_split(dataset, root, split, cache_dir=cache_dir, options=options) for split in ("train", "test"))
    return summarise(task, train, test, overlap)


def inspect(dataset: str, root: str | None, spec: Any, *, overlap: bool, cache_dir: str | None,
            options: dict[str, Any] | None, from_config: bool) -> str:
    """The report of ``python -m css.data inspect`` for an image dataset."""
    if not from_config and dataset not in DATASETS:
        raise ConfigError(f"--dataset {dataset!r} is not an image dataset ({', '.join(DATASETS)}); "
                          f"for point clouds add --modality pointcloud")
    task = load_dataset_task(dataset, spec, root=root, options=options)
    summaries = inspect_dataset(dataset, root, task, overlap=overlap, cache_dir=cache_dir, options=options)
    return format_report(dataset, task, overlap, summaries)

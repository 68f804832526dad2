"""What ``python -m css.data inspect`` reports of a task on a split, whatever the modality: items
kept by each step's selection (``Task.select``, docs/tasks.md#selection) and the elements of every
model class in the kept training items after label masking (what training sees before augmentation).

A modality supplies an ``InspectedSplit`` (a css.tasks.index.ClassIndex and its presence matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from css.tasks.index import ClassIndex
from css.tasks.task import Task


@dataclass
class StepSummary:
    """Images and train pixels of one step: ``pixels`` maps model channel -> pixel count."""

    step: int
    train_images: int
    test_images: int
    pixels: dict[int, int]
    ignored_pixels: int


@dataclass(frozen=True)
class InspectedSplit:
    """What inspection needs of one split, whatever the modality."""

    index: ClassIndex  # per-item label counts (ignored elements excluded) and sizes
    presence: np.ndarray  # presence[i, l]: item i shows label l, by the modality's rule


def train_pixels(
    counts: np.ndarray, ignored: int, task: Task, step: int, overlap: bool
) -> tuple[dict[int, int], int]:
    """Elements per model channel (and ignored elements) after the train label map of ``step``.

    counts: (items, labels) label counts of the kept items; ignored: their ignore_index elements.
    A label the map sends to ignore_index (e.g. a void label) is counted as ignored."""
    totals = counts.sum(axis=0, dtype=np.int64).tolist()
    table = task.label_map(step, "train", overlap)
    per_channel: dict[int, int] = {c: 0 for c in range(task.num_classes(step))}
    ignored_total = 0
    for label, count in [*enumerate(totals), (task.ignore_index, int(ignored))]:
        channel = int(table[label])
        if channel == task.ignore_index:
            ignored_total += count
        else:
            per_channel[channel] += count
    return per_channel, ignored_total


def summarise(task: Task, train: InspectedSplit, test: InspectedSplit, overlap: bool = True) -> list[StepSummary]:
    """Per-step item counts and train element counts, from the two splits' indices."""
    ignored = train.index.sizes - train.index.counts.sum(axis=1)
    summaries = []
    for step in range(task.num_steps):
        kept = task.select(train.presence, step, "train", overlap)
        kept_test = task.select(test.presence, step, "test", overlap)
        pixels, ignored_pixels = train_pixels(
            train.index.counts[kept], int(ignored[kept].sum()), task, step, overlap
        )
        summaries.append(StepSummary(step, len(kept), len(kept_test), pixels, ignored_pixels))
    return summaries


def format_report(dataset: str, task: Task, overlap: bool, summaries: list[StepSummary]) -> str:
    setting = "overlap" if overlap else "disjoint"
    lines = [task.describe(), f"dataset {dataset}, {setting} setting", ""]
    for summary in summaries:
        order = task.order(summary.step)
        lines.append(
            f"step {summary.step}: {summary.train_images} train images, "
            f"{summary.test_images} test images"
        )
        if task.adds == "domains":  # every class keeps its label at every step (docs/tasks.md#domain-steps)
            lines.append("  train pixels per class (a domain step masks no class):")
            shown = set(order)
        else:
            lines.append("  train pixels after masking (background and this step's classes):")
            shown = {task.background, *task.current_labels(summary.step)}
        for channel, count in summary.pixels.items():
            label = order[channel]
            if label not in shown and channel != 0:  # old classes are background at train time
                continue
            name = task.class_name(label)
            lines.append(f"    channel {channel:3d}  {name} ({label}): {count} px")
        lines.append(f"    ignored ({task.ignore_index}): {summary.ignored_pixels} px")
    return "\n".join(lines)

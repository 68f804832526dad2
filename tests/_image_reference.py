"""A slow, literal reading of the image step filters and label maps (docs/tasks.md#selection,
docs/tasks.md#label-maps), written independently of css.tasks, shared by the image data tests."""

from __future__ import annotations

import numpy as np


def reference_keep(present: set[int], labels: list[int], labels_old: list[int], split: str, overlap: bool) -> bool:
    """docs/protocol-2d.md#label-maps-and-filters (train and test): ``labels`` = the step's classes
    (train) or all seen classes (test), background 0 removed."""
    fg = [c for c in labels if c != 0]
    if not any(c in present for c in fg):
        return False
    if split == "train" and not overlap:
        allowed = set(labels) | set(labels_old) | {0, 255}
        return present <= allowed
    return True


def reference_target(mask: np.ndarray, order: list[int], mapped: list[int], dataset: str, split: str) -> np.ndarray:
    """docs/protocol-2d.md#label-maps-and-filters: mapped labels -> their position in ``order``;
    everything else (background 0, old classes at train, future classes) -> 0; 255 stays 255 except
    in ADE training (-> 0)."""
    out = np.zeros(mask.shape, dtype=np.int64)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            value = int(mask[y, x])
            if value == 255:
                out[y, x] = 0 if (dataset == "ade" and split == "train") else 255
            elif value in mapped:
                out[y, x] = order.index(value)
    return out


def reference_subset(masks: dict[str, np.ndarray], ids: list[str], task, step: int, split: str, overlap: bool):
    order = [c for group in task.steps[: step + 1] for c in group]
    labels_old = [c for group in task.steps[:step] for c in group]
    labels = task.steps[step] if split == "train" else order
    kept = [i for i in ids if reference_keep(set(np.unique(masks[i]).tolist()), labels, labels_old, split, overlap)]
    mapped = [c for c in labels if c != 0]
    return kept, {i: reference_target(masks[i], order, mapped, task.dataset, split) for i in kept}


def voc_order(split: str, masks: dict[str, np.ndarray]) -> list[str]:
    prefix = "2007_train" if split == "train" else "2007_val"
    return sorted(i for i in masks if i.startswith(prefix))

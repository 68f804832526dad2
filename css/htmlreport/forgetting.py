"""The figures of forgetting, from a run's step entries and confusion matrices (docs/report.md#what-the-page-shows):
plain numbers, no plotting, so that they can be checked by hand.

- ``learned_steps``: the step at which each model channel was learnt (its first step with the channel);
- ``forgetting_matrix``: the IoU of every channel at every step, and its change since the step it
  was learnt;
- ``row_normalised``: a confusion matrix as shares of each ground-truth row;
- ``where_old_went``: for the old classes of a step, the share of their elements predicted as
  background and as one of the classes the step added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def learned_steps(entries: Sequence[Mapping[str, Any]]) -> list[int]:
    """Per channel of the last step: the first step whose model has it (step entries in step order,
    each with ``num_classes``)."""
    learned: list[int] = []
    for entry in entries:
        while len(learned) < int(entry["num_classes"]):
            learned.append(int(entry["step"]))
    return learned


def forgetting_matrix(entries: Sequence[Mapping[str, Any]]) -> tuple[list[list[float | None]], list[list[float | None]]]:
    """(iou, change): ``iou[c][k]`` is channel c's IoU at the k-th step entry (None before the channel
    exists or where its ground truth is absent); ``change[c][k]`` is ``iou[c][k]`` minus its IoU at the
    step it was learnt (None where either is None)."""
    learned = learned_steps(entries)
    position = {int(e["step"]): k for k, e in enumerate(entries)}
    iou = [[None] * len(entries) for _ in learned]
    for k, entry in enumerate(entries):
        for c, value in enumerate(entry["iou"]):
            iou[c][k] = None if value is None else float(value)
    change: list[list[float | None]] = []
    for c, row in enumerate(iou):
        first = row[position[learned[c]]] if learned[c] in position else None
        change.append([None if v is None or first is None else v - first for v in row])
    return iou, change


def row_normalised(matrix: np.ndarray) -> list[list[float | None]]:
    """Each row divided by its sum: the share of a class's elements given to every prediction; a row
    without ground truth is None throughout."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1)
    return [[float(v / total) for v in row] if total > 0 else [None] * len(row) for row, total in zip(matrix, totals)]


def where_old_went(matrix: np.ndarray, num_old: int) -> list[dict[str, Any]]:
    """For each old class (channels 1..num_old-1) with ground truth: the share of its elements
    predicted as itself, as background (channel 0, when it is a class or the synthetic channel) and as
    a class the step added (channels num_old and up)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = []
    for c in range(1, min(num_old, len(matrix))):
        total = matrix[c].sum()
        if total <= 0:
            continue
        rows.append({"channel": c, "kept": float(matrix[c, c] / total), "background": float(matrix[c, 0] / total),
                     "new": float(matrix[c, num_old:].sum() / total)})
    return rows

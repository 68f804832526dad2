"""The figures of a step and of a run, from confusion-matrix summaries (docs/protocol-2d.md#final-summary).

``final`` follows ``average_csv.py``: from the last step's IoUs, ``old`` is the mean over the base
foreground classes (1..C_cur(step 0)-1), ``new`` over every later class, ``bg`` is IoU_0, ``all``
the last step's mean IoU, ``avg`` the mean of the per-step mean IoUs (step 0 included) and ``hiou``
the harmonic mean of old and new. Absent classes are skipped in these means (the reference crashed
on them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from css.metrics import harmonic_mean

# The figures of one step (results.json's step summaries, the log, css.evaluate's table).
STEP_METRICS = ("bg", "old", "new", "all", "hiou", "oa")
# The final figures of a run; OPTIONAL_METRICS: the overall accuracy, in results.json and in the
# tables when a run has it.
METRICS = ("bg", "old", "new", "all", "avg", "hiou")
OPTIONAL_METRICS = ("oa",)


def nan_if_none(value: Any) -> float:
    """A figure read back from JSON, where nan is stored as null."""
    return math.nan if value is None else float(value)


def step_summary(cm, task) -> dict[str, Any]:
    """bg/old/new/all/hIoU and OA of a step's confusion matrix, old/new split at the step-0 classes.
    A synthetic background channel (point clouds, docs/tasks.md#channels) is not a class: it is
    left out of every mean. A domain step (docs/tasks.md#domain-steps) has no background and no
    new classes: only ``all`` (the mean IoU over every class) and ``oa`` apply, and ``adds`` says so."""
    if task.adds == "domains":
        summary = cm.summary(0, background=True)
        summary.update(bg=math.nan, old=math.nan, new=math.nan, hiou=math.nan, adds="domains")
        return summary
    return cm.summary(task.num_classes(0), background=task.background is not None)


def class_ious(cm) -> list[float | None]:
    """The IoU of every class of a confusion matrix, None where the ground truth lacks the class."""
    return [float(v) if p else None for v, p in zip(cm.iou().tolist(), cm.present().tolist())]


def final_summary(
    iou_per_step: Sequence[Sequence[float | None]], mean_iou_per_step: Sequence[float], num_base: int
) -> dict[str, float]:
    """The ``final`` block: old = base foreground classes 1..num_base-1, new = later classes.

    Only the last step's IoUs enter bg/old/new; ``avg`` averages every step's mean IoU.
    ``None`` (absent class) is skipped; a group with no value is nan.
    """
    last = list(iou_per_step[-1])
    bg = last[0] if last and last[0] is not None else math.nan
    old, new = _mean(last[1:num_base]), _mean(last[num_base:])
    return {
        "bg": float(bg),
        "old": old,
        "new": new,
        "all": float(mean_iou_per_step[-1]),
        "avg": _mean(mean_iou_per_step),
        "hiou": harmonic_mean(old, new),
    }


def _mean(values: Sequence[float | None]) -> float:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else math.nan


def step_entry(step: int, summary: Mapping[str, Any], iou: Sequence[float | None],
               num_old: int | None = None) -> dict[str, Any]:
    """One ``steps`` entry of results.json from a ``ConfusionMatrix.summary`` dict.

    ``num_old``: C_old, the channels learnt before this step (0 at step 0); ``num_base`` is the
    split of the entry's old/new figures (the summary's ``num_old``: the step-0 channels)."""
    return {
        "step": int(step),
        "num_old": int(summary["num_old"] if num_old is None else num_old),
        "num_base": int(summary["num_old"]),
        "num_classes": len(iou),
        **metric_figures(summary, iou),
    }


def metric_figures(summary: Mapping[str, Any], iou: Sequence[float | None]) -> dict[str, Any]:
    """``summary``, ``iou`` and ``mean_iou`` of one metric, from a ``ConfusionMatrix.summary`` dict:
    the figures a step entry and its ``full`` block (css.results.recording.full_block) both hold.

    One builder for both, so that the two metrics' figures keep the same keys, order and missing
    values (nan), which results.csv and results_full.csv are written from alike."""
    return {
        "summary": {k: summary.get(k, math.nan) for k in STEP_METRICS},
        "iou": list(iou),
        "mean_iou": summary["all"],
    }

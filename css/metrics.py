"""Confusion matrix and the segmentation metrics derived from it (docs/protocol-2d.md#metrics,
docs/pointcloud.md#evaluation).

One ``ConfusionMatrix`` is accumulated over every element (pixel or point) of a test set and
summed across processes; all metrics are computed from it at the end, never averaged per batch.

Conventions (docs/protocol-2d.md#metrics, reproduced on purpose):

- rows are ground truth, columns are predictions; only elements with ``0 <= target < C`` (and
  ``target != ignore_index``) are counted, so 255 never enters the matrix;
- ``IoU_c = TP / (GT_c + Pred_c - TP + 1e-6)``;
- the mean IoU averages the classes that have ground truth (``GT_c > 0``), background included;
  a class that is only predicted, never present, is left out (docs/protocol-2d.md#metrics).

Incremental summaries (``summary``): ``bg`` is the IoU of class 0, ``old`` the mean over the
present classes ``1..num_old-1``, ``new`` over the present classes ``num_old..C-1``, ``all`` the
mean IoU, and ``hiou`` the harmonic mean of old and new. A group without any present class is
``nan`` (never silently 0), and so is everything derived from it.

Point clouds (docs/pointcloud.md#evaluation): the same matrix is used with one row per class
position. With a synthetic background channel that has no ground truth at the last step (S3DIS),
``bg`` is ``nan`` and background drops out of ``all`` by the present-class rule. ScanNet's
unannotated points are labelled 255 (ignored) under ``protocol: fixed``; the 3DPC-CISS paper counted
them as false positives, which ``protocol: reference`` reproduces through the label map (they are
background in the test sets), not in this matrix (docs/pointcloud-datasets.md#unannotated).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from css.distributed import process_group_up

EPS = 1e-6  # docs/protocol-2d.md#metrics


class ConfusionMatrix:
    """A (C, C) int64 confusion matrix, rows = ground truth, columns = prediction."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        # int64 keeps counts exact however many elements are accumulated; metrics use float64.
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ accumulation
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count every element whose target is a valid class: ``matrix[target, pred] += 1``.

        ``pred`` holds class indices (e.g. ``logits.argmax(1)``) and has the same shape as
        ``target``; any shape works (images (B, H, W), points (B, N)).
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        if pred.is_floating_point() or pred.is_complex() or pred.dtype == torch.bool:
            raise ValueError(f"pred must hold integer class indices, got dtype {pred.dtype}")
        c = self.num_classes
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)
        target = target.reshape(-1).to(self.matrix.device, torch.int64)
        # docs/protocol-2d.md#metrics: bincount(n*gt + pred) over elements with 0 <= gt < n (excludes 255).
        valid = (target >= 0) & (target < c) & (target != self.ignore_index)
        pred, target = pred[valid], target[valid]
        if pred.numel() == 0:
            return
        if bool(((pred < 0) | (pred >= c)).any()):
            bad = pred[(pred < 0) | (pred >= c)][0].item()
            raise ValueError(f"prediction {bad} is outside the class range [0, {c - 1}]")
        counts = torch.bincount(c * target + pred, minlength=c * c)
        self.matrix += counts.reshape(c, c)

    def reset(self) -> None:
        """Set every count back to zero."""
        self.matrix.zero_()

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix of the same size into this one (in place) and return self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    __iadd__ = merge

    def all_reduce(self) -> None:
        """Sum the matrix over all processes of the default group; no-op without torch.distributed.

        Every rank ends with the same summed matrix (the reference reduces to rank 0 only,
        docs/protocol-2d.md#metrics; an all-reduce lets any rank report). The tensor stays on the
        matrix's device, so NCCL needs a CUDA matrix and gloo a CPU one.
        """
        import torch.distributed as dist

        if process_group_up():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def state_dict(self) -> dict[str, Any]:
        """Picklable state (matrix on the CPU)."""
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "matrix": self.matrix.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` (sizes must agree)."""
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(f"state has {state['num_classes']} classes, this matrix has {self.num_classes}")
        self.ignore_index = int(state["ignore_index"])
        self.matrix.copy_(state["matrix"].to(self.matrix.device, torch.int64))

    # ------------------------------------------------------------------ metrics
    def _parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(TP, GT count, prediction count) per class, float64."""
        m = self.matrix.to(torch.float64)
        return torch.diagonal(m), m.sum(dim=1), m.sum(dim=0)

    def iou(self) -> torch.Tensor:
        """Per-class IoU, ``TP / (GT + Pred - TP + EPS)``; absent classes give 0
        (docs/protocol-2d.md#metrics)."""
        tp, gt, pr = self._parts()
        return tp / (gt + pr - tp + EPS)

    def present(self) -> torch.Tensor:
        """Boolean mask of the classes that have ground truth (GT_c > 0)."""
        return self.matrix.sum(dim=1) > 0

    def mean_iou(self) -> float:
        """Mean IoU over the classes present in the ground truth, background included
        (docs/protocol-2d.md#metrics)."""
        return _masked_mean(self.iou(), self.present())

    def pixel_accuracy(self) -> float:
        """Overall accuracy: correctly classified counted elements / counted elements (nan if none)."""
        tp, gt, _ = self._parts()
        total = gt.sum().item()
        return tp.sum().item() / total if total > 0 else math.nan

    def mean_accuracy(self) -> float:
        """Mean over GT-present classes of TP / (GT + EPS) (docs/protocol-2d.md#metrics)."""
        tp, gt, _ = self._parts()
        return _masked_mean(tp / (gt + EPS), self.present())

    def summary(self, num_old: int, background: bool = True) -> dict[str, Any]:
        """bg / old / new / all / hIoU / OA for a step with ``num_old`` classes learnt before it.

        ``num_old`` counts background, like ``Task.num_old_classes``. At step 0 pass either 0 or
        ``num_classes``: every class is then a base ("old") class and ``new`` is nan.
        ``background=False``: channel 0 is a synthetic background channel (point clouds), not a
        class; it is left out of ``all`` (old and new never include channel 0) and ``bg`` is nan at
        every step (docs/protocol.md#metrics: one rule, "-" in logs, tables and reports).
        ``per_class`` lists the IoU of every class, ``None`` where the class has no ground truth.
        ``oa`` is the overall accuracy over every counted element.
        """
        c = self.num_classes
        if not 0 <= num_old <= c:
            raise ValueError(f"num_old must be in [0, {c}], got {num_old}")
        split = c if num_old == 0 else num_old
        iou, present = self.iou(), self.present()
        idx = torch.arange(c, device=iou.device)
        old = _masked_mean(iou, present & (idx >= 1) & (idx < split))
        new = _masked_mean(iou, present & (idx >= split))
        return {
            "bg": iou[0].item() if background and bool(present[0]) else math.nan,
            "old": old,
            "new": new,
            "all": self.mean_iou() if background else _masked_mean(iou, present & (idx >= 1)),
            "hiou": harmonic_mean(old, new),
            "oa": self.pixel_accuracy(),
            "num_old": int(num_old),
            "num_classes": c,
            "per_class": [v if p else None for v, p in zip(iou.tolist(), present.tolist())],
        }


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``values[mask]``; nan when the mask selects nothing."""
    return values[mask].mean().item() if bool(mask.any()) else math.nan


def harmonic_mean(old: float, new: float) -> float:
    """hIoU = 2·old·new / (old + new); nan if either is nan, 0 if both are 0."""
    if math.isnan(old) or math.isnan(new):
        return math.nan
    if old + new == 0:
        return 0.0
    return 2.0 * old * new / (old + new)

"""Import the released 3DPC-CISS S3DIS weights into a css DGCNN (docs/pointcloud-model.md#weights).

3DPC-CISS saves two files per model, each ``torch.save({"params": state_dict})``:

- the backbone: 61 entries, ``encoder.edge_convs.{0,1,2}.layer.{0,1,3,4}.*``,
  ``encoder.conv.layer.{0,1,3,4}.*`` and ``segmentor.{0,1,3,4}.*`` (conv weights, and the batch
  norms' weight, bias, running_mean, running_var, num_batches_tracked). Our module names are the
  same (css.pointcloud.models), so these keys load as they are. Its batch norm is torch's, whose
  scale is ``weight`` as in css.nn.BatchNormAct: nothing is converted.
- the classifier: ``{"classifer_weights": (C, 128, 1)}`` (spelled so), a bias-free 1x1 conv.
  Its rows go onto the model's concatenated heads (channel c = row c of cat(cls[0], cls[1], ...)):
  * C == model.num_classes: the file has a background row 0 (the base-step model); row-for-row.
  * C == model.num_classes - 1: the file has no background row (the incremental "Ours"/LwF
    model, which drops it); rows 0..C-1 go to channels 1..C and channel 0's weight row is set to
    zero, i.e. a constant background logit of 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from css.errors import CheckpointError

__all__ = ["PointCloudLoadReport", "load_3dpc_ciss_weights", "CLASSIFIER_KEY", "BACKBONE_PREFIXES"]

logger = logging.getLogger(__name__)

CLASSIFIER_KEY = "classifer_weights"  # sic, as in the released files
BACKBONE_PREFIXES = ("encoder.", "segmentor.")
_SHOWN = 10


@dataclass
class PointCloudLoadReport:
    """Outcome of :func:`load_3dpc_ciss_weights`; key names are the model's."""

    backbone_file: str
    classifier_file: str | None
    loaded: int = 0
    """Backbone tensors loaded."""
    missing: list[str] = field(default_factory=list)
    """Backbone keys of the model the file did not provide (only with ``strict=False``)."""
    unexpected: list[str] = field(default_factory=list)
    """Keys of the files the model has no place for (only with ``strict=False``; ignored)."""
    classifier_rows: int = 0
    """Rows read from the classifier file (0 when no classifier file was given)."""
    background: str = "untouched"
    """"loaded" (the file had a background row), "zeroed" (it had none: channel 0's row set to
    zero) or "untouched" (no classifier file)."""
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{self.loaded} backbone tensors"]
        if self.classifier_file is not None:
            parts.append(f"{self.classifier_rows} classifier rows, background {self.background}")
        if self.missing:
            parts.append(f"missing {_shorten(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected {_shorten(self.unexpected)}")
        return "; ".join(parts + self.notes)


def load_3dpc_ciss_weights(
    model: nn.Module,
    backbone_path: str | os.PathLike[str],
    classifier_path: str | os.PathLike[str] | None = None,
    *,
    strict: bool = True,
) -> PointCloudLoadReport:
    """Load a 3DPC-CISS backbone file and (optionally) its classifier file into ``model`` (DGCNNSeg).

    With ``strict`` (default) a backbone key missing from the file or a file key the model lacks
    is a CheckpointError; without, they are listed in the report and skipped. Shape mismatches,
    unreadable files, a file without the expected layout and a classifier whose row count fits
    neither layout (module docstring) are always CheckpointErrors naming the file. Nothing is
    written into the model unless both files are accepted.
    """
    backbone_name = os.fspath(backbone_path)
    state = _read_params(backbone_name)
    model_state = {k: v for k, v in model.state_dict().items() if k.startswith(BACKBONE_PREFIXES)}
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{backbone_name} is not a 3DPC-CISS DGCNN backbone for this model: missing keys "
            f"{_shorten(missing)}, unexpected keys {_shorten(unexpected)}. Expected the 61 keys "
            "encoder.edge_convs.{0,1,2}.layer.{0,1,3,4}.*, encoder.conv.layer.{0,1,3,4}.*, "
            "segmentor.{0,1,3,4}.* (pass strict=False to load the matching ones)."
        )
    bad = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in model_state.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise CheckpointError(
            f"{backbone_name}: tensor shapes do not fit the model ({_shorten(bad)}); the released "
            "backbone needs model in_channels 9 (first EdgeConv weight (64, 18, 1, 1))."
        )
    report = PointCloudLoadReport(backbone_name, None, missing=missing, unexpected=unexpected)

    classifier = None
    if classifier_path is not None:
        classifier_name = os.fspath(classifier_path)
        report.classifier_file = classifier_name
        classifier = _classifier_rows(_read_params(classifier_name), classifier_name, model, report, strict)

    # Both files accepted: write.
    model.load_state_dict({k: v for k, v in state.items() if k in model_state}, strict=False)
    report.loaded = sum(1 for k in state if k in model_state)
    if classifier is not None:
        _write_classifier(model, classifier, with_background=report.background == "loaded")
    logger.info("imported 3DPC-CISS weights: %s", report)
    return report


def _read_params(path: str) -> dict[str, Tensor]:
    """The state dict of a 3DPC-CISS file ({"params": state_dict}; a bare state dict is accepted)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        raise CheckpointError(
            f"cannot read {path!r} as a torch checkpoint ({type(exc).__name__}: {exc}); a 3DPC-CISS "
            "file is written by torch.save({'params': state_dict})"
        ) from exc
    if isinstance(obj, Mapping) and "params" in obj:
        obj = obj["params"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path!r} does not hold a 3DPC-CISS state dict: expected {{'params': {{name: tensor}}}}, "
            f"got {_describe(obj)}"
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _classifier_rows(
    state: dict[str, Tensor], name: str, model: nn.Module, report: PointCloudLoadReport, strict: bool
) -> Tensor:
    """The (C, 128) classifier rows of a file, checked against the model; fills the report."""
    if CLASSIFIER_KEY not in state:
        raise CheckpointError(
            f"{name} is not a 3DPC-CISS classifier: it has no {CLASSIFIER_KEY!r} entry "
            f"(keys {_shorten(list(state))})"
        )
    extra = [k for k in state if k != CLASSIFIER_KEY]
    if extra:
        if strict:
            raise CheckpointError(f"{name}: unexpected keys {_shorten(extra)} besides {CLASSIFIER_KEY!r}")
        report.unexpected.extend(extra)
    weight = state[CLASSIFIER_KEY]
    in_channels = model.cls[0].weight.shape[1]
    if weight.dim() == 3 and weight.shape[2] == 1:
        weight = weight[:, :, 0]
    if weight.dim() != 2 or weight.shape[1] != in_channels:
        raise CheckpointError(
            f"{name}: {CLASSIFIER_KEY} has shape {tuple(state[CLASSIFIER_KEY].shape)}, expected "
            f"(C, {in_channels}, 1)"
        )
    rows, channels = weight.shape[0], model.num_classes
    if rows == channels:
        report.background = "loaded"
        report.notes.append("classifier row 0 loaded as the background channel")
    elif rows == channels - 1:
        report.background = "zeroed"
        report.notes.append(
            f"classifier has no background row: rows 0..{rows - 1} loaded into channels 1..{rows}, "
            "background channel 0 set to zero"
        )
    else:
        raise CheckpointError(
            f"{name}: the classifier has {rows} rows but the model has {channels} channels "
            f"(classes per step {model.classes_per_step}); it fits a model with {rows} channels "
            f"(background row included) or {rows + 1} (no background row in the file)"
        )
    report.classifier_rows = rows
    return weight


@torch.no_grad()
def _write_classifier(model: nn.Module, weight: Tensor, *, with_background: bool) -> None:
    """Copy rows onto the concatenated heads: channel c + offset <- row c (offset 1 without bg)."""
    offset = 0 if with_background else 1
    start = 0
    for head in model.cls:
        n = head.out_channels
        for local in range(n):
            row = start + local - offset
            if row < 0:
                head.weight[local].zero_()
            else:
                head.weight[local].copy_(weight[row].view_as(head.weight[local]))
        start += n


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"a dict with keys {_shorten([str(k) for k in obj])}"
    return type(obj).__name__


def _shorten(items: list[str]) -> str:
    if len(items) <= _SHOWN:
        return str(items)
    return f"{items[:_SHOWN]} and {len(items) - _SHOWN} more"

"""The per-step objective: a resolved method instantiated for one step.

An ``Objective`` knows the old and new class counts and computes the loss of one batch from the new
and old model outputs (docs/protocol-2d.md#loss-composition), modality-agnostic (logits (B, C, *S)).
A modality's own method (3DPC-CISS, LwF*) replaces the whole incremental loss with the ``StepLoss``
its ``MethodExtension`` returns; 3DPC-CISS also reads the point coordinates of the batch.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from css import losses as L
from css.config.method import MethodConfig
from css.config.protocols import quirks
from css.distributed import process_group_up
from css.modality.registry import method_extensions


def downsample_labels(labels: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Nearest sampling of a label map to ``size``: output element i takes input floor(i * in / out).

    For 512 crops at output stride 16 this picks label pixel (16i, 16j), exactly as the reference's
    ``F.interpolate(scale_factor=1/16)`` under PyTorch 1.10 (docs/protocol-2d-losses.md#lgkd).
    """
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    out = labels
    for dim, n_out in enumerate(size, start=1):
        n_in = labels.shape[dim]
        idx = torch.div(torch.arange(n_out, device=labels.device) * n_in, n_out, rounding_mode="floor")
        out = out.index_select(dim, idx)
    return out


def upsample_logits(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(logits.shape[2:]) == tuple(size):
        return logits
    mode = "bilinear" if len(size) == 2 else "linear"
    return F.interpolate(logits, size=size, mode=mode, align_corners=False)


class Objective:
    """The loss of one step (docs/protocol-2d.md#loss-composition).

    ``__call__(new, old, labels)`` takes the new model's ``SegOutput``, the old model's (None at
    step 0) and the labels of the step, and returns ``(total, terms)``; ``terms`` holds each
    detached component for logging. Regularisers (EWC/RW/PI) need the gradients of that total, so
    the engine calls ``after_backward(model)`` and then backpropagates ``regularizer_loss(model)``
    (docs/protocol-2d.md#loss-composition, step 6).
    """

    def __init__(self, method: MethodConfig, *, step: int, num_old: int, num_current: int,
                 protocol: str = "reference", ignore_index: int = 255, num_steps: int | None = None,
                 num_new: int | None = None):
        self.m = method
        self.step = step
        self.num_old = num_old
        self.num_current = num_current
        # n_t: the step's own head; a domain step counts every class (docs/tasks.md#domain-steps)
        self.num_new = num_current - num_old if num_new is None else num_new
        self.protocol = protocol
        self.ignore_index = ignore_index
        self.incremental = step > 0 and num_old > 0
        m = method
        self.use_kd = self.incremental and m.kd != "none" and (m.loss_kd or 0) > 0
        self.use_de = self.incremental and (m.loss_de or 0) > 0
        self.use_icarl = self.incremental and (m.icarl_importance or 0) > 0
        self.use_pod = self.incremental and m.pod == "local"
        self.use_pseudo = self.incremental and m.pseudo == "entropy"
        # A modality's own method replaces the whole incremental loss (3DPC-CISS,
        # docs/pointcloud-ciss.md#wiring; LwF*, docs/pointcloud-baselines.md#lwf-3dpc); ``num_steps``
        # tells an intermediate step of a multi-step task from the last one.
        self.step_loss = None
        for ext in method_extensions() if self.incremental else ():
            self.step_loss = ext.step_loss(m, step=step, num_steps=num_steps, num_old=num_old, protocol=protocol,
                                           ignore_index=ignore_index)
            if self.step_loss is not None:
                break
        self.thresholds: torch.Tensor | None = None
        self.regularizer = None

    # --------------------------------------------------------------------------------------------
    @property
    def needs_old_model(self) -> bool:
        return self.use_kd or self.use_de or self.use_icarl or self.use_pod or self.use_pseudo \
            or self.step_loss is not None

    @property
    def needs_thresholds(self) -> bool:
        return self.use_pseudo and self.thresholds is None

    def compute_thresholds(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Entropy thresholds from one pass over (old full-resolution logits, labels) batches
        (docs/protocol-2d-losses.md#thresholds). Under ``protocol: fixed`` the histograms are summed over
        processes first."""
        # Fixed protocol: bins over the range v can take, so the median is resolved to 1/bins of
        # that range; the reference bins [0, 1], which puts every count in its first few bins.
        upper = 1.0
        if self.protocol == "fixed":
            upper = L.entropy_upper_bound(self.num_old, self.num_current)
        hist = None
        for old_logits, labels in batches:
            h = L.entropy_histogram(old_logits.float(), labels, num_current=self.num_current,
                                    bins=self.m.pseudo_bins, upper=upper)
            hist = h if hist is None else hist + h
        if hist is None:
            hist = torch.zeros(self.num_current, self.m.pseudo_bins, dtype=torch.float64)
        if self.protocol == "fixed":
            hist = L.all_reduce_histogram(hist)
        self.thresholds = L.thresholds_from_histogram(hist, protocol=quirks(self.protocol),
                                                      min_threshold=self.m.pseudo_threshold, upper=upper)
        return self.thresholds

    def attach_regularizer(self, model: torch.nn.Module, old_state: dict | None) -> None:
        if self.m.regularizer in (None, "none") or (self.m.reg_importance or 0) <= 0:
            return
        # docs/pointcloud-baselines.md#ewc: per-tensor normalisation and the classifier left out.
        normalize = self.m.reg_normalize and (L.PER_TENSOR if self.m.reg_per_tensor else True)
        kwargs: dict[str, Any] = {"old_state": old_state, "normalize": normalize}
        if self.m.reg_skip_classifier:
            kwargs["param_filter"] = _not_classifier
        if self.m.regularizer in ("ewc", "rw"):
            kwargs.update(alpha=self.m.reg_alpha)
        if self.m.regularizer == "rw":
            kwargs.update(iterations=self.m.reg_iterations)
        self.regularizer = L.build_regularizer(self.m.regularizer, model, **kwargs)

    def after_backward(self, model: torch.nn.Module) -> None:
        if self.regularizer is not None:
            self.regularizer.update(model)

    def regularizer_loss(self, model: torch.nn.Module) -> torch.Tensor | None:
        if self.regularizer is None or self.step == 0:
            return None
        return self.m.reg_importance * self.regularizer.penalty(model)

    def _global_mean_correction(self, labels: torch.Tensor) -> torch.Tensor | float:
        """Make a mean over non-ignored elements a mean over the GLOBAL batch under DDP.

        Each process divides by its own count of valid elements, and DDP averages the gradients,
        so the reference's LGKD (per-GPU mean) weighs elements differently depending on how the
        batch is split. Under ``protocol: fixed`` the local mean is rescaled by
        n_local * W / n_global, which makes the averaged gradient that of the global mean
        (docs/contracts.md#global-batch: results must not depend on the number of processes).
        """
        if self.protocol != "fixed" or not process_group_up():
            return 1.0
        world = dist.get_world_size()
        if world == 1:
            return 1.0
        n_local = (labels != self.ignore_index).sum().to(torch.float64)
        n_global = n_local.clone()
        dist.all_reduce(n_global)
        if float(n_global) == 0:
            return 1.0
        return (n_local * world / n_global).float()

    # --------------------------------------------------------------------------------------------
    def __call__(self, new, old, labels: torch.Tensor,
                 inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``inputs``: the batch the models saw (3DPC-CISS reads the point coordinates from it)."""
        m = self.m
        logits = new.logits
        original = labels
        terms: dict[str, torch.Tensor] = {}
        if self.incremental and self.needs_old_model and old is None:
            raise RuntimeError("the objective of an incremental step needs the old model's outputs")
        if self.step_loss is not None:
            total, terms = self.step_loss(new, old, labels, inputs, correction=self._global_mean_correction)
            return total, {k: v.detach() for k, v in terms.items()}

        # Pseudo-label the background from the old model, per-image adaptive factor
        # (docs/protocol-2d-losses.md#relabelling).
        factor = None
        if self.use_pseudo:
            if self.thresholds is None:
                raise RuntimeError("compute_thresholds() must run before training with pseudo-labels")
            old_full = upsample_logits(old.logits_small, tuple(labels.shape[1:])) \
                if old.logits.shape[2:] != labels.shape[1:] else old.logits
            # a batch of samples concatenated along its elements (whole scenes) says which sample each
            # element is from: the factor is then per sample, as per image (docs/pointcloud-scenes.md#methods)
            sample_index = getattr(inputs, "sample_index", None)
            labels, f = L.pseudo_label(labels, old_full.float(), self.thresholds.to(labels.device),
                                       num_old=self.num_old, num_current=self.num_current,
                                       ignore_index=self.ignore_index,
                                       segments=sample_index().reshape(labels.shape) if sample_index else None)
            if m.adaptive_factor:
                factor = f

        # Main criterion, mean over all elements, ignored ones included
        # (docs/protocol-2d.md#loss-composition, docs/protocol-2d-losses.md#reductions).
        if m.classification == "bce":
            cls_loss = L.bce_with_ignore(logits, labels, ignore_index=self.ignore_index)
        elif m.classification == "unce" and self.incremental:
            cls_loss = L.unbiased_ce(logits, labels, num_old=self.num_old, ignore_index=self.ignore_index)
        elif m.separate_classifier and self.incremental:  # docs/pointcloud-baselines.md#separate-classifier
            cls_loss = L.separate_classifier_ce(logits, labels, num_old=self.num_old, ignore_index=self.ignore_index)
        else:
            cls_loss = L.cross_entropy(logits, labels, ignore_index=self.ignore_index, element_weight=factor)
        terms["ce"] = cls_loss
        total = cls_loss

        if self.use_icarl:  # docs/protocol-2d-losses.md#icarl
            t = m.icarl_importance * self.num_old * L.icarl_distillation(logits, old.logits)
            terms["icarl"] = t
            total = total + t
        if self.use_de:  # docs/protocol-2d-losses.md#ilt
            t = m.loss_de * L.feature_mse(new.features["body"], old.features["body"])
            terms["de"] = t
            total = total + t
        if self.use_kd:  # docs/protocol-2d.md#loss-composition, step 5
            if m.kd == "lgkd":
                if m.kd_resolution == "small":
                    # Stride-16 logits, ORIGINAL labels sampled by nearest neighbour
                    # (docs/protocol-2d-losses.md#lgkd).
                    kd_labels = downsample_labels(original, tuple(new.logits_small.shape[2:]))
                    kd_new, kd_old = new.logits_small, old.logits_small
                else:
                    kd_labels, kd_new, kd_old = original, logits, old.logits
                t = L.lgkd(kd_new, kd_old, kd_labels, prev_weight=m.prev_kd, novel_weight=m.novel_kd,
                           alpha=m.alpha, ignore_index=self.ignore_index)
                t = t * self._global_mean_correction(kd_labels)
            elif m.kd == "unkd":
                t = L.unbiased_kd(logits, old.logits, alpha=m.alpha)
            else:
                t = L.kd(logits, old.logits, alpha=m.alpha)
            t = m.loss_kd * t
            terms["kd"] = t
            total = total + t
        if self.use_pod:  # docs/protocol-2d-losses.md#local-pod
            old_maps = list(old.features["attentions"])
            new_maps = list(new.features["attentions"])
            factors = [m.pod_factor] * len(old_maps)
            if m.pod_logits:
                old_maps.append(old.logits_small)
                new_maps.append(new.logits_small)
                factors.append(m.pod_logits_factor)
            t = L.local_pod(old_maps, new_maps, factors=factors, num_current=self.num_current,
                            num_new=self.num_new, schedule=m.pod_schedule, scales=tuple(m.pod_scales))
            terms["pod"] = t
            total = total + t
        terms = {k: v.detach() for k, v in terms.items()}
        return total, terms

    def describe(self) -> str:
        m = self.m
        if self.step_loss is not None:
            return self.step_loss.describe()
        parts = [m.classification.upper() + (" x adaptive factor" if self.use_pseudo and m.adaptive_factor else "")]
        if self.use_pseudo:
            parts[0] += " on entropy pseudo-labels"
        if self.use_kd:
            extra = f" (prev {m.prev_kd:g}, novel {m.novel_kd:g})" if m.kd == "lgkd" else ""
            parts.append(f"{m.loss_kd:g} x {m.kd.upper()}{extra}")
        if self.use_de:
            parts.append(f"{m.loss_de:g} x feature MSE")
        if self.use_icarl:
            parts.append(f"{m.icarl_importance:g} x C_old x iCaRL")
        if self.use_pod:
            parts.append(f"local POD ({m.pod_factor:g}" + (f", logits {m.pod_logits_factor:g})" if m.pod_logits else ")"))
        if self.regularizer is not None or (self.step > 0 and m.regularizer not in (None, "none")):
            notes = [n for n, on in (("per-tensor normalised", m.reg_per_tensor),
                                      ("classifier excluded", m.reg_skip_classifier)) if on]
            parts.append(f"{m.reg_importance:g} x {m.regularizer.upper()}" + (f" ({', '.join(notes)})" if notes else ""))
        frozen = "; only the new head learns (body and old heads frozen, eval mode)" \
            if m.freeze_body and self.incremental else ""
        if m.separate_classifier and self.incremental:
            parts[0] += " over [background, novel] (old class rows kept)"
        return " + ".join(parts) + frozen


def _not_classifier(name: str) -> bool:
    """Parameter filter of ``method.reg_skip_classifier``: everything but the heads ``cls.{i}``."""
    return not name.startswith("cls.")

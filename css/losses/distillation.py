"""Output and feature distillation losses (docs/protocol-2d-losses.md#losses).

Logits are (B, C, *S) for any spatial shape S ((H, W) for images, (N,) for point clouds).
``new_logits`` come from the model being trained (C_cur channels), ``old_logits`` from the frozen
previous model (C_old <= C_cur channels); the first C_old channels of both refer to the same
classes, channel 0 being background. Inputs may be float32, bfloat16 or float16; everything is
computed in float32 and returned as a float32 scalar. The losses are differentiable with respect
to the new logits; the old logits are targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from css.losses.classification import check_logits_labels, upcast

__all__ = ["kd", "soft_kd", "unbiased_kd", "lgkd", "icarl_distillation", "feature_mse"]


def _check_pair(new_logits: Tensor, old_logits: Tensor) -> None:
    """Raise ValueError unless old and new logits share B and S and C_old <= C_cur."""
    if new_logits.dim() < 2 or old_logits.dim() != new_logits.dim():
        raise ValueError(
            f"new and old logits must both be (B, C, *S), got {tuple(new_logits.shape)} "
            f"and {tuple(old_logits.shape)}"
        )
    same_batch = new_logits.shape[0] == old_logits.shape[0]
    same_elements = same_batch and new_logits.shape[2:] == old_logits.shape[2:]
    if not same_elements or old_logits.shape[1] > new_logits.shape[1]:
        raise ValueError(
            "old logits (B, C_old, *S) must match new logits (B, C_cur, *S) in B and S with "
            f"C_old <= C_cur, got old {tuple(old_logits.shape)} and new {tuple(new_logits.shape)}"
        )


def _old_probabilities(old_logits: Tensor, alpha: float) -> Tensor:
    """softmax(alpha * old_logits) over channels, in at least float32 (docs/protocol-2d-losses.md#kd, #lgkd)."""
    dtype = torch.promote_types(old_logits.dtype, torch.float32)
    # alpha is 1 in every preset; skipping the product saves a full pass over the old logits.
    return F.softmax(old_logits if alpha == 1 else alpha * upcast(old_logits), dim=1, dtype=dtype)


def kd(new_logits: Tensor, old_logits: Tensor, *, alpha: float = 1.0) -> Tensor:
    """LwF knowledge distillation (docs/protocol-2d-losses.md#kd).

    L = -mean_elements[(1/C_old) sum_c q_c log p_c] with q = softmax(alpha * old) and
    log p = log_softmax of the new model's first C_old channels only. No ignore mask: every
    element, ignored ones included, contributes (as in the reference).
    """
    _check_pair(new_logits, old_logits)
    num_old = old_logits.shape[1]
    log_p = F.log_softmax(upcast(new_logits[:, :num_old]), dim=1)
    q = _old_probabilities(old_logits, alpha)
    return -(q * log_p).sum(dim=1).mean() / num_old


def soft_kd(new_logits: Tensor, old_logits: Tensor, *, temperature: float, first: int = 1) -> Tensor:
    """Temperature distillation of LwF as the 3DPC-CISS paper ran it (docs/pointcloud-baselines.md#lwf-3dpc).

    Over the old channels c = ``first`` .. C_old-1 (``first=1``: background left out), with
    q = softmax(old / T) and log p = log_softmax(new / T), both over those channels only:

        L = T^2 * mean_elements[-sum_c q_c log p_c].

    The sum runs over the channels (not their mean, unlike ``kd``), the mean over every element
    (no ignore mask), and T^2 keeps the gradient's scale independent of T (Hinton et al.).
    """
    _check_pair(new_logits, old_logits)
    num_old = old_logits.shape[1]
    if not 0 <= first < num_old:
        raise ValueError(f"first must be in [0, C_old={num_old}), got {first}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    t = float(temperature)
    log_p = F.log_softmax(upcast(new_logits[:, first:num_old]) / t, dim=1)
    q = F.softmax(upcast(old_logits.detach()[:, first:num_old]) / t, dim=1)
    return -(q * log_p).sum(dim=1).mean() * (t * t)


def unbiased_kd(new_logits: Tensor, old_logits: Tensor, *, alpha: float = 1.0) -> Tensor:
    """MiB's unbiased knowledge distillation (docs/protocol-2d-losses.md#unkd).

    The new model's background absorbs the new classes:
    log p_bg = logsumexp(z[:, {0} u [C_old, C_cur)]) - logsumexp(z), log p_c = z_c - logsumexp(z)
    for 1 <= c < C_old, and L = -mean_elements[(1/C_old) sum_c q_c log p_c] with
    q = softmax(alpha * old). No ignore mask.

    Unlike the reference, which slices ``1:-new_cl`` and crashes when no class is added
    (docs/protocol-2d-losses.md#unkd), C_cur == C_old is supported: log p_bg is then z_0 - logsumexp(z).
    """
    _check_pair(new_logits, old_logits)
    num_old = old_logits.shape[1]
    z = upcast(new_logits)
    lse = torch.logsumexp(z, dim=1)
    bg = z[:, 0]
    if z.shape[1] > num_old:
        bg = torch.logaddexp(bg, torch.logsumexp(z[:, num_old:], dim=1))
    q = _old_probabilities(old_logits, alpha)
    weighted = q[:, 0] * (bg - lse) + (q[:, 1:] * (z[:, 1:num_old] - lse.unsqueeze(1))).sum(dim=1)
    return -weighted.mean() / num_old


class _LabelGuidedKD(torch.autograd.Function):
    """LGKD with a hand-written gradient (docs/protocol-2d-losses.md#lgkd), see ``lgkd``.

    Per element the loss is -w * sum_c t_c log p_c with a target t that sums to 1 (q_1..q_{C_old-1}
    on their channels, q_0 on channel g), so d/dz = -w * (t - p). Writing that directly needs
    one pass over the logits instead of autograd's chain through log_softmax, slicing and gather.
    """

    @staticmethod
    def forward(ctx, new_logits, q, bg_target, weight):  # type: ignore[override]
        num_old = q.shape[1]
        # dtype= casts half inputs inside the kernel instead of copying them first.
        log_p = F.log_softmax(new_logits, dim=1, dtype=torch.promote_types(new_logits.dtype, torch.float32))
        log_p_bg_target = log_p.gather(1, bg_target)
        old_foreground = torch.linalg.vecdot(q[:, 1:], log_p[:, 1:num_old], dim=1)
        term = old_foreground + q[:, 0] * log_p_bg_target.squeeze(1)
        ctx.save_for_backward(log_p, q, bg_target, weight)
        ctx.input_dtype = new_logits.dtype
        return -(weight.squeeze(1) * term).sum()

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        log_p, q, bg_target, weight = ctx.saved_tensors
        num_old = q.shape[1]
        scale = weight * grad_output  # (B, 1, *S)
        grad = log_p.exp().mul_(scale)  # p * w
        grad[:, 1:num_old].addcmul_(q[:, 1:], scale, value=-1.0)  # - w * q_c, 1 <= c < C_old
        grad.scatter_add_(1, bg_target, -(q[:, :1] * scale))  # - w * q_0 at channel g
        return grad.to(ctx.input_dtype), None, None, None


def lgkd(
    new_logits: Tensor,
    old_logits: Tensor,
    labels: Tensor,
    *,
    prev_weight: float,
    novel_weight: float,
    alpha: float = 1.0,
    ignore_index: int = 255,
) -> Tensor:
    """Label-guided knowledge distillation (docs/protocol-2d-losses.md#lgkd).

    Labels below C_old collapse to background (step 1). With q = softmax(alpha * old) and
    log p = log_softmax(new) over all C_cur channels, every non-ignored element contributes

        l = sum_{c=1}^{C_old-1} q_c log p_c + q_0 log p_g,

    where g is the element's label if it is novel (label >= C_old: the old background
    probability moves to the ground-truth class, step 2) and 0 otherwise (step 3). The result is

        L = -(prev_weight * sum_prev l + novel_weight * sum_novel l) / (#prev + #novel),

    so the denominator counts every non-ignored element even when ``novel_weight`` is 0
    (step 5 of docs/protocol-2d-losses.md#lgkd). Where every element is ignored the reference returns NaN; this
    returns 0 (still attached to the graph of ``new_logits``). ``old_logits`` are targets: no
    gradient flows to them.

    Implementation: the elements are weighted (prev_weight, novel_weight or 0) instead of being
    selected with boolean masks, so no logits are copied and no padded target is built, and the
    gradient is written by hand (``_LabelGuidedKD``).
    """
    _check_pair(new_logits, old_logits)
    check_logits_labels(new_logits, labels, name="new_logits")
    num_old = old_logits.shape[1]
    q = _old_probabilities(old_logits.detach(), alpha)

    valid = labels != ignore_index
    novel = valid & (labels >= num_old)  # docs/protocol-2d-losses.md#lgkd steps 1 and 2
    # Where the old background probability goes: the GT class for novel elements, else bg 0.
    bg_target = torch.where(novel, labels, torch.zeros_like(labels)).unsqueeze(1)
    num_valid = valid.sum().clamp_min(1)
    dtype = torch.promote_types(new_logits.dtype, q.dtype)  # q is at least float32
    per_element = torch.where(novel, novel_weight, torch.where(valid, prev_weight, 0.0))
    weight = (per_element.to(dtype) / num_valid).unsqueeze(1)  # (B, 1, *S)
    return _LabelGuidedKD.apply(new_logits, q, bg_target, weight)


def icarl_distillation(new_logits: Tensor, old_logits: Tensor) -> Tensor:
    """iCaRL distillation: mean BCE-with-logits of new[:, :C_old] against sigmoid(old).

    The caller multiplies by ``icarl_importance * C_old`` (docs/protocol-2d-losses.md#icarl).
    """
    _check_pair(new_logits, old_logits)
    num_old = old_logits.shape[1]
    target = torch.sigmoid(upcast(old_logits))
    return F.binary_cross_entropy_with_logits(upcast(new_logits[:, :num_old]), target)


def feature_mse(new_features: Tensor, old_features: Tensor) -> Tensor:
    """Mean squared error between new and old feature maps (ILT, docs/protocol-2d-losses.md#ilt)."""
    if new_features.shape != old_features.shape:
        raise ValueError(
            f"feature maps must have the same shape, got new {tuple(new_features.shape)} "
            f"and old {tuple(old_features.shape)}"
        )
    return F.mse_loss(upcast(new_features), upcast(old_features))

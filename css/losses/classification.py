"""Per-element classification losses (docs/protocol-2d-losses.md#losses).

Every function takes logits of shape (B, C, *S) and integer labels of shape (B, *S), where S is
any number of spatial dimensions: (H, W) for images, (N,) for point clouds. Inputs may be
float32, bfloat16 or float16; the loss is computed in float32 and returned as a float32 scalar.

All reductions follow the reference training loop: the per-element loss is 0 at ignored
elements, yet ignored elements still count in the denominator of the mean
(docs/protocol-2d-losses.md#reductions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy", "labelled_cross_entropy", "unbiased_ce", "bce_with_ignore", "check_logits_labels", "upcast"]


def upcast(x: Tensor) -> Tensor:
    """``x`` in float32 if it has a lower precision (bf16/fp16); float64 stays float64 (gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def check_logits_labels(logits: Tensor, labels: Tensor, *, name: str = "logits") -> None:
    """Raise ValueError unless ``logits`` is (B, C, *S) and ``labels`` is an integer (B, *S)."""
    if logits.dim() < 2:
        raise ValueError(f"{name} must have shape (B, C, *S), got {tuple(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"labels must have shape (B, *S) = {expected} to match {name} {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (int64), got {labels.dtype}")


def _broadcast_element_weight(weight: Tensor, labels: Tensor) -> Tensor:
    """Reshape a per-sample weight (B,) to (B, 1, ..., 1) so that it broadcasts over labels."""
    if weight.dim() == 1 and labels.dim() > 1 and weight.shape[0] == labels.shape[0]:
        return weight.reshape(-1, *([1] * (labels.dim() - 1)))
    return weight


def cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = 255,
    element_weight: Tensor | None = None,
) -> Tensor:
    """Mean over ALL elements of -log softmax(logits)[label], 0 where label == ignore_index.

    ``element_weight`` multiplies the per-element loss before the mean. It must broadcast to the
    labels' shape; a per-sample weight of shape (B,), such as PLOP's adaptive factor
    (docs/protocol-2d-losses.md#relabelling), is accepted as is. Ignored elements count in the denominator
    (docs/protocol-2d-losses.md#reductions).
    """
    check_logits_labels(logits, labels)
    loss = F.cross_entropy(upcast(logits), labels, ignore_index=ignore_index, reduction="none")
    if element_weight is not None:
        loss = loss * _broadcast_element_weight(element_weight.to(loss.dtype), labels)
    return loss.mean()


def labelled_cross_entropy(logits: Tensor, labels: Tensor, *, background: bool = True,
                           ignore_index: int = 255) -> Tensor:
    """Mean cross-entropy over the labelled elements only (0 if none is labelled).

    Unlike ``cross_entropy`` the ignored elements do not count in the denominator: this is a
    cross-entropy with an ignore index and its default reduction, the one the 3DPC-CISS code uses
    (docs/pointcloud-ciss.md#loss). ``background=False`` leaves channel 0 out of the softmax (a
    classifier without a background row, channel c becoming c - 1); a label 0 is then an error.
    """
    check_logits_labels(logits, labels)
    valid = labels != ignore_index
    z = upcast(logits)
    if not background:
        if bool((labels[valid] == 0).any()):
            raise ValueError("label 0 (background) present although the background channel is left out")
        z = z[:, 1:]
        labels = torch.where(valid, labels - 1, labels)
    loss = F.cross_entropy(z, labels, ignore_index=ignore_index, reduction="sum")
    return loss / valid.sum().clamp_min(1)


def unbiased_ce(logits: Tensor, labels: Tensor, *, num_old: int, ignore_index: int = 255) -> Tensor:
    """MiB's unbiased cross-entropy (docs/protocol-2d-losses.md#unce), mean over ALL elements.

    Labels below ``num_old`` are relabelled to background 0, whose log-probability is
    logsumexp(z[:, :num_old]) - logsumexp(z): background absorbs every old class. Labels
    >= num_old use the usual z_y - logsumexp(z). Ignored elements contribute 0 but count in the
    denominator. With ``num_old == 0`` (step 0) this is plain cross-entropy (docs/protocol-2d-losses.md#unce).
    """
    check_logits_labels(logits, labels)
    if num_old == 0:
        return cross_entropy(logits, labels, ignore_index=ignore_index)
    if not 0 < num_old <= logits.shape[1]:
        raise ValueError(f"num_old must be in [0, C={logits.shape[1]}], got {num_old}")
    z = upcast(logits)
    lse = torch.logsumexp(z, dim=1)
    log_p_bg = torch.logsumexp(z[:, :num_old], dim=1) - lse
    valid = labels != ignore_index
    is_new = valid & (labels >= num_old)
    # A clamped copy of the labels (0 for ignored and old elements) keeps the gather in range.
    target = torch.where(is_new, labels, torch.zeros_like(labels))
    log_p_target = z.gather(1, target.unsqueeze(1)).squeeze(1) - lse
    log_p = torch.where(is_new, log_p_target, log_p_bg)
    return -(log_p * valid).mean()


def bce_with_ignore(logits: Tensor, labels: Tensor, *, ignore_index: int = 255) -> Tensor:
    """Sum over classes of BCE-with-logits against one-hot labels, 0 where ignored (docs/protocol-2d-losses.md#bce).

    The per-element sums are averaged over ALL elements, ignored ones included.
    """
    check_logits_labels(logits, labels)
    z = upcast(logits)
    valid = labels != ignore_index
    target = torch.where(valid, labels, torch.zeros_like(labels))
    one_hot = F.one_hot(target, num_classes=z.shape[1]).movedim(-1, 1).to(z.dtype)
    per_element = F.binary_cross_entropy_with_logits(z, one_hot, reduction="none").sum(dim=1)
    return (per_element * valid).mean()


def separate_classifier_ce(logits: torch.Tensor, labels: torch.Tensor, *, num_old: int,
                           ignore_index: int = 255) -> torch.Tensor:
    """The separate [background, novel] classifier of the 3DPC-CISS FT, F&A and EWC baselines
    (docs/pointcloud-baselines.md#separate-classifier).

    Cross-entropy over the channels [0, num_old..C) only: the old class channels 1..num_old-1 are
    not outputs of the separate classifier. Labels: 0 and the novel channels (>= num_old) or ignore."""
    valid = labels != ignore_index
    if bool(((labels > 0) & (labels < num_old) & valid).any()):
        raise ValueError(f"old-class labels (1..{num_old - 1}) cannot train a separate [background, novel] classifier")
    z = torch.cat([logits[:, :1], logits[:, num_old:]], dim=1)
    shifted = torch.where(valid & (labels >= num_old), labels - num_old + 1, labels)
    return cross_entropy(z, shifted, ignore_index=ignore_index)

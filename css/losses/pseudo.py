"""PLOP's entropy-based pseudo-labelling of the background (docs/protocol-2d-losses.md#pseudo-labels).

At step t > 0 the ground truth only holds the current classes; old classes are hidden in the
background (label 0). PLOP lets the frozen old model relabel background elements it is confident
about. Confidence is a normalised entropy ``v`` (:func:`entropy_score`); an element is accepted
when ``v`` is below a per-class threshold, the class being the old model's prediction.

The thresholds come from one pass over the training data before the first epoch:
:func:`entropy_histogram` counts the background elements per (predicted class, entropy bin), and
:func:`thresholds_from_histogram` turns each class's counts into a threshold. Under
``protocol="reference"`` that reproduces the reference's buggy "median" and its per-process
histograms; under ``protocol="fixed"`` it is the true per-class median, and the caller sums the
histograms over processes first with :func:`all_reduce_histogram`.

Every function works on any spatial shape: logits (B, C, *S), labels (B, *S).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from css.distributed import process_group_up
from css.losses.classification import check_logits_labels

__all__ = [
    "entropy_score",
    "entropy_upper_bound",
    "entropy_histogram",
    "all_reduce_histogram",
    "thresholds_from_histogram",
    "pseudo_label",
]

PROTOCOLS = ("reference", "fixed")


def entropy_score(probs: Tensor, num_current: int) -> Tensor:
    """Per-element normalised entropy ``v`` of the old model's probabilities (docs/protocol-2d-losses.md#entropy).

    ``probs`` is (B, C_old, *S). With H~(p) = -(1 / ln(C_old + 1e-8)) * mean_c p_c ln(p_c + 1e-8),
    the mean (not the sum) running over the C_old channels, the result is
    v = H~(p) / ln(num_current), shape (B, *S), float32. This is the reference's formula, so
    v lies in [0, 1 / (C_old * ln C_cur)], e.g. at most 0.0221 for VOC 15-1 step 1.
    """
    if probs.dim() < 2:
        raise ValueError(f"probs must have shape (B, C_old, *S), got {tuple(probs.shape)}")
    num_old = probs.shape[1]
    if num_current < num_old or num_current < 2:
        raise ValueError(
            f"num_current (C_cur) must be >= 2 and >= the C_old = {num_old} channels of probs, "
            f"got {num_current}"
        )
    p = probs.float()
    mean_plogp = (p * torch.log(p + 1e-8)).mean(dim=1)
    return -mean_plogp / math.log(num_old + 1e-8) / math.log(num_current)


def entropy_upper_bound(num_old: int, num_current: int) -> float:
    """The largest value :func:`entropy_score` can take: 1 / (C_old ln C_cur), reached by the
    uniform distribution (-mean_c p ln p <= ln(C_old) / C_old; the 1e-8 offsets only lower v)."""
    return 1.0 / (num_old * math.log(num_current))


def entropy_histogram(
    old_logits: Tensor, labels: Tensor, *, num_current: int, bins: int = 100, upper: float = 1.0
) -> Tensor:
    """Counts of background elements per (old prediction, entropy bin), shape (C_cur, bins).

    Only elements with label 0 count (docs/protocol-2d-losses.md#thresholds). For each one, pred = argmax of
    softmax(old_logits) and bin = min(floor(v / upper * bins), bins - 1) with v from
    :func:`entropy_score`: the bins split [0, upper]. The reference bins [0, 1] (``upper=1``),
    although v never exceeds :func:`entropy_upper_bound` (0.0221 for VOC 15-1 step 1), so all its
    counts fall in the first few bins; ``protocol: fixed`` bins [0, that bound] instead.
    ``old_logits`` must already be at label resolution. The result is float64 (exact integer
    counts up to 2**53) on the logits' device; add the histograms of several batches with ``+``.
    """
    check_logits_labels(old_logits, labels, name="old_logits")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not upper > 0:
        raise ValueError(f"upper must be positive, got {upper}")
    probs = F.softmax(old_logits.float(), dim=1)
    background = labels == 0
    pred = probs.argmax(dim=1)[background]
    v = entropy_score(probs, num_current)[background]
    # floor(v * bins) capped at the last bin, as in the reference. v >= 0 up to rounding, so the
    # lower clamp only guards against a -0.0 or a rounding residue below zero.
    scaled = v * bins if upper == 1.0 else v * (bins / upper)
    bin_index = torch.floor(scaled).long().clamp_(0, bins - 1)
    flat = torch.bincount(pred * bins + bin_index, minlength=num_current * bins)
    return flat.view(num_current, bins).double()


def all_reduce_histogram(hist: Tensor) -> Tensor:
    """Sum ``hist`` over all torch.distributed processes; identity when not distributed.

    Used under ``protocol="fixed"`` so that every process derives the same thresholds from the
    whole training set; the reference keeps per-process histograms (docs/protocol-2d-losses.md#thresholds).
    The input is not modified.
    """
    if not process_group_up():
        return hist
    total = hist.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def thresholds_from_histogram(
    hist: Tensor, *, protocol: str = "reference", min_threshold: float = 0.001, upper: float = 1.0
) -> Tensor:
    """Per-class entropy thresholds (C_cur,) from a (C_cur, bins) histogram (docs/protocol-2d-losses.md#thresholds).

    ``protocol="reference"`` reproduces the reference's "median", bugs included (see
    :func:`_reference_medians`); thresholds may be +inf (accepts every element of that class) or
    NaN (accepts none). ``protocol="fixed"`` is the true median of v per class, interpolated
    linearly inside the bin that holds it, for a histogram whose bins split [0, ``upper``]; a
    class without elements gets ``min_threshold``.
    Under both, thresholds are at least ``min_threshold`` (NaN excepted). Returned as float32 on
    the histogram's device, the dtype in which v is computed and compared.
    """
    if hist.dim() != 2 or hist.shape[1] < 1:
        raise ValueError(f"hist must have shape (C_cur, bins), got {tuple(hist.shape)}")
    if protocol == "reference":
        medians = _reference_medians(hist.double())
    elif protocol == "fixed":
        medians = _true_medians(hist.double(), min_threshold, upper)
    else:
        raise ValueError(f"unknown pseudo-labelling protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    # Python's builtin max(median, min_threshold) as the reference applies it: it returns the
    # first argument unless the second is strictly greater. Hence NaN stays NaN
    # (min_threshold > NaN is False), -inf becomes min_threshold and +inf stays +inf.
    floor = torch.full_like(medians, min_threshold)
    return torch.where(floor > medians, floor, medians).float()


def _reference_medians(hist: Tensor) -> Tensor:
    """The reference's per-class "median" (docs/protocol-2d-losses.md#thresholds), vectorised over classes.

    Per class c, with total = sum_k H[c,k] and half = total / 2, the reference scans
    k = 0..bins-1 and stops at the first k with rs <= half <= rs + H[c,k], where the running
    sum rs adds the bin *index* k (the bug), not its count. Since rs does not depend on the
    counts, rs before bin k is 0 + 1 + ... + (k - 1) = k (k - 1) / 2 and the scan vectorises.
    Without a stop, k = bins - 1 and rs = bins (bins - 1) / 2 (the last index was added too).
    The median is k / bins + (half - rs) / (bins * H[c,k]); a zero count there gives +inf,
    -inf or NaN, kept on purpose. Classes with total <= 0 are skipped and get 0.
    """
    num_classes, bins = hist.shape
    k = torch.arange(bins, dtype=hist.dtype, device=hist.device)
    rs = k * (k - 1) / 2
    total = hist.sum(dim=1)
    half = (total / 2).unsqueeze(1)
    stops = (rs <= half) & (half <= rs + hist)
    stopped = stops.any(dim=1)
    first_stop = stops.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximal index
    k_exit = torch.where(stopped, first_stop, torch.full_like(first_stop, bins - 1))
    rs_exit = torch.where(stopped, rs[first_stop], torch.full_like(total, bins * (bins - 1) / 2))
    count = hist.gather(1, k_exit.unsqueeze(1)).squeeze(1)
    median = k_exit.to(hist.dtype) / bins + (half.squeeze(1) - rs_exit) / (bins * count)
    return torch.where(total > 0, median, torch.zeros_like(median))


def _true_medians(hist: Tensor, empty_value: float, upper: float = 1.0) -> Tensor:
    """Per-class median of v, linearly interpolated inside its bin; ``empty_value`` if no counts.

    The median bin k is the first with cumulative count >= total / 2; with cum_before the count
    below it, median = upper * (k + (total / 2 - cum_before) / H[c,k]) / bins, which lies inside
    bin k, i.e. within one bin width (upper / bins) of the exact median of the counted values.
    """
    bins = hist.shape[1]
    total = hist.sum(dim=1)
    half = total / 2
    cumulative = hist.cumsum(dim=1)
    k = (cumulative >= half.unsqueeze(1)).to(torch.uint8).argmax(dim=1)
    count = hist.gather(1, k.unsqueeze(1)).squeeze(1)
    before = cumulative.gather(1, k.unsqueeze(1)).squeeze(1) - count
    present = total > 0
    # With total > 0 the median bin has count > 0; the guard only keeps empty classes finite.
    fraction = (half - before) / torch.where(present, count, torch.ones_like(count))
    median = (k.to(hist.dtype) + fraction) * (upper / bins)
    return torch.where(present, median, torch.full_like(median, empty_value))


def pseudo_label(
    labels: Tensor,
    old_logits: Tensor,
    thresholds: Tensor,
    *,
    num_old: int,
    num_current: int,
    ignore_index: int = 255,
    segments: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Relabel background elements with the old model's confident predictions
    (docs/protocol-2d-losses.md#relabelling).

    Background is ``labels < num_old`` (label 0 after the step's masking, as in the reference).
    With probs = softmax(old_logits), pseudo = argmax and v from :func:`entropy_score`, a
    background element is accepted when v < thresholds[pseudo]: it takes the label ``pseudo``
    (0 or an old class); otherwise it becomes ``ignore_index``. New-class and ignored elements
    are untouched. A NaN threshold accepts nothing, +inf accepts everything.

    Returns ``(new_labels, factor)``: new_labels is a new tensor (the input is not modified,
    unlike the reference), factor (B,) float32 is PLOP's adaptive CE factor
    #(bg & accepted)_b / (#bg_b + 1e-6), which is 0 for an image without background.
    ``old_logits`` (B, C_old, *S) must be at label resolution (the caller upsamples).

    ``segments`` (labels' shape, ids 0..S-1) says which sample each element belongs to when a batch
    concatenates samples along its elements (whole point-cloud scenes, logits (1, C, N)): the factor
    is then computed per segment and returned per element, with the labels' shape
    (docs/pointcloud-scenes.md#methods).
    """
    check_logits_labels(old_logits, labels, name="old_logits")
    if old_logits.shape[1] != num_old:
        raise ValueError(f"old_logits have {old_logits.shape[1]} channels, expected num_old = {num_old}")
    if thresholds.dim() != 1 or thresholds.shape[0] < num_old:
        raise ValueError(
            f"thresholds must have shape (C_cur,) with C_cur >= num_old = {num_old}, "
            f"got {tuple(thresholds.shape)}"
        )
    probs = F.softmax(old_logits.float(), dim=1)
    pseudo = probs.argmax(dim=1)
    v = entropy_score(probs, num_current)
    accepted = v < thresholds.to(v.device)[pseudo]
    background = labels < num_old
    confident = background & accepted

    new_labels = labels.clone()
    new_labels[background & ~accepted] = ignore_index
    new_labels[confident] = pseudo[confident]

    if segments is not None:
        if segments.shape != labels.shape:
            raise ValueError(f"segments must have the labels' shape {tuple(labels.shape)}, got {tuple(segments.shape)}")
        ids = segments.reshape(-1).long()
        count = int(ids.max()) + 1 if ids.numel() else 0
        per_segment = (torch.bincount(ids[confident.reshape(-1)], minlength=count).float()
                       / (torch.bincount(ids[background.reshape(-1)], minlength=count).float() + 1e-6))
        return new_labels, per_segment[segments.long()]
    per_image = labels.shape[0], -1
    num_confident = confident.reshape(per_image).sum(dim=1).float()
    num_background = background.reshape(per_image).sum(dim=1).float()
    return new_labels, num_confident / (num_background + 1e-6)

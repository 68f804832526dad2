"""The 3DPC-CISS method's losses as pure functions (docs/pointcloud-ciss.md).

Geometry- and uncertainty-aware class-incremental segmentation of point clouds: the frozen old
model (MC dropout on) labels the points that are not of a novel class (mixed labels), a
neighbourhood uncertainty decides which of those labels to trust, uncertain or unlabelled points
take the labels of their nearest certain neighbours (label propagation), and a feature-relation
loss on farthest-point-sampled neighbourhoods keeps the new model's local geometry close to the
old one's. Point-specific: coordinates are ``xyz`` (B, N, 3), the first three input channels.

Label spaces (docs/pointcloud-ciss.md#label-spaces): css keeps the background channel 0 in the
old and the new model, so an old class has the same channel in both; ignore is ``ignore_index``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from css.losses.classification import labelled_cross_entropy
from css.pointcloud.fps import farthest_point_sample, num_centres
from css.pointcloud.knn import DEFAULT_CHUNK_BYTES
from css.pointcloud.knn import knn_rows as _knn_rows
from css.pointcloud.pooled_knn import grid_knn

__all__ = [
    "THRESHOLDS", "NEIGHBOURS", "NEIGHBOUR_MODES", "PROTOCOL_FLAGS", "CISSOptions", "PseudoLabels",
    "batch_xyz", "xyz_knn", "neighbour_weights", "neighbourhood_uncertainty", "mixed_labels",
    "propagated_label_map", "propagate_labels", "pseudo_labels", "relation_vectors", "gft_loss",
    "ciss_cross_entropy", "ciss_losses",
]

THRESHOLDS = {"s3dis": 0.0065, "scannet": 0.0045}
"""Uncertainty threshold tau per dataset (docs/pointcloud-ciss.md#uncertainty)."""
NEIGHBOURS = 12
"""K: neighbours per point, the point itself included, for uncertainty, propagation and GFT."""
NEIGHBOUR_MODES = ("per_block", "pooled")
PROTOCOL_FLAGS: dict[str, dict[str, Any]] = {  # docs/pointcloud-ciss.md#protocol
    "fixed": {"neighbour_mode": "per_block", "reference_offset": False, "overwrite_novel": False,
              "reference_nan": False},
    "reference": {"neighbour_mode": "pooled", "reference_offset": True, "overwrite_novel": True,
                  "reference_nan": True},
}


@dataclasses.dataclass(frozen=True)
class CISSOptions:
    """Every setting of the method; ``for_protocol`` fills the protocol switches (docs/pointcloud-ciss.md#protocol)."""

    threshold: float = THRESHOLDS["s3dis"]
    k: int = NEIGHBOURS
    neighbour_mode: str = "per_block"
    reference_offset: bool = False
    overwrite_novel: bool = False
    reference_nan: bool = False
    reference_unannotated: bool = False
    keep_background: bool = False
    gft_weight: float = 1.0
    gft_ratio: float = 0.25
    gft_centres: int | None = None
    gft_k: int = NEIGHBOURS
    eps: float = 1e-8
    ignore_index: int = 255
    max_bytes: int = DEFAULT_CHUNK_BYTES

    def __post_init__(self) -> None:
        if self.neighbour_mode not in NEIGHBOUR_MODES:
            raise ValueError(f"neighbour_mode must be one of {NEIGHBOUR_MODES}, got {self.neighbour_mode!r}")
        if self.k < 2 or self.gft_k < 1:
            raise ValueError(f"need k >= 2 (self and one neighbour) and gft_k >= 1, got {self.k}, {self.gft_k}")
        if self.reference_offset and self.keep_background:
            raise ValueError("reference_offset models the background-free new model; it cannot keep background")

    @classmethod
    def for_protocol(cls, protocol: str, dataset: str | None = None, **overrides: Any) -> CISSOptions:
        """Options of ``protocol`` ('fixed' or 'reference'); tau from ``dataset`` (S3DIS's if unknown).

        Under 'reference' on ScanNet, ``reference_unannotated`` is set too. ``overrides`` win."""
        if protocol not in PROTOCOL_FLAGS:
            raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOL_FLAGS)}")
        values: dict[str, Any] = dict(PROTOCOL_FLAGS[protocol])
        values["threshold"] = THRESHOLDS.get(dataset or "", THRESHOLDS["s3dis"])
        values["reference_unannotated"] = protocol == "reference" and dataset == "scannet"
        values.update(overrides)
        return cls(**values)


class PseudoLabels(NamedTuple):
    """What :func:`pseudo_labels` returns: the training labels and the intermediate results."""

    labels: Tensor       # (B, N) int64 in the new model's channels, ignore_index where unlabelled
    mixed: Tensor        # (B, N) the mixed labels before propagation
    uncertainty: Tensor  # (B, N) float32 U (NaN possible with reference_nan)
    old_pred: Tensor     # (B, N) argmax of the old model's softmax, old channels
    neighbours: Tensor   # (B, N, K) flat indices into the B*N points, column 0 = the point itself


def batch_xyz(inputs: Tensor) -> Tensor:
    """The coordinates (B, N, 3) of a point-cloud batch (B, C_in, N): input channels 0..2."""
    if inputs.dim() != 3 or inputs.shape[1] < 3:
        raise ValueError(f"point inputs must be (B, C_in >= 3, N), got {tuple(inputs.shape)}")
    return inputs[:, :3].transpose(1, 2)


def xyz_knn(xyz: Tensor, k: int = NEIGHBOURS, *, mode: str = "per_block",
            max_bytes: int = DEFAULT_CHUNK_BYTES) -> Tensor:
    """The k nearest points (self included, column 0) of every point: (B, N, k) flat indices into B*N.

    ``per_block``: neighbours from the point's own block; ``pooled``: from all B*N points of the
    batch taken together in their block-local coordinates (docs/pointcloud-ciss.md#neighbours).
    Squared Euclidean distances in float32, nearest first, ties in unspecified order; the point
    itself is always column 0, also when it has exact duplicates. Memory: one float32 distance
    block of at most ``max_bytes`` (rows x N, or rows x B*N pooled) at a time. No autograd."""
    if xyz.dim() != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz must be (B, N, 3), got {tuple(xyz.shape)}")
    batch, n, _ = xyz.shape
    if mode not in NEIGHBOUR_MODES:
        raise ValueError(f"mode must be one of {NEIGHBOUR_MODES}, got {mode!r}")
    total = n if mode == "per_block" else batch * n
    if not 1 <= k <= total:
        raise ValueError(f"xyz_knn needs 1 <= k <= {total} points, got k={k}")
    if mode == "pooled":
        flat = xyz.reshape(1, batch * n, 3)
        if xyz.device.type == "cpu":
            # An all-pairs search over B*N points is half a minute per batch on a small CPU; the
            # grid search finds the same neighbours (docs/pointcloud-ciss.md#neighbours).
            return grid_knn(flat[0].float(), k, max_bytes).view(batch, n, k)
        own = torch.arange(batch * n, device=xyz.device).unsqueeze(0)
        return _knn_rows(flat, flat, k, own, max_bytes).view(batch, n, k)
    own = torch.arange(n, device=xyz.device).expand(batch, n)
    offset = (torch.arange(batch, device=xyz.device) * n).view(batch, 1, 1)
    return _knn_rows(xyz, xyz, k, own, max_bytes) + offset


def _gather_flat(values: Tensor, index: Tensor) -> Tensor:
    """values (B*N, ...) at flat indices (B, N, K) -> (B, N, K, ...)."""
    return values.index_select(0, index.reshape(-1)).view(*index.shape, *values.shape[1:])


def neighbour_weights(xyz: Tensor, neighbours: Tensor, *, reference_nan: bool = False,
                      eps: float = 1e-8) -> Tensor:
    """w (B, N, K): cosine of the centre's and each neighbour's position vectors, min-max normalised
    over the K neighbours, mapped to [0.5, 1], normalised to sum 1 (docs/pointcloud-ciss.md#uncertainty).

    Guarded (default): both divisions take max(denominator, eps), so a point at the origin has
    cosine 0 and equal cosines give the uniform 1/K. ``reference_nan``: plain divisions; those
    cases give NaN weights (docs/pointcloud-ciss.md#nan-guard)."""
    pos = xyz.float().reshape(-1, 3)
    centre = pos.view(*neighbours.shape[:2], 1, 3)
    other = _gather_flat(pos, neighbours)  # (B, N, K, 3)
    dot = (centre * other).sum(dim=3)
    norms = centre.norm(dim=3) * other.norm(dim=3)
    def guard(denominator: Tensor) -> Tensor:  # docs/pointcloud-ciss.md#nan-guard
        return denominator if reference_nan else denominator.clamp_min(eps)

    cos = dot / guard(norms)
    low, high = cos.amin(dim=2, keepdim=True), cos.amax(dim=2, keepdim=True)
    w = 0.5 + 0.5 * (cos - low) / guard(high - low)
    return w / w.sum(dim=2, keepdim=True)


def neighbourhood_uncertainty(old_probs: Tensor, xyz: Tensor, neighbours: Tensor, *,
                              reference_nan: bool = False, eps: float = 1e-8) -> Tensor:
    """U (B, N) float32 from the old model's probabilities (B, C_old, N) (docs/pointcloud-ciss.md#uncertainty).

    With w from :func:`neighbour_weights`, p~_k = w_k p_k (p_k: probabilities of neighbour k),
    m = mean_k p~_k and H(x) = -mean_c x_c log x_c (0 log 0 = 0): U = H(m) - mean_k H(p~_k)."""
    channels = old_probs.shape[1]
    probs = old_probs.float().transpose(1, 2).reshape(-1, channels)  # (B*N, C)
    w = neighbour_weights(xyz, neighbours, reference_nan=reference_nan, eps=eps)
    weighted = _gather_flat(probs, neighbours) * w.unsqueeze(3)  # (B, N, K, C)
    mean = weighted.mean(dim=2)

    def entropy(x: Tensor) -> Tensor:
        return -torch.special.xlogy(x, x).mean(dim=-1)

    return entropy(mean) - entropy(weighted).mean(dim=2)


def mixed_labels(labels: Tensor, old_pred: Tensor, *, num_old: int, keep_background: bool = False,
                 ignore_index: int = 255) -> Tensor:
    """Step labels with the old model's predictions where they are not novel (docs/pointcloud-ciss.md#mixed-labels).

    Novel ground truth (label >= num_old) and ignored points keep their label; every other point
    takes the old prediction: old class k -> channel k, old background -> ignore_index (or 0 with
    ``keep_background``)."""
    gt_ignored = labels == ignore_index
    novel = (labels >= num_old) & ~gt_ignored
    bg = 0 if keep_background else ignore_index
    from_old = torch.where(old_pred == 0, torch.full_like(old_pred, bg), old_pred)
    return torch.where(novel | gt_ignored, labels, from_old)


def propagated_label_map(num_old: int, *, reference_offset: bool = False, keep_background: bool = False,
                         reference_unannotated: bool = False, ignore_index: int = 255) -> Tensor:
    """Lookup (num_old,) int64: old channel of a neighbour's prediction -> the label it propagates.

    Fixed: old class k -> k, background -> ignore_index (0 with ``keep_background``).
    ``reference_offset``: every old channel c -> c + 1, the published code's off-by-one seen in css's
    channels; with ``reference_unannotated`` (ScanNet) background -> ignore_index instead of 1
    (docs/pointcloud-ciss.md#label-spaces)."""
    table = torch.arange(num_old, dtype=torch.int64)
    if reference_offset:
        table = table + 1
        if reference_unannotated:
            table[0] = ignore_index
    else:
        table[0] = 0 if keep_background else ignore_index
    return table


def propagate_labels(mixed: Tensor, labels: Tensor, old_pred: Tensor, uncertainty: Tensor, neighbours: Tensor,
                     *, num_old: int, threshold: float, label_map: Tensor, overwrite_novel: bool = False,
                     ignore_index: int = 255) -> Tensor:
    """Fill unlabelled and uncertain points from their neighbours (docs/pointcloud-ciss.md#propagation).

    A neighbour offers label_map[its old prediction], or ignore_index if its U > threshold.
    Pass 1 (column 1, the nearest other point) labels the points whose label is ignore_index or
    whose own U > threshold; passes 2..K-1 (columns 2..K-1) label those still at ignore_index.
    Points ignored in ``labels`` (the ground truth) never change; novel ground truth only when
    ``overwrite_novel``. A NaN U compares False (certain). Returns a new (B, N) tensor."""
    gt = labels.reshape(-1)
    gt_ignored = gt == ignore_index
    uncertain = uncertainty.reshape(-1) > threshold
    offered = label_map.to(old_pred.device)[old_pred.reshape(-1)]
    offered = torch.where(uncertain, torch.full_like(offered, ignore_index), offered)
    rewritable = uncertain & ~gt_ignored
    if not overwrite_novel:
        rewritable &= ~((gt >= num_old) & ~gt_ignored)
    out = mixed.reshape(-1).clone()
    columns = neighbours.reshape(-1, neighbours.shape[-1])
    for j in range(1, columns.shape[1]):
        fill = (out == ignore_index) & ~gt_ignored
        if j == 1:
            fill |= rewritable
        elif not bool(fill.any()):
            break  # nothing left to fill: later passes would change nothing
        out = torch.where(fill, offered[columns[:, j]], out)
    return out.view_as(mixed)


@torch.no_grad()
def pseudo_labels(labels: Tensor, old_logits: Tensor, xyz: Tensor, *, num_old: int,
                  options: CISSOptions = CISSOptions()) -> PseudoLabels:
    """Mixed labels, uncertainty and propagation of one batch (docs/pointcloud-ciss.md#pipeline).

    ``labels`` (B, N): the step's labels (novel classes at their channels >= num_old, others 0,
    ignore_index); ``old_logits`` (B, num_old, N) from the old model in MC-dropout mode."""
    o = options
    if old_logits.shape[1] != num_old or old_logits.shape[0::2] != labels.shape:
        raise ValueError(f"old_logits must be (B, num_old={num_old}, N) for labels {tuple(labels.shape)}, "
                         f"got {tuple(old_logits.shape)}")
    probs = F.softmax(old_logits.float(), dim=1)
    old_pred = probs.argmax(dim=1)
    neighbours = xyz_knn(xyz, o.k, mode=o.neighbour_mode, max_bytes=o.max_bytes)
    u = neighbourhood_uncertainty(probs, xyz, neighbours, reference_nan=o.reference_nan, eps=o.eps)
    mixed = mixed_labels(labels, old_pred, num_old=num_old, keep_background=o.keep_background,
                         ignore_index=o.ignore_index)
    table = propagated_label_map(num_old, reference_offset=o.reference_offset, keep_background=o.keep_background,
                                 reference_unannotated=o.reference_unannotated, ignore_index=o.ignore_index)
    out = propagate_labels(mixed, labels, old_pred, u, neighbours, num_old=num_old, threshold=o.threshold,
                           label_map=table, overwrite_novel=o.overwrite_novel, ignore_index=o.ignore_index)
    return PseudoLabels(out, mixed, u, old_pred, neighbours)


def _group_relations(values: Tensor, centres: Tensor, groups: Tensor) -> Tensor:
    """(B, m, W): per centre, mean_j values[group j] - values[centre], for values (B, N, W)."""
    batch, n, width = values.shape
    flat = values.reshape(batch * n, width)
    offset = (torch.arange(batch, device=flat.device) * n).view(batch, 1)
    # embedding_bag "mean" averages the K rows of every group without a (B, m, K, W) copy, and its
    # backward adds into one (B*N, W) gradient.
    mean = F.embedding_bag((groups + offset.unsqueeze(2)).reshape(-1, groups.shape[2]), flat, mode="mean")
    centre = flat.index_select(0, (centres + offset).reshape(-1))
    return (mean - centre).view(batch, -1, width)


def relation_vectors(features: Tensor, xyz: Tensor, centres: Tensor, groups: Tensor) -> Tensor:
    """(B, m, 3 + C): per centre, the mean over its group of concat(xyz_j - xyz_c, f_j - f_c).

    ``features`` (B, C, N), ``xyz`` (B, N, 3), ``centres`` (B, m) and ``groups`` (B, m, K) point
    indices within each block (docs/pointcloud-ciss.md#gft). Differentiable in ``features``."""
    per_point = torch.cat([xyz.to(features.dtype), features.transpose(1, 2)], dim=2)  # (B, N, 3 + C)
    return _group_relations(per_point, centres, groups)


def gft_loss(new_features: Tensor, old_features: Tensor, xyz: Tensor, *, centres: int | None = None,
             ratio: float = 0.25, k: int = NEIGHBOURS, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Tensor:
    """Geometry-aware feature-relation transfer (docs/pointcloud-ciss.md#gft), a float32 scalar.

    Per block: ``centres`` points by farthest point sampling from index 0 (default
    ceil(ratio * N), 512 for N = 2048), each with its k nearest points on xyz (itself included);
    L = mean over B x m x (3 + C) of (R_new - R_old)², R from :func:`relation_vectors`. The old
    features are targets (detached). The 3 coordinate channels are equal in both and count in
    the mean, as in the published loss. R is linear in the features and its coordinate part is
    the same for both models, so R_new - R_old is computed once, as the feature relations of
    f_new - f_old (equal up to rounding)."""
    if new_features.shape != old_features.shape or new_features.dim() != 3:
        raise ValueError(f"features must both be (B, C, N), got {tuple(new_features.shape)} "
                         f"and {tuple(old_features.shape)}")
    batch, channels, n = new_features.shape
    if xyz.shape != (batch, n, 3):
        raise ValueError(f"xyz must be (B, N, 3) = {(batch, n, 3)}, got {tuple(xyz.shape)}")
    m = num_centres(n, ratio) if centres is None else int(centres)
    centre_index = farthest_point_sample(xyz, m)
    centre_xyz = xyz.gather(1, centre_index.unsqueeze(2).expand(-1, -1, 3))
    groups = _knn_rows(centre_xyz, xyz, min(k, n), centre_index, max_bytes)
    diff = (new_features.float() - old_features.detach().float()).transpose(1, 2)  # (B, N, C)
    relations = _group_relations(diff, centre_index, groups)
    return relations.square().sum() / (batch * m * (3 + channels))


def ciss_cross_entropy(logits: Tensor, labels: Tensor, *, keep_background: bool = False,
                       ignore_index: int = 255) -> Tensor:
    """Cross-entropy over the labelled points only (mean over non-ignored points; 0 if none).

    Without ``keep_background`` the background channel 0 is left out of the softmax, which is the
    published new model's classifier without a background row (docs/pointcloud-ciss.md#loss)."""
    return labelled_cross_entropy(logits, labels, background=keep_background, ignore_index=ignore_index)


def ciss_losses(new: Any, old: Any, labels: Tensor, xyz: Tensor, *, num_old: int,
                options: CISSOptions = CISSOptions()) -> tuple[Tensor, Tensor, PseudoLabels]:
    """(CE, weighted GFT, pseudo-labels) of one incremental batch (docs/pointcloud-ciss.md#wiring).

    ``new``/``old``: the new and old models' SegOutput (logits (B, C, N), features["body"]
    (B, 448, N)); the old one from the model in MC-dropout mode. Total loss = CE + GFT."""
    pl = pseudo_labels(labels, old.logits.detach(), xyz, num_old=num_old, options=options)
    ce = ciss_cross_entropy(new.logits, pl.labels, keep_background=options.keep_background,
                            ignore_index=options.ignore_index)
    gft = new.logits.new_zeros((), dtype=torch.float32)
    if options.gft_weight:
        gft = options.gft_weight * gft_loss(new.features["body"], old.features["body"], xyz,
                                            centres=options.gft_centres, ratio=options.gft_ratio,
                                            k=options.gft_k, max_bytes=options.max_bytes)
    return ce, gft, pl

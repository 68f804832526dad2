"""Local POD, PLOP's pooled-output distillation of intermediate maps (docs/protocol-2d-losses.md#local-pod).

Each pair of maps (old model, new model) is squared element-wise, embedded by local pooling at
several scales, and compared with a per-sample L2 norm. Image maps are (B, C, H, W). Point-cloud
maps (B, C, N) use a 1-D extension of the same idea (see ``_local_embedding_1d``); the reference
has no 1-D variant, so that one is ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from css.losses.classification import upcast

__all__ = ["local_pod"]


def _sum_extra_channels(old: Tensor, new: Tensor) -> Tensor:
    """Bring ``new`` (C_cur channels) to the old channel count with the "sum" rule
    (docs/protocol-2d-losses.md#local-pod step 1).

    b'[:, 0] = b[:, 0] + sum_{c >= C_old} b[:, c] (raw values, before squaring) and
    b'[:, 1:C_old] = b[:, 1:C_old].
    """
    num_old = old.shape[1]
    background = new[:, :1] + new[:, num_old:].sum(dim=1, keepdim=True)
    return torch.cat([background, new[:, 1:num_old]], dim=1)


def _local_embedding_2d(x: Tensor, scales: Sequence[int]) -> Tensor:
    """PLOP's local pooling embedding of a (B, C, H, W) map (docs/protocol-2d-losses.md#local-pod step 3).

    For each scale s, k = W // s, and the s x s tiles x[..., i*k:(i+1)*k, j*k:(j+1)*k] (row i
    outer, column j inner) each contribute their mean over width flattened (C*rows values), then
    their mean over height flattened (C*cols values). As in the reference, k comes from the WIDTH
    and is used for both axes.
    """
    batch, channels, height, width = x.shape
    parts = []
    for s in scales:
        k = width // s
        if k == 0 or (s - 1) * k >= height:
            raise ValueError(
                f"Local POD scale {s} does not fit a map of height {height} and width {width}: the "
                f"reference tiling (tile size W // s = {k} on both axes) leaves an empty tile. "
                "Use smaller scales (method.pod_scales, e.g. [1, 2]) or larger maps (data.crop_size)."
            )
        if s * k <= height:
            # Every tile is a full k x k block of the top-left (s*k) x (s*k) crop: pool them all
            # at once. Order per tile: [mean over width (C, k), mean over height (C, k)].
            tiles = x[:, :, : s * k, : s * k].reshape(batch, channels, s, k, s, k)
            width_means = tiles.mean(dim=5).permute(0, 2, 4, 1, 3)  # (B, s_i, s_j, C, rows)
            height_means = tiles.mean(dim=3).permute(0, 2, 3, 1, 4)  # (B, s_i, s_j, C, cols)
            parts.append(torch.stack([width_means, height_means], dim=3).reshape(batch, -1))
        else:
            # The bottom row of tiles is cut short by the map's height (only when H < W).
            for i in range(s):
                for j in range(s):
                    tile = x[:, :, i * k : (i + 1) * k, j * k : (j + 1) * k]
                    parts.append(tile.mean(dim=3).reshape(batch, -1))
                    parts.append(tile.mean(dim=2).reshape(batch, -1))
    return torch.cat(parts, dim=1)


def _local_embedding_1d(x: Tensor, scales: Sequence[int]) -> Tensor:
    """Our 1-D extension of local pooling for (B, C, N) point maps (no reference exists).

    For each scale s, k = N // s and the map is cut into s contiguous chunks of k points
    (points beyond s*k are left out, like pixels beyond s*k in 2-D); each chunk contributes its
    mean over points (C values). Point order is whatever the data pipeline provides.
    """
    batch, channels, num_points = x.shape
    parts = []
    for s in scales:
        k = num_points // s
        if k == 0:
            raise ValueError(
                f"Local POD scale {s} needs at least {s} points per map, got N = {num_points}. "
                "Use smaller scales (method.pod_scales, e.g. [1, 2]) or more points per block."
            )
        chunks = x[:, :, : s * k].reshape(batch, channels, s, k).mean(dim=3)
        parts.append(chunks.transpose(1, 2).reshape(batch, -1))
    return torch.cat(parts, dim=1)


def _local_embedding(x: Tensor, scales: Sequence[int]) -> Tensor:
    """Dispatch to the 2-D (B, C, H, W) or 1-D (B, C, N) local pooling embedding."""
    if x.dim() == 4:
        return _local_embedding_2d(x, scales)
    if x.dim() == 3:
        return _local_embedding_1d(x, scales)
    raise ValueError(f"Local POD needs maps of shape (B, C, H, W) or (B, C, N), got {tuple(x.shape)}")


def _pod_layer(old: Tensor, new: Tensor, scales: Sequence[int]) -> Tensor:
    """Mean over the batch of ||emb(old^2) - emb(new^2)||_2 for one pair of maps
    (docs/protocol-2d-losses.md#local-pod steps 1-4)."""
    old = upcast(old)
    new = upcast(new)
    if new.shape[1] > old.shape[1]:
        new = _sum_extra_channels(old, new)
    if new.shape != old.shape:
        raise ValueError(
            f"Local POD map pair does not match: old {tuple(old.shape)}, new {tuple(new.shape)} "
            "(the new map may only have more channels than the old one)"
        )
    # The embedding is linear (means of slices), so emb(a^2) - emb(b^2) = emb(a^2 - b^2):
    # embed the difference once instead of embedding both maps.
    difference = _local_embedding(old.pow(2) - new.pow(2), scales)
    return torch.linalg.vector_norm(difference, ord=2, dim=1).mean()


def local_pod(
    old_maps: Sequence[Tensor],
    new_maps: Sequence[Tensor],
    *,
    factors: Sequence[float],
    num_current: int,
    num_new: int,
    scales: Sequence[int] = (1, 2, 4),
    schedule: bool = True,
) -> Tensor:
    """Local POD over pairs of maps (docs/protocol-2d-losses.md#local-pod), a float32 scalar.

    For every pair i: if the new map has more channels than the old one (logits), the extra
    channels are summed into channel 0 ("sum"); both maps are squared; the local pooling
    embeddings at ``scales`` are compared with a per-sample L2 norm, averaged over the batch and
    multiplied by ``factors[i]`` and, if ``schedule``, by sqrt(num_current / num_new). The layer
    losses are summed and divided by the number of pairs.

    Raises FloatingPointError, naming the layer index, if a layer loss is not finite.
    """
    if len(old_maps) != len(new_maps) or len(old_maps) != len(factors) or not old_maps:
        raise ValueError(
            "local_pod needs one old map, one new map and one factor per layer, got "
            f"{len(old_maps)} old maps, {len(new_maps)} new maps and {len(factors)} factors"
        )
    if any(f < 0 for f in factors):
        raise ValueError(f"Local POD factors must be non-negative, got {list(factors)}")
    if any(int(s) != s or s < 1 for s in scales):
        raise ValueError(f"Local POD scales must be positive integers, got {list(scales)}")
    scale_factor = 1.0
    if schedule:
        if num_new <= 0 or num_current <= 0:
            raise ValueError(
                f"the POD schedule sqrt(num_current / num_new) needs positive counts, got "
                f"num_current={num_current}, num_new={num_new}"
            )
        scale_factor = math.sqrt(num_current / num_new)  # docs/protocol-2d-losses.md#local-pod step 4

    layer_losses = torch.stack(
        [
            factor * scale_factor * _pod_layer(old, new, scales)
            for old, new, factor in zip(old_maps, new_maps, factors)
        ]
    )
    # docs/protocol-2d-losses.md#local-pod: the reference asserts finite, non-negative layer losses. One
    # check for all layers keeps it to a single device synchronisation.
    if not bool(torch.isfinite(layer_losses).all()):
        bad = [i for i, value in enumerate(layer_losses.tolist()) if not math.isfinite(value)]
        raise FloatingPointError(
            f"Local POD loss of layer(s) {bad} is not finite ({layer_losses.tolist()}); the old or "
            "new feature maps of those layers contain inf/NaN (try a lower learning rate or fp32)"
        )
    return layer_losses.sum() / len(layer_losses)

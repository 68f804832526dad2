"""Farthest point sampling on point coordinates, batched, in pure torch (docs/pointcloud-ciss.md#fps).

3DPC-CISS picks the centres of its feature-relation transfer by farthest point sampling with a
deterministic start. This module does the same without the torch-cluster extension: every cloud
of the batch is sampled at once, with a running minimum distance per point.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["farthest_point_sample", "num_centres"]


def num_centres(num_points: int, ratio: float = 0.25) -> int:
    """Centres drawn from ``num_points`` points at sampling ratio ``ratio``: ceil(ratio * N), at least 1.

    512 for the 2048-point blocks of the 3DPC-CISS protocol (docs/pointcloud-ciss.md#gft).
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the sampling ratio must be in (0, 1], got {ratio}")
    # The ratio is applied in float32 as torch-cluster does, then rounded up.
    m = int(torch.ceil(torch.tensor(num_points, dtype=torch.float32) * ratio))
    return max(1, min(num_points, m))


@torch.no_grad()
def farthest_point_sample(xyz: Tensor, m: int, start: int = 0) -> Tensor:
    """Indices (B, m) int64 of ``m`` points of every cloud of ``xyz`` (B, N, D), farthest first.

    The first index is ``start`` (0: the deterministic start) in every cloud; each next index is
    the point whose distance to the already chosen ones (the minimum over them) is largest.
    Distances are squared Euclidean over the D coordinates, computed as the sum of the squared
    differences in ``xyz``'s dtype (float32 for half inputs; float64 stays float64). Among equal
    distances the lowest index wins (``torch.argmax`` returns the first maximum). When a cloud
    has fewer than ``m`` distinct positions, every pick after the last distinct one has distance
    0 everywhere and is index 0: the result is then not a set.

    Cost: m - 1 sequential iterations, each a few passes over the B·N·D coordinates (subtract,
    square, add, minimum, argmax), i.e. O(m·N·D) time per cloud; O(B·N·D) extra memory (a
    coordinate-major copy of ``xyz``, the (B, N) running minimum and two (B, N) buffers).
    B = 32, N = 2048, m = 512 (3.4e7 distance updates) takes about 0.13 s on one CPU core
    (benchmarks/bench_fps.py); the operations are small, so extra intra-op threads barely help
    on CPU and slow it down on a busy machine. Runs without autograd.
    """
    if xyz.dim() != 3:
        raise ValueError(f"farthest_point_sample expects coordinates (B, N, D), got shape {tuple(xyz.shape)}")
    batch, num_points, dims = xyz.shape
    if not 1 <= m <= num_points:
        raise ValueError(f"farthest_point_sample needs 1 <= m <= N, got m={m} for N={num_points} points")
    if not 0 <= start < num_points:
        raise ValueError(f"start must be a point index in [0, {num_points}), got {start}")
    dtype = torch.promote_types(xyz.dtype, torch.float32)
    device = xyz.device
    with torch.autocast(device.type, enabled=False):
        # Coordinate-major (D, B, N): every operation below runs along contiguous rows of N points.
        coords = xyz.detach().to(dtype).permute(2, 0, 1).contiguous()
        out = torch.empty(batch, m, dtype=torch.int64, device=device)
        out[:, 0] = start
        rows = torch.arange(batch, device=device)
        nearest = torch.full((batch, num_points), float("inf"), dtype=dtype, device=device)
        dist = torch.empty_like(nearest)
        term = torch.empty_like(nearest)
        current = coords[:, :, start]  # (D, B)
        for i in range(1, m):
            # dist = sum_d (x_d - c_d)², summed in coordinate order (no fused multiply-add).
            torch.sub(coords[0], current[0].unsqueeze(1), out=dist).square_()
            for d in range(1, dims):
                dist.add_(torch.sub(coords[d], current[d].unsqueeze(1), out=term).square_())
            torch.minimum(nearest, dist, out=nearest)
            chosen = nearest.argmax(dim=1)
            out[:, i] = chosen
            current = coords[:, rows, chosen]
    return out

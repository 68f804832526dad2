"""k nearest neighbours in feature space, chunked over query points (docs/pointcloud-model.md#knn).

DGCNN rebuilds its graph at every EdgeConv from the current features. A full (B, N, N) float32
distance matrix costs 4·B·N² bytes (512 MiB at B=32, N=2048) per layer, so :func:`knn` computes
it for a block of query points at a time and keeps only the top-k indices of each block.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["knn", "knn_rows_per_chunk", "gather_neighbours", "edge_features", "DEFAULT_CHUNK_BYTES"]

DEFAULT_CHUNK_BYTES = 64 * 2**20
"""Default size of the distance block of one chunk (64 MiB)."""


def knn_rows_per_chunk(batch: int, num_points: int, max_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Query points per chunk so that the float32 (batch, rows, num_points) block fits ``max_bytes``."""
    return max(1, min(num_points, int(max_bytes) // (4 * batch * num_points)))


@torch.no_grad()
def knn(x: Tensor, k: int, chunk: int | None = None, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Tensor:
    """Indices (B, N, k) int64 of the k nearest points of every point of ``x`` (B, C, N).

    Distances are squared Euclidean over all C channels, computed in float32 (also under autocast);
    a point is its own nearest neighbour (distance 0), so it is among its k neighbours unless it
    has k or more exact duplicates. The neighbours of a point are ordered nearest first; among
    equal distances the order is unspecified.

    Memory: ``chunk`` query points at a time (default: :func:`knn_rows_per_chunk` for
    ``max_bytes``, 64 MiB), each chunk taking one float32 (B, chunk, N) block, 4·B·chunk·N bytes,
    plus its top-k values and indices, 12·B·chunk·k bytes; a float32 copy of ``x`` (4·B·C·N bytes)
    when ``x`` is not float32; and the returned indices, 8·B·N·k bytes (5 MiB at B=32, N=2048,
    k=20). Runs without autograd: the indices need no gradient.
    """
    if x.dim() != 3:
        raise ValueError(f"knn expects features (B, C, N), got shape {tuple(x.shape)}")
    batch, _, num_points = x.shape
    if not 1 <= k <= num_points:
        raise ValueError(f"knn needs 1 <= k <= N, got k={k} for N={num_points} points")
    rows = knn_rows_per_chunk(batch, num_points, max_bytes) if chunk is None else int(chunk)
    if rows < 1:
        raise ValueError(f"knn chunk must be a positive number of query points, got {chunk}")
    with torch.autocast(x.device.type, enabled=False):
        points = x.float().transpose(1, 2)  # (B, N, C)
        # |x_i - x_j|² = |x_i|² - 2 x_i·x_j + |x_j|²; |x_i|² is constant along a row, so ranking
        # by |x_j|² - 2 x_i·x_j gives the same neighbours with one (B, rows, N) block per chunk.
        sq = points.square().sum(dim=2).unsqueeze(1)  # (B, 1, N)
        out = torch.empty(batch, num_points, k, dtype=torch.int64, device=x.device)
        for start in range(0, num_points, rows):
            stop = min(start + rows, num_points)
            block = torch.baddbmm(sq, points[:, start:stop], points.transpose(1, 2), alpha=-2.0)
            out[:, start:stop] = block.topk(k, dim=2, largest=False, sorted=True).indices
    return out


def gather_neighbours(x: Tensor, index: Tensor) -> Tensor:
    """Neighbour features (B, N, k, C) of ``x`` (B, C, N) for indices (B, N, k) (differentiable)."""
    batch, channels, num_points = x.shape
    k = index.shape[2]
    offset = torch.arange(batch, device=x.device).view(batch, 1, 1) * num_points
    flat = (index + offset).reshape(-1)
    rows = x.transpose(1, 2).reshape(batch * num_points, channels)
    return rows.index_select(0, flat).view(batch, num_points, k, channels)


def edge_features(x: Tensor, index: Tensor) -> Tensor:
    """EdgeConv input (B, 2C, N, k): concat(x_j - x_i, x_i) for the k neighbours j of each point i.

    The result is a permuted view of a (B, N, k, 2C) tensor (channels-last memory layout), of
    element size ``x``'s: 2·B·C·N·k elements (at B=32, N=2048, k=20 and C=64: 671 MB in float32).
    """
    neighbours = gather_neighbours(x, index)  # (B, N, k, C)
    centre = x.transpose(1, 2).unsqueeze(2).expand_as(neighbours)
    return torch.cat([neighbours - centre, centre], dim=3).permute(0, 3, 1, 2)


@torch.no_grad()
def knn_rows(queries: Tensor, points: Tensor, k: int, self_index: Tensor | None, max_bytes: int) -> Tensor:
    """(B, M, k) indices of the k nearest ``points`` (B, N, 3) of each query (B, M, 3), nearest first.

    Chunked over queries so that one float32 (B, rows, N) distance block fits ``max_bytes``.
    ``self_index`` (B, M): the query's own index among the points, forced into column 0."""
    batch, num_queries, _ = queries.shape
    num_points = points.shape[1]
    rows = max(1, min(num_queries, int(max_bytes) // (4 * batch * num_points)))
    with torch.autocast(points.device.type, enabled=False):
        q, p = queries.float(), points.float()
        sq = p.square().sum(dim=2).unsqueeze(1)  # (B, 1, N); |q|² is constant along a row
        out = torch.empty(batch, num_queries, k, dtype=torch.int64, device=points.device)
        for start in range(0, num_queries, rows):
            stop = min(start + rows, num_queries)
            block = torch.baddbmm(sq, q[:, start:stop], p.transpose(1, 2), alpha=-2.0)
            if self_index is not None:
                block.scatter_(2, self_index[:, start:stop].unsqueeze(2), float("-inf"))
            out[:, start:stop] = block.topk(k, dim=2, largest=False, sorted=True).indices
    return out

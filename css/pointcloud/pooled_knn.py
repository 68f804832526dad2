"""Exact k nearest neighbours among many 3-D points, with a grid instead of an all-pairs search
(docs/pointcloud-ciss.md#neighbours).

The reference protocol of 3DPC-CISS searches the neighbours of every point among all B·N points
of the batch pooled together (65,536 at B = 32, N = 2048). An all-pairs search is 4.3·10⁹
distances per batch, half a minute on a 2-core CPU. Here the points are sorted into cubic cells
of side h; the candidates of a query are the points of its own cell and the 26 around it. When the
k-th candidate is nearer than the edge of that 3 x 3 x 3 region, no point outside it can be nearer,
so the result is exact; queries for which this does not hold (a sparse neighbourhood) are searched
again with cells twice as large, and at the end, if any
remain, among all points. Ties among equal distances come in unspecified order, as in the
all-pairs search.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from css.pointcloud.knn import knn_rows

__all__ = ["grid_knn", "brute_knn"]

TARGET_PER_CELL = 64
"""Points per cell of the first, finest grid if they filled the bounding box evenly (27 x 64
candidates; fewer cells mean fewer, larger distance blocks, which is faster on a CPU down to about
this size: 16, 64 and 256 took 7.3, 3.3 and 5.1 s for a batch of 32 x 2048 points)."""


def brute_knn(queries: Tensor, points: Tensor, k: int, self_index: Tensor | None, max_bytes: int) -> Tensor:
    """(M, k) indices of the k nearest ``points`` (P, 3) of each query (M, 3), nearest first, chunked
    so that one float32 distance block fits ``max_bytes``; ``self_index`` (M,) forced into column 0
    (the all-pairs search of css.pointcloud.knn.knn_rows on one cloud)."""
    own = None if self_index is None else self_index.unsqueeze(0)
    return knn_rows(queries.unsqueeze(0), points.unsqueeze(0), k, own, max_bytes)[0]


@torch.no_grad()
def grid_knn(points: Tensor, k: int, max_bytes: int) -> Tensor:
    """(P, k) int64: the k nearest of ``points`` (P, 3) float32 to each of them, itself in column 0,
    nearest first (squared Euclidean). Same neighbours as :func:`brute_knn` up to the order of ties."""
    threads = torch.get_num_threads()
    # Thousands of small operations: one intra-op thread is several times faster than two on a
    # busy 2-core machine (their synchronisation dominates), as for css.pointcloud.fps.
    torch.set_num_threads(1)
    try:
        return _grid_knn(points, k, max_bytes)
    finally:
        torch.set_num_threads(threads)


def _grid_knn(points: Tensor, k: int, max_bytes: int) -> Tensor:
    total = points.shape[0]
    out = torch.empty(total, k, dtype=torch.int64, device=points.device)
    todo = torch.arange(total, device=points.device)
    low = points.amin(dim=0)
    size = (points.amax(dim=0) - low).clamp_min(1e-6)
    h = float((size.prod() * TARGET_PER_CELL / total) ** (1 / 3))
    while todo.numel() and float(size.amax()) / h >= 3:  # a grid of under 3 cells per axis saves nothing
        todo = grid_pass(points, todo, k, h, low, out)
        h *= 2
    if todo.numel():
        out[todo] = brute_knn(points[todo], points, k, todo, max_bytes)
    return out


def grid_pass(points: Tensor, todo: Tensor, k: int, h: float, low: Tensor, out: Tensor) -> Tensor:
    """Search the queries ``todo`` on a grid of cubes of side ``h``; writes ``out`` for those it
    resolves exactly and returns the others."""
    cell = torch.div(points - low, h, rounding_mode="floor").long()
    nx, ny, nz = (int(v) + 1 for v in cell.amax(dim=0))
    key = (cell[:, 0] * ny + cell[:, 1]) * nz + cell[:, 2]
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    occupied, counts = torch.unique_consecutive(sorted_key, return_counts=True)
    firsts = torch.cumsum(counts, 0) - counts
    # start / end (in sorted order) of every cell, occupied or not: a z-range of cells is one slice.
    start_of = torch.searchsorted(sorted_key, torch.arange(nx * ny * nz, device=points.device)).tolist()
    is_todo = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    is_todo[todo] = True
    todo_sorted = is_todo[order]
    sq = points.square().sum(dim=1)
    total = points.shape[0]
    failed = []
    for c, first, count in zip(occupied.tolist(), firsts.tolist(), counts.tolist()):
        own_todo = todo_sorted[first:first + count]
        if not bool(own_todo.any()):
            continue
        ab, z = divmod(c, nz)
        a, b = divmod(ab, ny)
        z0, z1 = max(z - 1, 0), min(z + 1, nz - 1)
        slices, before = [], 0
        for x in range(max(a - 1, 0), min(a + 2, nx)):
            for y in range(max(b - 1, 0), min(b + 2, ny)):
                base = (x * ny + y) * nz
                lo = start_of[base + z0]
                hi = start_of[base + z1 + 1] if base + z1 + 1 < len(start_of) else total
                if (x, y) == (a, b):
                    before = sum(int(s.numel()) for s in slices) + first - lo  # own cell's offset in cand
                slices.append(order[lo:hi])
        cand = torch.cat(slices)
        local = own_todo.nonzero().squeeze(1)
        queries = order[first + local]
        if cand.numel() < k:
            failed.append(queries)
            continue
        q = points[queries]
        block = torch.addmm(sq[cand].unsqueeze(0), q, points[cand].t(), alpha=-2.0)
        block.scatter_(1, (before + local).unsqueeze(1), float("-inf"))  # the point itself first
        found = cand[block.topk(k, dim=1, largest=False, sorted=True).indices]
        # Exact when the k-th neighbour is nearer than the region's nearest face (none beyond the grid).
        kth = (points[found[:, -1]] - q).square().sum(dim=1).sqrt()
        edge = torch.full_like(kth, math.inf)
        for axis, index, cells in ((0, a, nx), (1, b, ny), (2, z, nz)):
            offset = q[:, axis] - low[axis]
            if index > 0:
                edge = torch.minimum(edge, offset - (index - 1) * h)
            if index < cells - 1:
                edge = torch.minimum(edge, (index + 2) * h - offset)
        ok = kth < edge - 1e-4 * h  # a margin for the rounding of the cell and distance arithmetic
        out[queries[ok]] = found[ok]
        failed.append(queries[~ok])
    return torch.cat(failed) if failed else todo[:0]

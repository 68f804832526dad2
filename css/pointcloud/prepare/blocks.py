"""Cut a scene into fixed x-y tiles ("blocks"), docs/pointcloud-data.md#blocks.

The definition (every tool that cuts blocks must agree with it, the synthetic generator included):

* the scene is shifted so that its minimum corner is the origin (:func:`shift_to_origin`);
* tiles are laid on x and y only, each covering the full height; per axis there are
  ``max(1, ceil((extent - block_size) / stride) + 1)`` tiles;
* tile ``(i, j)`` keeps the points with ``i*stride <= x <= i*stride + block_size`` and
  ``j*stride <= y <= j*stride + block_size``: closed intervals, so a point exactly on a border
  belongs to both neighbouring tiles;
* a tile with fewer than ``min_points`` points (and an empty tile, even with ``min_points=0``)
  is dropped;
* tiles are visited with ``i`` (x) in the outer loop and ``j`` (y) in the inner one, and the kept
  tiles are numbered in that order (block ids ``<scene>_block_<k>``).

:func:`sweep` computes exactly this (the same float64 comparisons as a per-tile mask over all
points) but in O(n log n): one sort along x finds each column of tiles, one sort along y inside
the column finds each tile.
"""

from __future__ import annotations

import math

import numpy as np


def shift_to_origin(coord: np.ndarray) -> np.ndarray:
    """``coord - coord.min(0)``: the scene's minimum corner moves to the origin."""
    coord = np.asarray(coord)
    if len(coord) == 0:
        return coord.copy()
    return coord - coord.min(0)


def num_tiles(extent: float, block_size: float, stride: float) -> int:
    """Tiles along one axis of a scene whose (shifted) coordinates span ``[0, extent]``."""
    return max(1, int(math.ceil((extent - block_size) / stride)) + 1)


def _check(coord: np.ndarray, block_size: float, stride: float, min_points: int) -> np.ndarray:
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] < 2:
        raise ValueError(f"coord must have shape (n, 3), got {coord.shape}")
    if not (block_size > 0 and stride > 0):
        raise ValueError(f"block_size and stride must be > 0, got {block_size} and {stride}")
    if min_points < 0:
        raise ValueError(f"min_points must be >= 0, got {min_points}")
    # float32 input is widened exactly; the tile bounds are float64, so comparisons are float64
    # whatever the input dtype (numpy would otherwise compare float32 arrays in float32).
    coord = coord.astype(np.float64, copy=False)
    if len(coord) and not np.isfinite(coord[:, :2]).all():
        raise ValueError("coord holds NaN or infinite values")
    return coord


def sweep(coord: np.ndarray, *, block_size: float = 1.0, stride: float = 1.0,
          min_points: int = 1000) -> list[np.ndarray]:
    """Point indices (sorted int64) of every kept tile, in sweep order (see the module docstring).

    ``coord`` must already be shifted to the origin; points at negative coordinates fall in no tile.
    """
    return [idx for idx, _ in sweep_with_origins(coord, block_size=block_size, stride=stride,
                                                 min_points=min_points)]


def sweep_with_origins(coord: np.ndarray, *, block_size: float = 1.0, stride: float = 1.0,
                       min_points: int = 1000) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Like :func:`sweep`, with the (x, y) corner of each kept tile."""
    coord = _check(coord, block_size, stride, min_points)
    n = len(coord)
    if n == 0:
        return []
    extent = coord.max(0)
    nx = num_tiles(float(extent[0]), block_size, stride)
    ny = num_tiles(float(extent[1]), block_size, stride)
    x, y = coord[:, 0], coord[:, 1]
    order_x = np.argsort(x, kind="stable")
    xs = x[order_x]
    out: list[tuple[np.ndarray, tuple[float, float]]] = []
    for i in range(nx):
        x0 = i * stride
        # searchsorted left on x0 gives the first x >= x0, right on x0 + block_size the first x
        # beyond it: the closed interval, compared against the same float64 bounds a mask would use.
        a, b = np.searchsorted(xs, x0, side="left"), np.searchsorted(xs, x0 + block_size, side="right")
        if b - a < max(min_points, 1):
            continue  # no tile of this column can reach min_points
        column = order_x[a:b]
        yc = y[column]
        order_y = np.argsort(yc, kind="stable")
        ys = yc[order_y]
        for j in range(ny):
            y0 = j * stride
            c, d = np.searchsorted(ys, y0, side="left"), np.searchsorted(ys, y0 + block_size, side="right")
            if d - c < max(min_points, 1):
                continue
            # points keep their scene order inside a block, as a boolean mask would give them
            out.append((np.sort(column[order_y[c:d]]).astype(np.int64, copy=False), (x0, y0)))
    return out

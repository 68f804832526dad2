"""The block sweep: a fast implementation that must equal the per-tile mask definition."""


import numpy as np
import pytest

from css.pointcloud.prepare.blocks import shift_to_origin, sweep, sweep_with_origins

from _pc_raw import naive_tiles  # the per-tile mask definition, written independently of the code


def test_hand_checked_example():
    # scene 2.5 m x 1.5 m -> ceil(1.5)+1 = 3 tiles along x, ceil(0.5)+1 = 2 along y.
    # Tile order (i outer over x): (0,0) (0,1) (1,0) (1,1) (2,0) (2,1).
    pts = [
        [0.0, 0.0, 0.0],    # 0: tile (0,0)
        [0.5, 0.5, 1.0],    # 1: tile (0,0)
        [1.0, 0.2, 0.0],    # 2: on the x border: tiles (0,0) and (1,0)
        [1.5, 1.0, 0.0],    # 3: on the y border: tiles (1,0) and (1,1)
        [2.5, 1.5, 3.0],    # 4: tile (2,1) only (x in [2,3], y in [1,2])
        [2.2, 0.3, 0.0],    # 5: tile (2,0)
        [1.2, 0.4, 0.0],    # 6: tile (1,0)
    ]
    coord = np.asarray(pts)
    got = sweep(coord, block_size=1.0, stride=1.0, min_points=2)
    # kept (>= 2 points): (0,0) {0,1,2}, (1,0) {2,3,6}; (1,1) {3}, (2,0) {5}, (2,1) {4} dropped,
    # (0,1) is empty.
    assert [b.tolist() for b in got] == [[0, 1, 2], [2, 3, 6]]
    assert all(b.dtype == np.int64 for b in got)
    got = sweep_with_origins(coord, block_size=1.0, stride=1.0, min_points=1)
    assert [(b.tolist(), o) for b, o in got] == [
        ([0, 1, 2], (0.0, 0.0)), ([2, 3, 6], (1.0, 0.0)), ([3], (1.0, 1.0)),
        ([5], (2.0, 0.0)), ([4], (2.0, 1.0))]


def test_small_scene_is_one_tile_and_empty_scene_none():
    coord = np.asarray([[0.0, 0.0, 0.0], [0.3, 0.2, 0.0]])
    assert [b.tolist() for b in sweep(coord, min_points=1)] == [[0, 1]]
    assert sweep(np.zeros((1, 3)), min_points=1)[0].tolist() == [0]   # extent 0: still one tile
    assert sweep(np.zeros((0, 3)), min_points=0) == []
    assert sweep(coord, min_points=3) == []


@pytest.mark.parametrize("block_size,stride,min_points", [(1.0, 1.0, 20), (1.0, 0.5, 5), (0.7, 0.3, 1),
                                                           (2.0, 1.0, 0), (0.5, 1.0, 3)])
def test_equals_naive_on_random_data_with_border_points(block_size, stride, min_points):
    rng = np.random.default_rng(int(block_size * 10 + stride * 100 + min_points))
    n = 3000
    coord = rng.uniform(0, 1, (n, 3)) * [4.3, 3.1, 2.0]
    # a third of the points sit exactly on tile borders (in x, in y, or both)
    borders = np.concatenate([np.arange(0, 6) * stride, np.arange(0, 6) * stride + block_size])
    on = rng.random(n) < 0.33
    coord[on, 0] = rng.choice(borders, on.sum())
    on = rng.random(n) < 0.33
    coord[on, 1] = rng.choice(borders, on.sum())
    coord = shift_to_origin(coord)
    fast = sweep_with_origins(coord, block_size=block_size, stride=stride, min_points=min_points)
    slow = naive_tiles(coord, block_size, stride, min_points)
    assert len(fast) == len(slow)
    for (fi, fo), (si, so) in zip(fast, slow):
        assert fo == so
        np.testing.assert_array_equal(fi, si)
    # float32 input gives the same tiles as its exact float64 widening
    c32 = coord.astype(np.float32)
    a = sweep(c32, block_size=block_size, stride=stride, min_points=min_points)
    b = [i for i, _ in naive_tiles(c32.astype(np.float64), block_size, stride, min_points)]
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_shift_to_origin():
    coord = np.asarray([[1.0, -2.0, 3.0], [2.0, 0.0, 5.0]])
    np.testing.assert_array_equal(shift_to_origin(coord), [[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])


def test_bad_arguments():
    with pytest.raises(ValueError):
        sweep(np.zeros((3, 3)), stride=0)
    with pytest.raises(ValueError):
        sweep(np.full((3, 3), np.nan))

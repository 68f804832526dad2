"""Farthest point sampling (css.pointcloud.fps, docs/pointcloud-ciss.md#fps)."""

import random

import pytest
import torch

from css.pointcloud.fps import farthest_point_sample, num_centres


def naive_fps(points, m, start=0):
    """One cloud as a list of coordinate tuples; a literal transcription of the definition."""
    chosen = [start]
    nearest = [float("inf")] * len(points)
    for _ in range(1, m):
        last = points[chosen[-1]]
        best, best_d = 0, -1.0
        for i, p in enumerate(points):
            d = 0.0
            for a, b in zip(p, last):
                d = d + (a - b) * (a - b)
            nearest[i] = min(nearest[i], d)
            if nearest[i] > best_d:  # strict: the lowest index wins a tie
                best, best_d = i, nearest[i]
        chosen.append(best)
    return chosen


def on_x_axis(values):
    return torch.tensor([[[v, 0.0, 0.0] for v in values]])


def test_points_on_a_line():
    # From x=0 the distances are 1, 3, 6, 10: pick x=10 (index 4). Nearest chosen point then:
    # x=1 -> 1, x=3 -> 3, x=6 -> min(6, 4) = 4: pick index 3. Then x=1 -> 1, x=3 -> min(3, 3) = 3:
    # pick index 2, and index 1 last.
    xyz = on_x_axis([0, 1, 3, 6, 10])
    assert farthest_point_sample(xyz, 5).tolist() == [[0, 4, 3, 2, 1]]
    assert farthest_point_sample(xyz, 2).tolist() == [[0, 4]]
    assert farthest_point_sample(xyz, 1).tolist() == [[0]]


def test_start_index():
    # The same x values shuffled: [3, 0, 10, 1, 6], starting at x=0 (index 1):
    # x=0 -> 10 -> 6 -> 3 -> 1, i.e. indices 1, 2, 4, 0, 3.
    xyz = on_x_axis([3, 0, 10, 1, 6])
    assert farthest_point_sample(xyz, 5, start=1).tolist() == [[1, 2, 4, 0, 3]]


def test_distinct_distances_in_3d():
    pts = [(0, 0, 0), (3, 0, 0), (0, 2, 0), (0, 0, 1), (1, 1, 1)]
    # From 0: squared distances 9, 4, 1, 3 -> pick 1 (3,0,0).
    # To 1: point 2 -> 13, point 3 -> 10, point 4 -> 6; minima 4, 1, 3 -> pick 2 (0,2,0).
    # To 2: point 3 -> 5 (min 1), point 4 -> 3 (min 3) -> pick 4, then 3.
    xyz = torch.tensor([pts], dtype=torch.float32)
    assert farthest_point_sample(xyz, 5).tolist() == [[0, 1, 2, 4, 3]]


def test_cube_corners_and_centre_ties_to_lowest_index():
    # Corner i = (bit2, bit1, bit0) of i, then the centre (index 8). From (0,0,0) the farthest
    # is (1,1,1) = 7. Every other corner is then at squared distance 1 of {0, 7} (and stays at 1
    # whatever corners are added, their distance to any corner being >= 1), the centre at 0.75:
    # the six corners come in index order, the centre last.
    corners = [((i >> 2) & 1, (i >> 1) & 1, i & 1) for i in range(8)]
    xyz = torch.tensor([corners + [(0.5, 0.5, 0.5)]], dtype=torch.float32)
    assert farthest_point_sample(xyz, 2).tolist() == [[0, 7]]
    assert farthest_point_sample(xyz, 9).tolist() == [[0, 7, 1, 2, 3, 4, 5, 6, 8]]


def test_duplicates_repeat_once_positions_run_out():
    # Positions x = 0, 0, 5, 5, 1: from index 0, x=5 (lowest index 2), then x=1 (index 4, at
    # distance 1); every point is then at distance 0 and argmax gives index 0.
    xyz = on_x_axis([0, 0, 5, 5, 1])
    assert farthest_point_sample(xyz, 5).tolist() == [[0, 2, 4, 0, 0]]


@pytest.mark.parametrize("batch,n,m,dims", [(3, 50, 17, 3), (2, 40, 40, 3), (1, 10, 1, 3), (2, 30, 12, 2)])
def test_equals_naive_python(batch, n, m, dims):
    rng = random.Random(batch * 1000 + n + m)
    clouds = [[tuple(rng.uniform(-2, 3) for _ in range(dims)) for _ in range(n)] for _ in range(batch)]
    xyz = torch.tensor(clouds, dtype=torch.float64)
    got = farthest_point_sample(xyz, m)
    assert got.dtype == torch.int64 and got.shape == (batch, m)
    assert got.tolist() == [naive_fps(c, m) for c in clouds]
    start = n // 3
    assert farthest_point_sample(xyz, m, start=start).tolist() == [naive_fps(c, m, start) for c in clouds]


def test_float32_and_half_inputs():
    rng = random.Random(7)
    clouds = [[(rng.random(), rng.random(), rng.random()) for _ in range(64)] for _ in range(2)]
    xyz = torch.tensor(clouds, dtype=torch.float64)
    # float32 keeps the order of these well separated random points.
    assert farthest_point_sample(xyz.float(), 16).tolist() == [naive_fps(c, 16) for c in clouds]
    half = farthest_point_sample(xyz.half(), 16)
    assert half.shape == (2, 16) and half[:, 0].tolist() == [0, 0]


def test_batch_independence():
    gen = torch.Generator().manual_seed(3)
    xyz = torch.rand(5, 200, 3, generator=gen)
    whole = farthest_point_sample(xyz, 37)
    for b in range(5):
        assert torch.equal(whole[b], farthest_point_sample(xyz[b:b + 1], 37)[0])
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.equal(farthest_point_sample(xyz[perm], 37), whole[perm])


def test_no_autograd_and_input_untouched():
    xyz = torch.rand(2, 20, 3, requires_grad=True)
    before = xyz.detach().clone()
    out = farthest_point_sample(xyz, 5)
    assert not out.requires_grad and torch.equal(xyz.detach(), before)


def test_errors():
    xyz = torch.rand(2, 10, 3)
    with pytest.raises(ValueError, match="1 <= m <= N"):
        farthest_point_sample(xyz, 11)
    with pytest.raises(ValueError, match="1 <= m <= N"):
        farthest_point_sample(xyz, 0)
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(xyz, 3, start=10)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        farthest_point_sample(torch.rand(10, 3), 3)


def test_num_centres():
    assert num_centres(2048) == 512  # the 3DPC-CISS blocks
    assert num_centres(512) == 128
    assert num_centres(6) == 2  # ceil(1.5)
    assert num_centres(5) == 2  # ceil(1.25)
    assert num_centres(1) == 1
    assert num_centres(10, 1.0) == 10
    with pytest.raises(ValueError):
        num_centres(10, 0.0)

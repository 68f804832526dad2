"""The grid search of the pooled neighbours (css.pointcloud.pooled_knn, docs/pointcloud-ciss.md#neighbours)
finds the neighbours of the all-pairs search: same distances row by row, the point itself first."""

import pytest
import torch

from css.pointcloud.ciss import xyz_knn
from css.pointcloud.pooled_knn import brute_knn, grid_knn

BYTES = 2**20


def _distances(points, index):
    return (points[index] - points.unsqueeze(1)).square().sum(dim=2)


def _check(points, k):
    grid = grid_knn(points, k, BYTES)
    own = torch.arange(points.shape[0])
    brute = brute_knn(points, points, k, own, BYTES)
    assert torch.equal(grid[:, 0], own)
    # Same neighbours up to the order of equal distances: the sorted distance rows agree.
    torch.testing.assert_close(_distances(points, grid), _distances(points, brute), rtol=0, atol=1e-6)
    assert (grid.sort(dim=1).values[:, 1:] != grid.sort(dim=1).values[:, :-1]).all()  # no point twice
    return grid


def _rooms(blocks, points_per_block, seed=0):
    """Blocks in one 1 x 1 x 3 m box: floor, ceiling and a wall plus scattered points, each block
    drawn with replacement (exact duplicates), as the pooled batches of the reference are."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(blocks):
        base = torch.rand(300, 3, generator=gen) * torch.tensor([1.0, 1.0, 3.0])
        kind = torch.randint(0, 4, (300,), generator=gen)
        base[kind == 0, 2] = 0.0
        base[kind == 1, 2] = 3.0
        base[kind == 2, 0] = 0.0
        out.append(base[torch.randint(0, 300, (points_per_block,), generator=gen)])
    return torch.cat(out)


def test_matches_the_all_pairs_search_on_uniform_points():
    gen = torch.Generator().manual_seed(1)
    _check(torch.rand(4000, 3, generator=gen) * torch.tensor([1.0, 1.0, 3.0]), 12)


def test_matches_on_overlapping_rooms_with_duplicates():
    _check(_rooms(8, 512), 12)


def test_sparse_outliers_are_resolved_by_coarser_grids_or_the_fallback():
    gen = torch.Generator().manual_seed(2)
    dense = torch.rand(3000, 3, generator=gen) * 0.5
    far = torch.tensor([[5.0, 5.0, 5.0], [5.0, 0.0, 0.0], [0.0, 5.0, 2.0]])
    _check(torch.cat([dense, far]), 5)


@pytest.mark.parametrize("points", [
    torch.zeros(40, 3),  # one position: no extent at all
    torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 3.0, 3.0], [0.5, 0.5, 0.5]]),
])
def test_tiny_and_degenerate_inputs(points):
    grid = grid_knn(points, 3, BYTES)
    assert torch.equal(grid[:, 0], torch.arange(points.shape[0]))
    brute = brute_knn(points, points, 3, torch.arange(points.shape[0]), BYTES)
    torch.testing.assert_close(_distances(points, grid), _distances(points, brute), rtol=0, atol=0)


def test_xyz_knn_pooled_uses_it_and_returns_flat_indices():
    xyz = _rooms(4, 256, seed=3).view(4, 256, 3)
    pooled = xyz_knn(xyz, 12, mode="pooled")
    assert pooled.shape == (4, 256, 12)
    flat = xyz.reshape(-1, 3)
    assert torch.equal(pooled.reshape(-1, 12), _check(flat, 12))


def test_a_neighbour_beyond_the_searched_cells_sends_the_query_to_the_next_pass():
    from css.pointcloud.pooled_knn import grid_pass

    # Cells of side 1 from x = 0: q = (1.9, .5, .5) is in cell 1 and searches cells 0..2, which
    # hold B = (0, .5, .5) at distance 1.9; A = (3.05, .5, .5) in cell 3 is nearer (1.15). The
    # region's nearest face is 1.1 from q < 1.9: q is not resolved on this grid.
    points = torch.tensor([[0.0, 0.5, 0.5], [1.9, 0.5, 0.5], [3.05, 0.5, 0.5], [5.0, 0.0, 0.0]])
    out = torch.full((4, 2), -1, dtype=torch.int64)
    failed = grid_pass(points, torch.arange(4), 2, 1.0, points.amin(dim=0), out)
    assert 1 in failed.tolist() and out[1].tolist() == [-1, -1]
    assert grid_knn(points, 2, BYTES)[1].tolist() == [1, 2]  # self, then A

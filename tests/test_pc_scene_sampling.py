"""Grid sampling, test fragments, crops and batches of whole scenes (docs/pointcloud-scenes.md#sampling),
checked against brute force: voxels by explicit floor division, distances point by point."""

import numpy as np
import pytest
import torch

from css.pointcloud.scenes.sampling import collate_scenes, crop, grid_fragments, grid_sample, voxel_index


def scene(n=600, seed=0):
    rng = np.random.default_rng(seed)
    coord = rng.random((n, 3)) * np.array([2.0, 1.5, 1.0]) + 10.0  # away from the origin
    coord[: n // 3] = np.round(coord[: n // 3], 1)  # many points share a voxel
    return coord


def voxels_by_hand(coord, size):
    cells = [tuple(int(v) for v in np.floor((p - coord.min(axis=0)) / size)) for p in coord]
    return cells


def test_training_keeps_one_point_per_voxel():
    coord = scene()
    cells = voxels_by_hand(coord, 0.1)
    picked = grid_sample(coord, 0.1, np.random.default_rng(1))
    assert len(picked) == len(set(cells))  # one per occupied voxel...
    assert len({cells[i] for i in picked}) == len(picked)  # ...and never two of the same voxel
    again = grid_sample(coord, 0.1, np.random.default_rng(1))
    other = grid_sample(coord, 0.1, np.random.default_rng(2))
    assert np.array_equal(picked, again) and not np.array_equal(np.sort(picked), np.sort(other))
    # every point of a crowded voxel gets drawn over enough accesses
    crowded = max(set(cells), key=cells.count)
    members = {i for i, c in enumerate(cells) if c == crowded}
    seen = {i for s in range(200) for i in grid_sample(coord, 0.1, np.random.default_rng(s)) if i in members}
    assert len(members) > 1 and seen == members


def test_the_test_fragments_cover_every_point_exactly_once():
    coord = scene()
    cells = voxels_by_hand(coord, 0.1)
    fragments = grid_fragments(coord, 0.1)
    together = np.concatenate(fragments)
    assert np.array_equal(np.sort(together), np.arange(len(coord)))  # every point, once
    assert len(fragments) == max(cells.count(c) for c in set(cells))
    assert len(fragments[0]) == len(set(cells))  # the first fragment: one point of every voxel
    for fragment in fragments:
        assert len({cells[i] for i in fragment}) == len(fragment)  # at most one point per voxel
    # fragment i takes the i-th point (index order) of each voxel
    first = {}
    for i, c in enumerate(cells):
        first.setdefault(c, i)
    assert sorted(first.values()) == fragments[0].tolist()
    voxel, count = voxel_index(coord, 0.1)
    assert count == len(set(cells)) and len(voxel) == len(coord)


@pytest.mark.parametrize("mode, norm", [("sphere", 2), ("box", np.inf)])
def test_a_crop_keeps_the_points_nearest_a_random_point(mode, norm):
    coord = scene(800)
    kept = crop(coord, 300, np.random.default_rng(5), mode)
    assert len(kept) == 300 and np.array_equal(kept, np.sort(kept))
    rest = np.setdiff1d(np.arange(len(coord)), kept)
    centre = coord[np.random.default_rng(5).integers(len(coord))]  # the same draw as the crop's
    near = np.linalg.norm(coord - centre, ord=norm, axis=1)
    assert near[kept].max() <= near[rest].min()
    assert np.array_equal(crop(coord[:200], 300, np.random.default_rng(0), mode), np.arange(200))
    with pytest.raises(ValueError, match="crop mode"):
        crop(coord, 10, np.random.default_rng(0), "cube")


def test_a_batch_concatenates_points_with_offsets():
    items = [(torch.ones(3, 4), torch.zeros(3, 3, dtype=torch.int64), torch.tensor([1, 2, 3])),
             (torch.zeros(5, 4), torch.ones(5, 3, dtype=torch.int64), torch.arange(5))]
    batch, labels = collate_scenes(items)
    assert batch.features.shape == (8, 4) and batch.grid.shape == (8, 3) and batch.offsets.tolist() == [3, 8]
    assert len(batch) == 2 and batch.sample_index().tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert batch.grid[batch.sample_index() == 1].eq(1).all() and batch.grid[:3].eq(0).all()
    assert labels.shape == (1, 8) and labels[0, 3:8].tolist() == [0, 1, 2, 3, 4]
    moved = batch.to("cpu")
    assert isinstance(moved, type(batch)) and torch.equal(moved.features, batch.features)

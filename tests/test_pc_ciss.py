"""The 3DPC-CISS method's neighbourhoods and uncertainty (css.pointcloud.ciss, docs/pointcloud-ciss.md).

Expectations are worked out by hand (in the comments) or by the naive re-implementations below,
which follow docs/pointcloud-ciss.md literally, one point at a time. The label spaces and the
propagation are in test_pc_ciss_labels.py, GFT and the losses in test_pc_ciss_losses.py.
"""

import math

import pytest
import torch

from css.pointcloud.ciss import (
    neighbour_weights,
    neighbourhood_uncertainty,
    propagate_labels,
    propagated_label_map,
    xyz_knn,
)

from _pc_ciss import IGN, x_axis


# ------------------------------------------------------------------------------ naive versions


def naive_knn_distances(xyz, k, pooled):
    """Per point, its k smallest squared distances (float64), computed pair by pair."""
    pts = xyz.double().reshape(-1, 3).tolist()
    batch, n = xyz.shape[:2]
    out = []
    for i, p in enumerate(pts):
        pool = range(len(pts)) if pooled else range((i // n) * n, (i // n + 1) * n)
        d = sorted(sum((a - b) ** 2 for a, b in zip(p, pts[j])) for j in pool)
        out.append(d[:k])
    return torch.tensor(out, dtype=torch.float64).view(batch, n, k)


def naive_uncertainty(probs, xyz, neighbours):
    """U per point from docs/pointcloud-ciss.md#uncertainty, in Python floats."""
    c = probs.shape[1]
    p = probs.double().transpose(1, 2).reshape(-1, c).tolist()
    pos = xyz.double().reshape(-1, 3).tolist()
    nb = neighbours.reshape(-1, neighbours.shape[-1]).tolist()
    out = []
    for i, row in enumerate(nb):
        cos = []
        for j in row:
            dot = sum(a * b for a, b in zip(pos[i], pos[j]))
            cos.append(dot / (math.sqrt(sum(a * a for a in pos[i])) * math.sqrt(sum(b * b for b in pos[j]))))
        lo, hi = min(cos), max(cos)
        w = [0.5 + 0.5 * (s - lo) / (hi - lo) for s in cos]
        w = [v / sum(w) for v in w]
        tilde = [[w[n] * q for q in p[j]] for n, j in enumerate(row)]
        k = len(row)
        mean = [sum(t[ch] for t in tilde) / k for ch in range(c)]

        def h(x):
            return -sum(v * math.log(v) for v in x if v > 0) / c

        out.append(h(mean) - sum(h(t) for t in tilde) / k)
    return torch.tensor(out, dtype=torch.float64).view(neighbours.shape[:2])


# ------------------------------------------------------------------------------ neighbours


def test_knn_per_block_and_pooled_by_hand():
    # Block 0 at x = 0, 1, 3; block 1 at x = 0.1, 1.2, 3.5 (flat indices 3, 4, 5).
    xyz = x_axis([0, 1, 3], [0.1, 1.2, 3.5])
    per_block = xyz_knn(xyz, 2, mode="per_block")
    assert per_block.tolist() == [[[0, 1], [1, 0], [2, 1]], [[3, 4], [4, 3], [5, 4]]]
    # Pooled: every point's nearest other point is its twin in the other block.
    pooled = xyz_knn(xyz, 2, mode="pooled")
    assert pooled.tolist() == [[[0, 3], [1, 4], [2, 5]], [[3, 0], [4, 1], [5, 2]]]


def test_knn_self_first_with_duplicates():
    xyz = torch.tensor([[[0.3, 0.2, 0.1]] * 5 + [[1.0, 1.0, 1.0]]])
    for mode in ("per_block", "pooled"):
        index = xyz_knn(xyz, 3, mode=mode)
        assert index[0, :, 0].tolist() == list(range(6))
        assert set(index[0, 0].tolist()) <= {0, 1, 2, 3, 4}


@pytest.mark.parametrize("mode", ["per_block", "pooled"])
@pytest.mark.parametrize("max_bytes", [1, 4 * 3 * 40 * 7, 2**26])
def test_knn_matches_naive_distances(mode, max_bytes):
    gen = torch.Generator().manual_seed(11)
    xyz = torch.rand(3, 40, 3, generator=gen) * torch.tensor([1.0, 1.0, 3.0])
    index = xyz_knn(xyz, 12, mode=mode, max_bytes=max_bytes)
    flat = xyz.double().reshape(-1, 3)
    got = ((flat[index] - flat.view(3, 40, 1, 3)) ** 2).sum(-1)
    assert torch.allclose(got, naive_knn_distances(xyz, 12, mode == "pooled"), atol=1e-6)
    assert index[..., 0].reshape(-1).tolist() == list(range(120))
    if mode == "per_block":
        assert ((index // 40) == torch.arange(3).view(3, 1, 1)).all()


def test_knn_errors():
    with pytest.raises(ValueError, match="k="):
        xyz_knn(torch.rand(2, 5, 3), 6)
    assert xyz_knn(torch.rand(2, 5, 3), 6, mode="pooled").shape == (2, 5, 6)
    with pytest.raises(ValueError, match="mode"):
        xyz_knn(torch.rand(2, 5, 3), 2, mode="global")
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        xyz_knn(torch.rand(2, 3, 5), 2)


# ------------------------------------------------------------------------------ uncertainty


def test_weights_by_hand():
    xyz = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]]])
    nb = torch.tensor([[[0, 1, 2], [1, 0, 2], [2, 0, 1]]])
    w = neighbour_weights(xyz, nb)
    # Point 0: cosines 1 (self), 0, 1/sqrt2 -> normalised 1, 0, 1/sqrt2 -> 1, 0.5, 0.5 + 0.5/sqrt2.
    r = 1 / math.sqrt(2)
    raw = [1.0, 0.5, 0.5 + 0.5 * r]
    expected0 = [v / sum(raw) for v in raw]
    assert torch.allclose(w[0, 0], torch.tensor(expected0), atol=1e-6)
    assert torch.allclose(w[0, 1], torch.tensor(expected0), atol=1e-6)  # same pattern for point 1
    # Point 2: cosines 1, 1/sqrt2, 1/sqrt2 -> normalised 1, 0, 0 -> 1, 0.5, 0.5 -> 1/2, 1/4, 1/4.
    assert torch.allclose(w[0, 2], torch.tensor([0.5, 0.25, 0.25]), atol=1e-6)


def test_uncertainty_by_hand():
    # Two points at right angles, K = 2: cosines (1, 0) -> weights (2/3, 1/3). Point 0 has p = (1, 0),
    # point 1 p = (0, 1): p~ = (2/3, 0) and (0, 1/3), m = (1/3, 1/6).
    xyz = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    nb = torch.tensor([[[0, 1], [1, 0]]])
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B, C, N)
    h_m = -((1 / 3) * math.log(1 / 3) + (1 / 6) * math.log(1 / 6)) / 2
    h_0 = -((2 / 3) * math.log(2 / 3)) / 2
    h_1 = -((1 / 3) * math.log(1 / 3)) / 2
    expected = h_m - (h_0 + h_1) / 2
    u = neighbourhood_uncertainty(probs, xyz, nb)
    assert u.shape == (1, 2) and u.dtype == torch.float32
    assert u[0].tolist() == pytest.approx([expected, expected], abs=1e-6)  # symmetric


@pytest.mark.parametrize("mode", ["per_block", "pooled"])
def test_uncertainty_matches_naive(mode):
    gen = torch.Generator().manual_seed(5)
    xyz = torch.rand(2, 30, 3, generator=gen) + 0.1
    probs = torch.softmax(torch.randn(2, 5, 30, generator=gen) * 3, dim=1)
    nb = xyz_knn(xyz, 12, mode=mode)
    expected = naive_uncertainty(probs, xyz, nb)
    for reference_nan in (False, True):  # no degenerate case here: both agree
        u = neighbourhood_uncertainty(probs, xyz, nb, reference_nan=reference_nan)
        assert torch.allclose(u.double(), expected, atol=1e-5)


def test_nan_guard_point_at_origin():
    xyz = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0]]])
    nb = torch.tensor([[[0, 1, 2], [1, 0, 2], [2, 1, 0]]])
    w = neighbour_weights(xyz, nb)
    # Centre at the origin: every cosine is 0/eps = 0, all equal -> uniform weights.
    assert torch.allclose(w[0, 0], torch.full((3,), 1 / 3))
    # Point 1: cosines 1 (self), 0 (origin), 0 (at right angles) -> 1, 0.5, 0.5 -> 1/2, 1/4, 1/4.
    assert torch.allclose(w[0, 1], torch.tensor([0.5, 0.25, 0.25]))
    raw = neighbour_weights(xyz, nb, reference_nan=True)
    assert torch.isnan(raw[0]).all()  # a NaN cosine makes the min and max NaN for every point
    probs = torch.softmax(torch.randn(1, 4, 3), dim=1)
    assert torch.isfinite(neighbourhood_uncertainty(probs, xyz, nb)).all()
    assert torch.isnan(neighbourhood_uncertainty(probs, xyz, nb, reference_nan=True)).all()


def test_nan_guard_equal_cosines_from_duplicates():
    xyz = torch.tensor([[[0.4, 0.3, 0.2]] * 3 + [[0.9, 0.1, 0.5]]])
    nb = torch.tensor([[[0, 1, 2], [1, 2, 0], [2, 0, 1], [3, 0, 1]]])
    w = neighbour_weights(xyz, nb)
    assert torch.allclose(w[0, :3], torch.full((3, 3), 1 / 3))  # max - min = 0 -> uniform
    raw = neighbour_weights(xyz, nb, reference_nan=True)
    assert torch.isnan(raw[0, :3]).all() and torch.isfinite(raw[0, 3]).all()


def test_nan_uncertainty_counts_as_certain():
    # A NaN U compares False with the threshold: the old label stays and the point offers its label.
    labels = torch.tensor([[0, 0]])
    out = propagate_labels(torch.tensor([[1, IGN]]), labels, torch.tensor([[1, 0]]),
                           torch.tensor([[float("nan"), 0.0]]), torch.tensor([[[0, 1], [1, 0]]]),
                           num_old=3, threshold=0.0065, label_map=propagated_label_map(3))
    assert out.tolist() == [[1, 1]]

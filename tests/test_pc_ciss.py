"""The 3DPC-CISS method's functions (css.pointcloud.ciss, docs/pointcloud-ciss.md).

Expectations are worked out by hand (in the comments) or by the naive re-implementations below,
which follow docs/pointcloud-ciss.md literally, one point at a time.
"""

import math

import pytest
import torch

from css.nn import SegOutput
from css.pointcloud.ciss import (
    PROTOCOL_FLAGS,
    THRESHOLDS,
    CISSOptions,
    batch_xyz,
    ciss_cross_entropy,
    ciss_losses,
    gft_loss,
    mixed_labels,
    neighbour_weights,
    neighbourhood_uncertainty,
    propagate_labels,
    propagated_label_map,
    pseudo_labels,
    relation_vectors,
    xyz_knn,
)

IGN = 255


def x_axis(*blocks):
    return torch.tensor([[[v, 0.0, 0.0] for v in block] for block in blocks])


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


def published_propagation(labels, old_pred, u, neighbours, num_old, tau):
    """The published algorithm in ITS OWN layout (new model without background, index = css - 1),
    then mapped to css channels (+1, -1 -> 255). No ground-truth ignore (the published labels have
    none)."""
    lab, pred = labels.reshape(-1).tolist(), old_pred.reshape(-1).tolist()
    unc = [x > tau for x in u.reshape(-1).tolist()]
    nb = neighbours.reshape(-1, neighbours.shape[-1]).tolist()
    # Mixed labels: novel l (1-based) -> n_base + l - 1 with n_base = num_old - 1; else argmax - 1.
    y = [(num_old - 1 + (g - num_old + 1) - 1) if g >= num_old else pred[i] - 1 for i, g in enumerate(lab)]
    offer = [-1 if unc[i] else pred[i] for i in range(len(lab))]  # old index, unchanged
    for j in range(1, len(nb[0])):
        if j > 1 and -1 not in y:
            break
        y = [offer[nb[i][j]] if (y[i] == -1 or (j == 1 and unc[i])) else y[i] for i in range(len(y))]
    return torch.tensor([v + 1 if v >= 0 else IGN for v in y]).view_as(labels)


def fixed_propagation(labels, old_pred, u, neighbours, num_old, tau, keep_background=False):
    """docs/pointcloud-ciss.md#mixed-labels and #propagation under protocol fixed, point by point."""
    lab, pred = labels.reshape(-1).tolist(), old_pred.reshape(-1).tolist()
    unc = [x > tau for x in u.reshape(-1).tolist()]
    nb = neighbours.reshape(-1, neighbours.shape[-1]).tolist()
    bg = 0 if keep_background else IGN

    def conv(c):
        return bg if c == 0 else c

    y = [g if (g == IGN or g >= num_old) else conv(pred[i]) for i, g in enumerate(lab)]
    offer = [IGN if unc[i] else conv(pred[i]) for i in range(len(lab))]
    for j in range(1, len(nb[0])):
        new = []
        for i, v in enumerate(y):
            if lab[i] == IGN:
                new.append(v)
            elif v == IGN or (j == 1 and unc[i] and lab[i] < num_old):
                new.append(offer[nb[i][j]])
            else:
                new.append(v)
        y = new
    return torch.tensor(y).view_as(labels)


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


# ------------------------------------------------------------------------------ label spaces

# The worked example of docs/pointcloud-ciss.md#label-spaces: old [bg, A, B, C], novel D = 4.
EX_LABELS = torch.tensor([[4, 0, 0, 0, 4]])
EX_PRED = torch.tensor([[3, 0, 1, 2, 1]])
EX_U = torch.tensor([[0.0, 0.0, 0.0, 0.1, 0.1]])
EX_NB = torch.tensor([[[0, 2, 1], [1, 2, 0], [2, 0, 1], [3, 4, 0], [4, 3, 2]]])


def test_label_maps():
    assert propagated_label_map(4).tolist() == [IGN, 1, 2, 3]
    assert propagated_label_map(4, keep_background=True).tolist() == [0, 1, 2, 3]
    assert propagated_label_map(4, reference_offset=True).tolist() == [1, 2, 3, 4]
    assert propagated_label_map(4, reference_offset=True, reference_unannotated=True).tolist() == [IGN, 2, 3, 4]


def test_mixed_labels_worked_example():
    mixed = mixed_labels(EX_LABELS, EX_PRED, num_old=4)
    assert mixed.tolist() == [[4, IGN, 1, 2, 4]]
    assert mixed_labels(EX_LABELS, EX_PRED, num_old=4, keep_background=True).tolist() == [[4, 0, 1, 2, 4]]
    # Ignored ground truth stays ignored whatever the old model says.
    assert mixed_labels(torch.tensor([[IGN, 0]]), torch.tensor([[2, 2]]), num_old=4).tolist() == [[IGN, 2]]


def test_propagation_worked_example_fixed():
    mixed = mixed_labels(EX_LABELS, EX_PRED, num_old=4)
    out = propagate_labels(mixed, EX_LABELS, EX_PRED, EX_U, EX_NB, num_old=4, threshold=0.0065,
                           label_map=propagated_label_map(4))
    assert out.tolist() == [[4, 1, 1, 3, 4]]  # D, A, A, C, D


def test_propagation_worked_example_reference():
    mixed = mixed_labels(EX_LABELS, EX_PRED, num_old=4)
    out = propagate_labels(mixed, EX_LABELS, EX_PRED, EX_U, EX_NB, num_old=4, threshold=0.0065,
                           label_map=propagated_label_map(4, reference_offset=True), overwrite_novel=True)
    assert out.tolist() == [[4, 2, 1, 4, 2]]  # D, B, A, D, B
    # The published code in its own layout gives [3, 1, 0, 3, 1], i.e. the same classes.
    assert published_propagation(EX_LABELS, EX_PRED, EX_U, EX_NB, 4, 0.0065).tolist() == [[4, 2, 1, 4, 2]]


def test_ground_truth_ignore_never_changes():
    labels = torch.tensor([[IGN, 0, 4]])
    pred = torch.tensor([[1, 2, 2]])
    u = torch.tensor([[1.0, 1.0, 1.0]])  # everything uncertain
    nb = torch.tensor([[[0, 1, 2], [1, 0, 2], [2, 1, 0]]])
    for ref in (False, True):
        out = propagate_labels(mixed_labels(labels, pred, num_old=4), labels, pred, u, nb, num_old=4,
                               threshold=0.0065, label_map=propagated_label_map(4, reference_offset=ref),
                               overwrite_novel=ref)
        assert out[0, 0] == IGN
        assert out[0, 2] == (IGN if ref else 4)


@pytest.mark.parametrize("seed", range(4))
def test_propagation_matches_naive_versions(seed):
    gen = torch.Generator().manual_seed(seed)
    b, n, num_old, k = 2, 25, 5, 6
    labels = torch.where(torch.rand(b, n, generator=gen) < 0.3, torch.randint(5, 7, (b, n), generator=gen), 0)
    pred = torch.randint(0, num_old, (b, n), generator=gen)
    u = torch.rand(b, n, generator=gen) * 0.02
    nb = xyz_knn(torch.rand(b, n, 3, generator=gen), k, mode="pooled" if seed % 2 else "per_block")
    tau = 0.01
    ref = propagate_labels(mixed_labels(labels, pred, num_old=num_old), labels, pred, u, nb, num_old=num_old,
                           threshold=tau, label_map=propagated_label_map(num_old, reference_offset=True),
                           overwrite_novel=True)
    assert torch.equal(ref, published_propagation(labels, pred, u, nb, num_old, tau))
    with_ignore = torch.where(torch.rand(b, n, generator=gen) < 0.1, IGN, labels)
    for keep in (False, True):
        fixed = propagate_labels(mixed_labels(with_ignore, pred, num_old=num_old, keep_background=keep),
                                 with_ignore, pred, u, nb, num_old=num_old, threshold=tau,
                                 label_map=propagated_label_map(num_old, keep_background=keep))
        assert torch.equal(fixed, fixed_propagation(with_ignore, pred, u, nb, num_old, tau, keep))


def confident_logits(pred, channels, margin=20.0):
    """(B, C, N) logits whose softmax is (almost) one-hot at ``pred``."""
    return torch.nn.functional.one_hot(pred, channels).movedim(-1, 1).float() * margin


def test_pseudo_labels_end_to_end():
    # Six points on a line; the old model says class 1 everywhere except bg at point 2; point 5
    # is novel (channel 3, num_old 3). K = 3.
    xyz = x_axis([1, 2, 3, 4, 5, 6]) + torch.tensor([0.0, 1.0, 1.0])
    pred = torch.tensor([[1, 1, 0, 1, 1, 1]])
    labels = torch.tensor([[0, 0, 0, 0, 0, 3]])
    old = confident_logits(pred, 3)
    # Nobody uncertain: fixed fills point 2 from its nearest other point (class 1); the reference
    # writes the shifted 2; the novel point keeps its label.
    for protocol, expected in (("fixed", [1, 1, 1, 1, 1, 3]), ("reference", [1, 1, 2, 1, 1, 3])):
        opts = CISSOptions.for_protocol(protocol, "s3dis", k=3, threshold=1.0)
        pl = pseudo_labels(labels, old, xyz, num_old=3, options=opts)
        assert pl.labels.tolist() == [expected], protocol
        assert pl.mixed.tolist() == [[1, 1, IGN, 1, 1, 3]]
        assert pl.old_pred.tolist() == pred.tolist()
    # Everybody uncertain: every offer is ignore. Fixed keeps only the novel ground truth; the
    # reference overwrites it too.
    for protocol, expected in (("fixed", [IGN] * 5 + [3]), ("reference", [IGN] * 6)):
        opts = CISSOptions.for_protocol(protocol, "s3dis", k=3, threshold=-1.0)
        assert pseudo_labels(labels, old, xyz, num_old=3, options=opts).labels.tolist() == [expected]


def test_uncertainty_of_a_consistent_neighbourhood_is_low():
    gen = torch.Generator().manual_seed(2)
    xyz = torch.rand(1, 64, 3, generator=gen) + 0.5
    same = pseudo_labels(torch.zeros(1, 64, dtype=torch.long), confident_logits(torch.ones(1, 64, dtype=torch.long), 4),
                         xyz, num_old=4).uncertainty
    mixed_pred = torch.randint(1, 4, (1, 64), generator=gen)
    noisy = pseudo_labels(torch.zeros(1, 64, dtype=torch.long), confident_logits(mixed_pred, 4),
                          xyz, num_old=4).uncertainty
    assert same.max() < THRESHOLDS["scannet"] < noisy.median()


# ------------------------------------------------------------------------------ GFT


def gft_case():
    # x = 0, 1, 5, 6, 10, 2. FPS from index 0 -> the farthest is x=10 (index 4): centres [0, 4].
    # Groups (K = 2, self first): centre 0 -> {0, 1} (x=1 nearer than x=2), centre 4 -> {4, 3}.
    xyz = x_axis([0, 1, 5, 6, 10, 2])
    new = torch.tensor([[0, 2, 7, 1, 3, 7], [0, 4, 7, 1, 0, 7]], dtype=torch.float32).unsqueeze(0)
    old = torch.tensor([[0, 0, 7, 1, 1, 7], [0, 2, 7, 3, 1, 7]], dtype=torch.float32).unsqueeze(0)
    return xyz, new, old


def test_relation_vectors_by_hand():
    xyz, new, _ = gft_case()
    r = relation_vectors(new, xyz, torch.tensor([[0, 4]]), torch.tensor([[[0, 1], [4, 3]]]))
    # Centre 0: mean of (0, f0 - f0) and (x1 - x0 = 1, f1 - f0 = (2, 4)) -> (0.5, 0, 0, 1, 2).
    # Centre 4: mean of 0 and (6 - 10 = -4, f3 - f4 = (-2, 1)) -> (-2, 0, 0, -1, 0.5).
    assert r.tolist() == [[[0.5, 0, 0, 1, 2], [-2, 0, 0, -1, 0.5]]]


def test_gft_loss_by_hand():
    xyz, new, old = gft_case()
    new.requires_grad_(True)
    old.requires_grad_(True)
    loss = gft_loss(new, old, xyz, centres=2, k=2)
    # Relation differences: centre 0 (1, 2) - (0, 1) = (1, 1); centre 4 (-1, 0.5) - (0, 1) =
    # (-1, -0.5); coordinates cancel. Sum of squares 3.25 over B * m * (3 + 2) = 10 entries.
    assert loss.item() == pytest.approx(0.325)
    loss.backward()
    # dL/dR = 2 (R_new - R_old) / 10, and R_c = (f_j - f_c) / 2 for the one other group member.
    expected = torch.tensor([[-0.1, 0.1, 0, -0.1, 0.1, 0], [-0.1, 0.1, 0, -0.05, 0.05, 0]])
    assert torch.allclose(new.grad[0], expected)
    assert old.grad is None


def test_gft_loss_batched_blocks_use_their_own_points():
    xyz, new, old = gft_case()
    # Block 1: the same points shifted, models swapped: the same loss, 0.325 on average.
    xyz2 = torch.cat([xyz, xyz + 100.0])
    loss = gft_loss(torch.cat([new, old]), torch.cat([old, new]), xyz2, centres=2, k=2)
    assert loss.item() == pytest.approx(0.325)


def test_gft_default_centres_and_identical_models():
    gen = torch.Generator().manual_seed(0)
    xyz = torch.rand(2, 64, 3, generator=gen)
    f = torch.randn(2, 8, 64, generator=gen)
    assert gft_loss(f, f.clone(), xyz).item() == 0.0
    with pytest.raises(ValueError, match="features"):
        gft_loss(f, f[:, :4], xyz)


# ------------------------------------------------------------------------------ loss and wiring


def test_cross_entropy_by_hand():
    logits = torch.tensor([[[5.0, 0.0], [1.0, 0.0], [0.0, 0.0]]], requires_grad=True)  # (1, 3, 2)
    labels = torch.tensor([[1, IGN]])
    # Background channel left out: -log(e^1 / (e^1 + e^0)) = log(1 + e^-1), mean over 1 labelled point.
    assert ciss_cross_entropy(logits, labels).item() == pytest.approx(math.log(1 + math.exp(-1)))
    full = -math.log(math.exp(1) / (math.exp(5) + math.exp(1) + 1))
    assert ciss_cross_entropy(logits, labels, keep_background=True).item() == pytest.approx(full, rel=1e-6)
    with pytest.raises(ValueError, match="background"):
        ciss_cross_entropy(logits, torch.tensor([[0, 1]]))
    nothing = ciss_cross_entropy(logits, torch.full((1, 2), IGN))
    nothing.backward()
    assert nothing.item() == 0.0 and logits.grad is not None


def test_options_for_protocol():
    fixed = CISSOptions.for_protocol("fixed", "scannet")
    assert (fixed.neighbour_mode, fixed.reference_offset, fixed.overwrite_novel, fixed.reference_nan) == \
        ("per_block", False, False, False)
    assert fixed.threshold == 0.0045 and not fixed.reference_unannotated
    ref = CISSOptions.for_protocol("reference", "scannet")
    assert (ref.neighbour_mode, ref.reference_offset, ref.overwrite_novel, ref.reference_nan) == \
        ("pooled", True, True, True)
    assert ref.reference_unannotated
    assert CISSOptions.for_protocol("reference", "s3dis").threshold == 0.0065
    assert not CISSOptions.for_protocol("reference", "s3dis").reference_unannotated
    assert CISSOptions.for_protocol("fixed", "synthetic").threshold == 0.0065
    assert CISSOptions.for_protocol("reference", "s3dis", neighbour_mode="per_block").neighbour_mode == "per_block"
    assert set(PROTOCOL_FLAGS) == {"fixed", "reference"}
    with pytest.raises(ValueError):
        CISSOptions.for_protocol("paper")
    with pytest.raises(ValueError):
        CISSOptions(neighbour_mode="global")
    with pytest.raises(ValueError):
        CISSOptions(reference_offset=True, keep_background=True)


def test_ciss_losses_with_dgcnn():
    from css.pointcloud.models import build_model

    torch.manual_seed(0)
    old_model = build_model([4], k=8).eval().mc_dropout(True)
    new_model = build_model([4, 2], k=8).train()
    inputs = torch.rand(2, 9, 48)
    xyz = batch_xyz(inputs)
    assert xyz.shape == (2, 48, 3) and torch.equal(xyz[0, 5], inputs[0, :3, 5])
    labels = torch.where(torch.rand(2, 48) < 0.3, torch.randint(4, 6, (2, 48)), 0)
    with torch.no_grad():
        old = old_model(inputs)
    new = new_model(inputs)
    results = {}
    for protocol in ("reference", "fixed"):
        opts = CISSOptions.for_protocol(protocol, "s3dis", threshold=1.0)
        ce, gft, pl = ciss_losses(new, old, labels, xyz, num_old=4, options=opts)
        assert ce.dim() == 0 and gft.dim() == 0 and torch.isfinite(ce) and gft.item() > 0
        assert ((pl.labels == IGN) | (pl.labels >= 1)).all() and (pl.labels[labels >= 4] == labels[labels >= 4]).all()
        assert pl.neighbours.shape == (2, 48, 12)
        results[protocol] = ce, gft
    ce, gft = results["fixed"]
    new_model.zero_grad()
    (ce + gft).backward()
    assert all(p.grad is not None for p in new_model.encoder.parameters())
    # Without the relation loss the only term is the CE.
    no_gft = CISSOptions(threshold=1.0, gft_weight=0.0)
    ce2, gft2, _ = ciss_losses(SegOutput(new.logits, new.logits, new.features), old, labels, xyz, num_old=4,
                               options=no_gft)
    assert gft2.item() == 0.0 and ce2.item() == pytest.approx(ce.item())


def test_inputs_not_modified():
    labels = EX_LABELS.clone()
    mixed = mixed_labels(labels, EX_PRED, num_old=4)
    before = mixed.clone()
    propagate_labels(mixed, labels, EX_PRED, EX_U, EX_NB, num_old=4, threshold=0.0065,
                     label_map=propagated_label_map(4))
    assert torch.equal(mixed, before) and torch.equal(labels, EX_LABELS)

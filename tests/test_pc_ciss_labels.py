"""The 3DPC-CISS label spaces, label propagation and pseudo-labels (css.pointcloud.ciss,
docs/pointcloud-ciss.md#label-spaces).

Expectations are worked out by hand (in the comments), on the worked example of the docs, or by
the naive re-implementations below, which follow docs/pointcloud-ciss.md literally, one point at a
time.
"""

import pytest
import torch

from css.pointcloud.ciss import (
    THRESHOLDS,
    CISSOptions,
    mixed_labels,
    propagate_labels,
    propagated_label_map,
    pseudo_labels,
    xyz_knn,
)

from _pc_ciss import EX_LABELS, EX_NB, EX_PRED, EX_U, IGN, x_axis


# ------------------------------------------------------------------------------ naive versions


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


# ------------------------------------------------------------------------------ label spaces


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

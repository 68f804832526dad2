"""The 3DPC-CISS geometric feature transfer, cross-entropy and losses with DGCNN (css.pointcloud.ciss,
docs/pointcloud-ciss.md); expectations are worked out by hand (in the comments).
"""

import math

import pytest
import torch

from css.nn import SegOutput
from css.pointcloud.ciss import (
    PROTOCOL_FLAGS,
    CISSOptions,
    batch_xyz,
    ciss_cross_entropy,
    ciss_losses,
    gft_loss,
    mixed_labels,
    propagate_labels,
    propagated_label_map,
    relation_vectors,
)

from _pc_ciss import EX_LABELS, EX_NB, EX_PRED, EX_U, IGN, x_axis


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

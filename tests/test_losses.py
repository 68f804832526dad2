"""Classification and distillation losses of css.losses (docs/protocol-2d-losses.md#losses)."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from css.losses import (
    bce_with_ignore,
    cross_entropy,
    feature_mse,
    icarl_distillation,
    kd,
    lgkd,
    unbiased_ce,
    unbiased_kd,
)

LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Reference: a literal, boolean-mask transcription of docs/protocol-2d-losses.md#lgkd steps 1-5.
# --------------------------------------------------------------------------------------------
def reference_lgkd(new_logits, old_logits, labels, prev_weight, novel_weight, alpha=1.0, ignore_index=255):
    num_old, num_cur = old_logits.shape[1], new_logits.shape[1]
    targets = labels.clone()
    targets[targets < num_old] = 0  # step 1
    new_flat = new_logits.movedim(1, -1).reshape(-1, num_cur)  # step 2
    old_flat = old_logits.movedim(1, -1).reshape(-1, num_old)
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    new_flat, old_flat, targets = new_flat[keep], old_flat[keep], targets[keep]
    new_cl = num_cur - num_old  # step 3
    old_flat = old_flat * alpha
    novel = targets >= num_old  # step 4
    prev = targets < num_old

    q = torch.softmax(old_flat[novel], dim=1)  # step 5
    q = torch.cat([q, q.new_zeros(len(q), new_cl)], dim=1)
    rows = torch.arange(len(q))
    q[rows, targets[novel]] = q[:, 0].clone()
    q[:, 0] = 0
    log_p = new_flat[novel] - torch.logsumexp(new_flat[novel], dim=1, keepdim=True)
    loss_novel = (q * log_p).sum(dim=1)

    q_prev = torch.softmax(old_flat[prev], dim=1)  # step 6
    log_p_prev = new_flat[prev] - torch.logsumexp(new_flat[prev], dim=1, keepdim=True)
    loss_prev = (q_prev * log_p_prev[:, :num_old]).sum(dim=1)

    return -torch.cat([prev_weight * loss_prev, novel_weight * loss_novel]).mean()  # step 7


def random_case(batch, num_cur, num_old, spatial, *, seed, dtype=torch.float32):
    """Random logits and labels holding bg, old-class, novel and ignored (255) elements."""
    gen = torch.Generator().manual_seed(seed)
    new = torch.randn(batch, num_cur, *spatial, generator=gen, dtype=dtype) * 2
    old = torch.randn(batch, num_old, *spatial, generator=gen, dtype=dtype) * 2
    labels = torch.randint(0, num_cur, (batch, *spatial), generator=gen)
    labels[torch.rand(batch, *spatial, generator=gen) < 0.2] = 255
    return new, old, labels


# --------------------------------------------------------------------------------------------
# The worked example of docs/protocol-2d-losses.md#worked-example: one image of 2x2 pixels, C_old = 3, C_cur = 5.
# --------------------------------------------------------------------------------------------
OLD_PIXELS = [[2, 0.5, -1], [1, 0, 0.3], [0.2, 0.1, 0], [3, -2, 0.5]]
NEW_PIXELS = [[1.5, 0.4, -0.5, 0.1, -1], [0.3, 0.2, 0.1, 1.2, -0.3], [0, 0, 0, 0, 0], [0.9, -1, 0.2, 0, 0.7]]
LABEL_PIXELS = [0, 3, 255, 4]


def worked_example(layout):
    """The example's tensors as (1, C, 2, 2) images or as (1, C, 4) point clouds."""
    old = torch.tensor(OLD_PIXELS).T.unsqueeze(0)  # (1, C, 4), pixels in (y, x) order
    new = torch.tensor(NEW_PIXELS).T.unsqueeze(0)
    labels = torch.tensor([LABEL_PIXELS])
    if layout == "image":
        return new.reshape(1, 5, 2, 2), old.reshape(1, 3, 2, 2), labels.reshape(1, 2, 2)
    return new, old, labels


@pytest.mark.parametrize("layout", ["image", "points"])
def test_worked_example(layout):
    new, old, labels = worked_example(layout)
    assert torch.isclose(lgkd(new, old, labels, prev_weight=5, novel_weight=1), torch.tensor(2.308296), atol=1e-6)
    assert torch.isclose(kd(new, old), torch.tensor(0.282634), atol=1e-6)
    assert torch.isclose(unbiased_kd(new, old), torch.tensor(0.274918), atol=1e-6)
    assert torch.isclose(
        reference_lgkd(new, old, labels, prev_weight=5, novel_weight=1), torch.tensor(2.308296), atol=1e-6
    )


def test_worked_example_layouts_agree():
    image = worked_example("image")
    points = worked_example("points")
    for fn in (lambda n, o, l: lgkd(n, o, l, prev_weight=5, novel_weight=1), lambda n, o, l: kd(n, o)):
        assert fn(*image).item() == pytest.approx(fn(*points).item(), abs=1e-7)


# --------------------------------------------------------------------------------------------
# LGKD against the boolean-mask reference.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "num_old,num_cur,spatial,alpha,prev_weight,novel_weight",
    [
        (3, 5, (4, 6), 1.0, 5.0, 1.0),
        (16, 17, (5, 5), 1.0, 1.0, 0.0),  # VOC 15-1: novel_weight 0 still counts novel elements
        (2, 7, (33,), 0.5, 2.0, 10.0),  # point cloud layout, alpha != 1
        (4, 4, (3, 3), 2.0, 1.0, 1.0),  # no class added: every element is prev
        (1, 3, (2, 2, 3), 1.0, 1.0, 20.0),  # C_old = 1 and three spatial dims
    ],
)
def test_lgkd_matches_boolean_mask_reference(num_old, num_cur, spatial, alpha, prev_weight, novel_weight):
    for seed in range(3):
        new, old, labels = random_case(2, num_cur, num_old, spatial, seed=seed)
        new_ref = new.clone().requires_grad_(True)
        new.requires_grad_(True)
        ours = lgkd(new, old, labels, prev_weight=prev_weight, novel_weight=novel_weight, alpha=alpha)
        ref = reference_lgkd(new_ref, old, labels, prev_weight, novel_weight, alpha)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        ours.backward()
        ref.backward()
        torch.testing.assert_close(new.grad, new_ref.grad, rtol=1e-5, atol=1e-7)


def test_lgkd_does_not_modify_labels():
    new, old, labels = random_case(2, 5, 3, (4, 4), seed=0)
    before = labels.clone()
    lgkd(new, old, labels, prev_weight=1, novel_weight=1)
    assert torch.equal(labels, before)


def test_lgkd_old_class_labels_collapse_to_background():
    # docs/protocol-2d-losses.md#lgkd step 1: any label < C_old is treated as bg.
    new, old, labels = random_case(2, 6, 4, (5,), seed=1)
    labels[:, 0], labels[:, 1] = 2, 0
    collapsed = torch.where(labels < 4, torch.zeros_like(labels), labels)
    a = lgkd(new, old, labels, prev_weight=3, novel_weight=1)
    b = lgkd(new, old, collapsed, prev_weight=3, novel_weight=1)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_lgkd_all_ignored_returns_zero_and_backpropagates():
    new = torch.randn(2, 5, 3, 3, requires_grad=True)
    old = torch.randn(2, 3, 3, 3)
    labels = torch.full((2, 3, 3), 255)
    loss = lgkd(new, old, labels, prev_weight=5, novel_weight=1)
    assert loss.item() == 0.0 and loss.dtype == torch.float32
    loss.backward()
    assert torch.equal(new.grad, torch.zeros_like(new))


def test_lgkd_custom_ignore_index():
    new, old, labels = random_case(1, 5, 3, (3, 4), seed=4)
    relabelled = torch.where(labels == 255, torch.full_like(labels, -1), labels)
    a = lgkd(new, old, labels, prev_weight=2, novel_weight=1)
    b = lgkd(new, old, relabelled, prev_weight=2, novel_weight=1, ignore_index=-1)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


# --------------------------------------------------------------------------------------------
# Hand-computed values.
# --------------------------------------------------------------------------------------------
def test_cross_entropy_mean_includes_ignored_elements():
    # Elements: [0, 0] label 0 -> ln 2; [ln 3, 0] label 1 -> -ln(1/4) = 2 ln 2; label 255 -> 0.
    logits = torch.tensor([[[0.0, math.log(3.0), 5.0], [0.0, 0.0, 1.0]]])  # (1, 2, 3)
    labels = torch.tensor([[0, 1, 255]])
    assert cross_entropy(logits, labels).item() == pytest.approx(3 * LN2 / 3)


def test_cross_entropy_per_image_weight():
    logits = torch.tensor([[[0.0, math.log(3.0), 5.0], [0.0, 0.0, 1.0]]]).repeat(2, 1, 1).reshape(2, 2, 3, 1)
    labels = torch.tensor([[0, 1, 255]]).repeat(2, 1).reshape(2, 3, 1)
    # Image 1 weighted 0: its elements still count in the mean over 6 elements.
    loss = cross_entropy(logits, labels, element_weight=torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(3 * LN2 / 6)
    # An element-wise weight of the labels' shape works too.
    element = torch.tensor([[[2.0], [0.0], [7.0]], [[0.0], [1.0], [1.0]]])
    assert cross_entropy(logits, labels, element_weight=element).item() == pytest.approx((2 * LN2 + 2 * LN2) / 6)


def test_unbiased_ce_hand_values():
    # logits [0, ln 2, ln 5]: lse = ln 8; bg absorbs class 1: ln 3 - ln 8; class 2: ln 5 - ln 8.
    z = torch.tensor([0.0, math.log(2.0), math.log(5.0)])
    logits = z.reshape(1, 3, 1).repeat(1, 1, 4)
    labels = torch.tensor([[1, 2, 255, 0]])
    expected = (2 * math.log(8 / 3) + math.log(8 / 5)) / 4
    assert unbiased_ce(logits, labels, num_old=2).item() == pytest.approx(expected, rel=1e-6)


def test_unbiased_ce_without_old_classes_is_cross_entropy():
    new, _, labels = random_case(2, 4, 1, (3, 3), seed=2)
    assert unbiased_ce(new, labels, num_old=0).item() == pytest.approx(cross_entropy(new, labels).item())
    # num_old = 1: only bg is old, so nothing is absorbed.
    assert unbiased_ce(new, labels, num_old=1).item() == pytest.approx(cross_entropy(new, labels).item(), rel=1e-6)


def test_bce_with_ignore_hand_values():
    # [0, 0] label 1: ln 2 + ln 2; [0, ln 3] label 0: ln 2 + ln 4; third element ignored.
    logits = torch.tensor([[[0.0, 0.0, 3.0], [0.0, math.log(3.0), -2.0]]])
    labels = torch.tensor([[1, 0, 255]])
    assert bce_with_ignore(logits, labels).item() == pytest.approx(5 * LN2 / 3, rel=1e-6)


def test_kd_hand_values():
    # C_old = 2, q = [1/2, 1/2], log p over the first two new channels = [ln 1/4, ln 3/4].
    new = torch.tensor([0.0, math.log(3.0), 99.0]).reshape(1, 3, 1)
    old = torch.zeros(1, 2, 1)
    assert kd(new, old).item() == pytest.approx(math.log(16 / 3) / 4, rel=1e-6)
    # alpha = 2: q = softmax([0, 2 ln 2]) = [1/5, 4/5].
    old = torch.tensor([0.0, LN2]).reshape(1, 2, 1)
    expected = -(0.2 * math.log(0.25) + 0.8 * math.log(0.75)) / 2
    assert kd(new, old, alpha=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_unbiased_kd_hand_values():
    # new [0, ln 2, ln 3], C_old = 2: log p_bg = ln(1 + 3) - ln 6, log p_1 = ln 2 - ln 6.
    new = torch.tensor([0.0, LN2, math.log(3.0)]).reshape(1, 3, 1)
    old = torch.zeros(1, 2, 1)
    assert unbiased_kd(new, old).item() == pytest.approx(math.log(9 / 2) / 4, rel=1e-6)


def test_unbiased_kd_without_new_classes():
    # The reference crashes here (docs/protocol-2d-losses.md#unkd); with nothing to absorb it equals KD.
    new = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1)
    assert unbiased_kd(new, torch.zeros(1, 2, 1)).item() == pytest.approx(math.log(16 / 3) / 4, rel=1e-6)
    new, old, _ = random_case(2, 4, 4, (3, 5), seed=3)
    assert unbiased_kd(new, old, alpha=0.7).item() == pytest.approx(kd(new, old, alpha=0.7).item(), rel=1e-6)


def test_icarl_distillation_hand_values():
    # targets sigmoid([0, ln 3]) = [1/2, 3/4]; BCE(0, t) = ln 2 for any t; channel 2 is new.
    new = torch.tensor([0.0, 0.0, 7.0]).reshape(1, 3, 1, 1)
    old = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)
    assert icarl_distillation(new, old).item() == pytest.approx(LN2, rel=1e-6)


def test_feature_mse():
    new = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    old = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    assert feature_mse(new, old).item() == pytest.approx((4 + 9) / 4)
    with pytest.raises(ValueError, match="same shape"):
        feature_mse(new, old[:1])


# --------------------------------------------------------------------------------------------
# Gradients (float64), precision, validation.
# --------------------------------------------------------------------------------------------
GRADCHECK_CASES = {
    "lgkd": lambda z, old, labels: lgkd(z, old, labels, prev_weight=3.0, novel_weight=0.5, alpha=1.5),
    "kd": lambda z, old, labels: kd(z, old, alpha=0.5),
    "unbiased_kd": lambda z, old, labels: unbiased_kd(z, old, alpha=2.0),
    "unbiased_kd no new class": lambda z, old, labels: unbiased_kd(z[:, :3], old),
    "unbiased_ce": lambda z, old, labels: unbiased_ce(z, labels, num_old=3),
    "cross_entropy": lambda z, old, labels: cross_entropy(z, labels, element_weight=z.new_tensor([0.5, 2.0])),
    "bce_with_ignore": lambda z, old, labels: bce_with_ignore(z, labels),
    "icarl_distillation": lambda z, old, labels: icarl_distillation(z, old),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_gradcheck_float64(name):
    new, old, labels = random_case(2, 5, 3, (2, 3), seed=5, dtype=torch.float64)
    new.requires_grad_(True)
    fn = GRADCHECK_CASES[name]
    assert fn(new, old, labels).dtype == torch.float64
    assert gradcheck(lambda z: fn(z, old, labels), (new,), eps=1e-6, atol=1e-5)


def test_gradcheck_lgkd_points_with_ignored():
    new, old, labels = random_case(3, 6, 2, (7,), seed=6, dtype=torch.float64)
    new.requires_grad_(True)
    assert gradcheck(lambda z: lgkd(z, old, labels, prev_weight=1.0, novel_weight=4.0), (new,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(dtype):
    new, old, labels = random_case(2, 5, 3, (4, 4), seed=7)
    low_new, low_old = new.to(dtype).requires_grad_(True), old.to(dtype)
    cases = {
        "lgkd": lambda n, o: lgkd(n, o, labels, prev_weight=5, novel_weight=1),
        "kd": lambda n, o: kd(n, o),
        "unbiased_kd": lambda n, o: unbiased_kd(n, o),
        "cross_entropy": lambda n, o: cross_entropy(n, labels),
        "unbiased_ce": lambda n, o: unbiased_ce(n, labels, num_old=3),
        "bce_with_ignore": lambda n, o: bce_with_ignore(n, labels),
        "icarl_distillation": lambda n, o: icarl_distillation(n, o),
    }
    for name, fn in cases.items():
        low = fn(low_new, low_old)
        assert low.dtype == torch.float32 and torch.isfinite(low), name
        # Computed in float32: equal to fp32 on the rounded inputs, close to fp32 on the originals.
        assert low.item() == pytest.approx(fn(low_new.float(), low_old.float()).item(), rel=1e-5), name
        assert low.item() == pytest.approx(fn(new, old).item(), rel=3e-2, abs=1e-3), name
    low_new.grad = None
    lgkd(low_new, low_old, labels, prev_weight=5, novel_weight=1).backward()
    assert low_new.grad.dtype == dtype and torch.isfinite(low_new.grad.float()).all()


def test_shape_validation():
    new, old, labels = random_case(2, 5, 3, (4, 4), seed=8)
    with pytest.raises(ValueError, match="labels must have shape"):
        lgkd(new, old, labels[:, :3], prev_weight=1, novel_weight=1)
    with pytest.raises(ValueError, match="C_old <= C_cur"):
        kd(old, new)
    with pytest.raises(ValueError, match="integer"):
        cross_entropy(new, labels.float())
    with pytest.raises(ValueError, match="num_old"):
        unbiased_ce(new, labels, num_old=6)

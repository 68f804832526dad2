"""Local POD of css.losses (docs/protocol-2d-losses.md#local-pod)."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from css.losses import local_pod


def pod(old, new, **kwargs):
    """local_pod of one map pair, factor 1, no schedule unless given."""
    options = {"factors": [1.0], "num_current": 1, "num_new": 1, "schedule": False} | kwargs
    return local_pod([old], [new], **options)


def literal_embedding(x, scales):
    """docs/protocol-2d-losses.md#local-pod step 3 transcribed with loops: k = W // s for both axes, tile by tile."""
    width = x.shape[-1]
    parts = []
    for s in scales:
        k = width // s
        for i in range(s):
            for j in range(s):
                tile = x[..., i * k : (i + 1) * k, j * k : (j + 1) * k]
                parts.append(tile.mean(dim=3).flatten(1))
                parts.append(tile.mean(dim=2).flatten(1))
    return torch.cat(parts, dim=1)


def literal_pod_layer(old, new, scales):
    """One layer of docs/protocol-2d-losses.md#local-pod steps 1-4 (sum handling, pow, local pooling, L2,
    batch mean)."""
    if new.shape[1] != old.shape[1]:
        num_old = old.shape[1]
        summed = new[:, 0] + new[:, num_old:].sum(dim=1)
        new = torch.cat([summed[:, None], new[:, 1:num_old]], dim=1)
    diff = literal_embedding(old**2, scales) - literal_embedding(new**2, scales)
    return diff.norm(dim=-1).mean()


def test_hand_example_1x1x2x2():
    # old^2 = [[1, 4], [9, 16]], new = 0.
    # scale 1 (k = 2): row means [2.5, 12.5], column means [5, 10].
    # scale 2 (k = 1): each pixel v gives [v] twice: 1, 1, 4, 4, 9, 9, 16, 16.
    # ||emb||^2 = 6.25 + 156.25 + 25 + 100 + 2 * (1 + 16 + 81 + 256) = 995.5.
    old = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    loss = pod(old, torch.zeros_like(old), scales=(1, 2))
    assert loss.item() == pytest.approx(math.sqrt(995.5), rel=1e-6)
    assert loss.dtype == torch.float32


def test_hand_example_points():
    # Our 1-D extension: old^2 = [1, 4, 9, 16]; scale 1: mean 7.5; scale 2: chunk means 2.5, 12.5.
    old = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)
    loss = pod(old, torch.zeros_like(old), scales=(1, 2))
    assert loss.item() == pytest.approx(math.sqrt(7.5**2 + 2.5**2 + 12.5**2), rel=1e-6)
    # Points beyond s * (N // s) are left out, like pixels in 2-D: with N = 5, scale 2 uses 4.
    five = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 1, 5)
    expected = math.sqrt((55 / 5) ** 2 + 2.5**2 + 12.5**2)
    assert pod(five, torch.zeros_like(five), scales=(1, 2)).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("height,width", [(8, 8), (9, 8), (7, 10), (12, 8), (8, 11)])
def test_matches_literal_tiling(height, width):
    # Includes W not divisible by the scales, H > W, and H < W where the bottom tiles are cut short.
    gen = torch.Generator().manual_seed(height * width)
    old = torch.randn(3, 4, height, width, generator=gen)
    new = torch.randn(3, 4, height, width, generator=gen)
    expected = literal_pod_layer(old, new, (1, 2, 4))
    assert pod(old, new).item() == pytest.approx(expected.item(), rel=1e-5)


def test_identical_maps_give_zero_and_finite_gradient():
    maps = torch.randn(2, 3, 8, 8)
    new = maps.clone().requires_grad_(True)
    loss = pod(maps, new)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(new.grad).all()


def test_sum_of_extra_channels():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(2, 3, 4, 4, generator=gen)
    new = torch.randn(2, 5, 4, 4, generator=gen)
    # b'[:, 0] = b[:, 0] + b[:, 3] + b[:, 4] (raw values, before squaring), b'[:, 1:3] = b[:, 1:3].
    collapsed = torch.cat([new[:, :1] + new[:, 3:].sum(dim=1, keepdim=True), new[:, 1:3]], dim=1)
    assert pod(old, new).item() == pytest.approx(pod(old, collapsed).item(), rel=1e-6)
    assert pod(old, new).item() == pytest.approx(literal_pod_layer(old, new, (1, 2, 4)).item(), rel=1e-5)
    # New-class logits that cancel the background logit make the collapsed map equal to old's.
    old = torch.randn(1, 2, 4, 4, generator=gen)
    extra = torch.randn(1, 1, 4, 4, generator=gen)
    new = torch.cat([old[:, :1] - extra, old[:, 1:], extra], dim=1)
    assert pod(old, new).item() == pytest.approx(0.0, abs=1e-5)


def test_sqrt_schedule_and_factor():
    gen = torch.Generator().manual_seed(1)
    old, new = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    plain = pod(old, new).item()
    scheduled = local_pod([old], [new], factors=[0.01], num_current=17, num_new=1)
    assert scheduled.item() == pytest.approx(0.01 * math.sqrt(17) * plain, rel=1e-6)
    unscheduled = local_pod([old], [new], factors=[0.01], num_current=17, num_new=1, schedule=False)
    assert unscheduled.item() == pytest.approx(0.01 * plain, rel=1e-6)


def test_mean_over_batch():
    gen = torch.Generator().manual_seed(2)
    old, new = torch.randn(1, 2, 4, 4, generator=gen), torch.randn(1, 2, 4, 4, generator=gen)
    single = pod(old, new).item()
    # A second sample with identical maps halves the batch mean.
    pair = pod(torch.cat([old, old]), torch.cat([new, old]))
    assert pair.item() == pytest.approx(single / 2, rel=1e-6)


def test_division_by_number_of_maps():
    gen = torch.Generator().manual_seed(3)
    a_old, a_new = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)
    b_old, b_new = torch.randn(2, 5, 4, 4, generator=gen), torch.randn(2, 7, 4, 4, generator=gen)
    la, lb = pod(a_old, a_new).item(), pod(b_old, b_new).item()
    both = local_pod(
        [a_old, b_old], [a_new, b_new], factors=[0.5, 2.0], num_current=21, num_new=5, schedule=True
    )
    assert both.item() == pytest.approx(math.sqrt(21 / 5) * (0.5 * la + 2.0 * lb) / 2, rel=1e-6)
    # Image and point maps can be mixed in one call.
    p_old, p_new = torch.randn(2, 3, 16, generator=gen), torch.randn(2, 4, 16, generator=gen)
    mixed = local_pod(
        [a_old, p_old], [a_new, p_new], factors=[1.0, 1.0], num_current=1, num_new=1, schedule=False
    )
    assert mixed.item() == pytest.approx((la + pod(p_old, p_new).item()) / 2, rel=1e-6)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(4)
    old_img = torch.randn(2, 2, 4, 5, generator=gen, dtype=torch.float64)
    new_img = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    old_pts = torch.randn(2, 2, 9, generator=gen, dtype=torch.float64)
    new_pts = torch.randn(2, 2, 9, generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(img, pts):
        return local_pod([old_img, old_pts], [img, pts], factors=[0.3, 2.0], num_current=3, num_new=1)

    assert fn(new_img, new_pts).dtype == torch.float64
    assert gradcheck(fn, (new_img, new_pts))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(dtype):
    gen = torch.Generator().manual_seed(5)
    old, new = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    low = pod(old.to(dtype), new.to(dtype))
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert low.item() == pytest.approx(pod(old.to(dtype).float(), new.to(dtype).float()).item(), rel=1e-5)
    assert low.item() == pytest.approx(pod(old, new).item(), rel=2e-2)


def test_non_finite_maps_name_the_layer():
    good = torch.randn(1, 2, 4, 4)
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"layer\(s\) \[1\]"):
        local_pod([good, good], [good, bad], factors=[1.0, 1.0], num_current=2, num_new=1)


def test_invalid_arguments():
    maps = [torch.randn(1, 2, 4, 4)]
    with pytest.raises(ValueError, match="one factor per layer"):
        local_pod(maps, maps, factors=[1.0, 1.0], num_current=2, num_new=1)
    with pytest.raises(ValueError, match="non-negative"):
        local_pod(maps, maps, factors=[-1.0], num_current=2, num_new=1)
    with pytest.raises(ValueError, match="num_new=0"):
        local_pod(maps, maps, factors=[1.0], num_current=2, num_new=0)
    with pytest.raises(ValueError, match="scale 8"):
        local_pod(maps, maps, factors=[1.0], num_current=2, num_new=1, scales=(1, 8))
    with pytest.raises(ValueError, match="empty tile"):
        # H < W: at scale 2 the tile height is 8 // 2 = 4, so the second row of tiles is empty.
        pod(torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8))
    with pytest.raises(ValueError, match="more channels"):
        pod(torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(B, C, N\)"):
        pod(torch.randn(1, 2, 2, 2, 2), torch.randn(1, 2, 2, 2, 2))

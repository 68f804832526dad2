"""DeepLabV3 + ResNet (docs/protocol-2d-model.md#model): shapes, the ResNet-101 layout, the head, the
pre-activation attentions and classifier init (docs/methods.md#balanced-init). Weight import
(docs/protocol-2d-model.md#weights) is in test_image_model_weights.py."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from css.errors import ConfigError
from css.image.deeplab import DeepLabHead
from css.image.models import build_model
from css.image.layers import make_norm
from css.nn import SegOutput

from _image_model import randomise_norms, small


# ---------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("output_stride", [16, 8])
def test_output_shapes(output_stride):
    torch.manual_seed(0)
    model = small(output_stride=output_stride)
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, SegOutput)
    s = 64 // output_stride
    assert out.logits.shape == (2, 5, 64, 64)
    assert out.logits_small.shape == (2, 5, s, s)
    att = out.features["attentions"]
    # mod2..mod5 pre-activation sums, then pre_logits (docs/protocol-2d-model.md#classifier).
    # Basic blocks: widths 8, 16, 32, 64.
    mod4 = 4 if output_stride == 16 else 8
    shapes = [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, mod4, mod4), (2, 64, s, s), (2, 16, s, s)]
    assert [tuple(a.shape) for a in att] == shapes
    assert att[4] is out.features["pre_logits"]
    assert out.features["body"].shape == (2, 64, s, s)


def test_logits_are_bilinear_upsampling_of_the_concatenated_heads():
    torch.manual_seed(0)
    model = small().eval()
    out = model(torch.randn(1, 3, 50, 70))  # not a multiple of 16
    pre = out.features["pre_logits"]
    small_by_hand = torch.cat([model.cls[0](pre), model.cls[1](pre)], dim=1)
    torch.testing.assert_close(out.logits_small, small_by_hand)
    assert out.logits.shape == (1, 5, 50, 70)
    torch.testing.assert_close(
        out.logits, F.interpolate(small_by_hand, size=(50, 70), mode="bilinear", align_corners=False)
    )


def test_unknown_choices_raise_config_errors_naming_the_valid_ones():
    with pytest.raises(ConfigError, match="resnet101"):
        build_model([3], backbone="resnet7", norm="bn")
    with pytest.raises(ConfigError, match="iabn_sync, iabn, bn"):
        build_model([3], norm="groupnorm")
    with pytest.raises(ConfigError, match="8 or 16"):
        build_model([3], norm="bn", output_stride=32)


def _bottleneck_body_params(depths, b=64):
    """Parameters of a bottleneck ResNet body by hand: convs, norms (2 per channel), projections."""
    total = 3 * b * 49 + 2 * b  # mod1 conv1 7x7 + bn1
    c_in = b
    for stage, depth in enumerate(depths):
        w = b * 2**stage
        for i in range(depth):
            total += c_in * w + w * w * 9 + w * 4 * w + 2 * (w + w + 4 * w)
            if i == 0:  # in != out channels: projection
                total += c_in * 4 * w + 2 * 4 * w
            c_in = 4 * w
    return total


def test_resnet101_layout_and_parameter_count():
    torch.manual_seed(0)
    model = build_model([16], backbone="resnet101", norm="bn")
    body = sum(p.numel() for p in model.body.parameters())
    assert body == _bottleneck_body_params([3, 4, 23, 3]) == 42_500_160  # = torchvision ResNet-101 minus fc
    # 1x1 + three dilated 3x3 convs 2048->256, map_bn(1024), red_conv, pooling branch, red_bn
    # (docs/protocol-2d-model.md#head).
    aspp = 2048 * 256 + 3 * 2048 * 256 * 9 + 2 * 1024 + 1024 * 256
    head = aspp + 2048 * 256 + 2 * 256 + 256 * 256 + 2 * 256
    assert sum(p.numel() for p in model.head.parameters()) == head
    keys = set(model.state_dict())
    for key in [  # reference key names (docs/protocol-2d-model.md#model)
        "body.mod1.conv1.weight", "body.mod1.bn1.running_var", "body.mod2.block1.proj_conv.weight",
        "body.mod2.block1.proj_bn.bias", "body.mod4.block23.convs.conv3.weight",
        "body.mod5.block3.convs.bn3.running_var", "head.map_convs.3.weight", "head.map_bn.weight",
        "head.global_pooling_conv.weight", "head.global_pooling_bn.running_mean", "head.red_conv.weight",
        "head.pool_red_conv.weight", "head.red_bn.bias", "cls.0.weight", "cls.0.bias",
    ]:
        assert key in keys, key
    pattern = re.compile(
        r"body\.mod1\.(conv1\.weight|bn1\.\w+)"
        r"|body\.mod[2-5]\.block\d+\.(convs\.(conv[123]\.weight|bn[123]\.\w+)|proj_conv\.weight|proj_bn\.\w+)"
        r"|head\.(map_convs\.[0-3]\.weight|(red_conv|global_pooling_conv|pool_red_conv)\.weight"
        r"|(map_bn|global_pooling_bn|red_bn)\.\w+)"
        r"|cls\.0\.(weight|bias)"
    )
    assert [k for k in keys if not pattern.fullmatch(k)] == []
    assert not any(k.startswith("body.mod2.block2.proj") for k in keys)  # identity shortcut
    assert model.cls[0].weight.shape == (16, 256, 1, 1)
    # OS16: stride on the 3x3 of mod3/mod4's first block; mod5 dilated by 2, stride 1
    # (docs/protocol-2d-model.md#backbone).
    assert model.body.mod3.block1.convs.conv2.stride == (2, 2)
    assert model.body.mod3.block1.convs.conv1.stride == (1, 1)
    assert model.body.mod5.block1.convs.conv2.stride == (1, 1)
    assert {b.convs.conv2.dilation for b in model.body.mod5} == {(2, 2)}
    assert [c.dilation for c in model.head.map_convs] == [(1, 1), (6, 6), (12, 12), (18, 18)]
    # xavier_normal_ with the leaky-ReLU gain (docs/protocol-2d-model.md#head):
    # std = gain * sqrt(2 / (fan_in + fan_out)).
    gain = math.sqrt(2 / (1 + 0.01**2))
    expected_std = gain * math.sqrt(2 / (2048 * 9 + 256 * 9))
    assert model.head.map_convs[1].weight.std().item() == pytest.approx(expected_std, rel=0.01)


def test_resnet101_iabn_forward_shapes():
    pytest.importorskip("inplace_abn")
    from inplace_abn import InPlaceABN

    torch.manual_seed(0)
    model = build_model([16, 5], backbone="resnet101", norm="iabn").eval()
    assert isinstance(model.body.mod1.bn1, InPlaceABN)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.logits.shape == (1, 21, 64, 64) and out.logits_small.shape == (1, 21, 4, 4)
    shapes = [tuple(a.shape) for a in out.features["attentions"]]
    assert shapes == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 4, 4), (1, 256, 4, 4)]


def test_iabn_sync_without_distributed_builds_inplace_abn():
    pytest.importorskip("inplace_abn")
    from inplace_abn import InPlaceABN, InPlaceABNSync

    norm = make_norm("iabn_sync")(4, "identity")
    assert type(norm) is InPlaceABN and not isinstance(norm, InPlaceABNSync)
    assert norm.activation == "identity"


# ------------------------------------------------------------------------------------------ head


def test_head_eval_pooling_is_a_replicate_padded_sliding_mean():
    torch.manual_seed(0)
    head = DeepLabHead(6, make_norm("bn"), out_channels=4, hidden_channels=3, pooling_size=2).eval()
    randomise_norms(head)
    x = torch.randn(2, 6, 4, 5)
    # By hand: 2x2 window means (3x4 map), index clamped so row/col 0 of the padding is on the
    # top/left for an odd total ((k-1)//2 = 0) and the rest on the bottom/right.
    rows = [[x[:, :, i : i + 2, j : j + 2].mean(dim=(2, 3)) for j in range(4)] for i in range(3)]
    windows = torch.stack([torch.stack(row, -1) for row in rows], -2)
    pooled = windows[:, :, [0, 1, 2, 2]][:, :, :, [0, 1, 2, 3, 3]]
    pool = head.pool_red_conv(head.global_pooling_bn(head.global_pooling_conv(pooled)))
    aspp = head.red_conv(head.map_bn(torch.cat([c(x) for c in head.map_convs], 1)))
    torch.testing.assert_close(head(x), head.red_bn(aspp + pool))

    head.pooling_size = None  # eval with global mean
    pool = head.pool_red_conv(head.global_pooling_bn(head.global_pooling_conv(x.mean((2, 3), keepdim=True))))
    torch.testing.assert_close(head(x), head.red_bn(aspp + pool))


def test_head_pooling_window_covering_the_map_equals_global_mean():
    torch.manual_seed(0)
    head = DeepLabHead(6, make_norm("bn"), out_channels=4, hidden_channels=3, pooling_size=32).eval()
    x = torch.randn(1, 6, 5, 3)
    big = head(x)
    head.pooling_size = None
    torch.testing.assert_close(big, head(x))


# ------------------------------------------------------------------ pre-activation attentions


@pytest.mark.parametrize("norm", ["bn", "iabn"])
@pytest.mark.parametrize("train", [False, True])
def test_attentions_are_true_preactivation_sums(norm, train):
    if norm == "iabn":
        pytest.importorskip("inplace_abn")
    torch.manual_seed(0)
    model = small(norm=norm)
    randomise_norms(model)
    model.train(train)
    inputs = {}
    stages = [model.body.mod2, model.body.mod3, model.body.mod4, model.body.mod5]
    for i, stage in enumerate(stages):
        list(stage)[-1].register_forward_pre_hook(
            lambda m, args, i=i: inputs.__setitem__(i, args[0].detach().clone())
        )
    out = model(torch.randn(2, 3, 64, 64))
    att = out.features["attentions"]
    assert torch.equal(out.features["body"], F.leaky_relu(att[3], 0.01))
    model.eval()  # recompute each last block by hand, with the statistics the forward used in eval
    for i, stage in enumerate(stages):
        block = list(stage)[-1]
        assert (att[i] < 0).any(), "a pre-activation sum must keep its negative values"
        if train:
            continue  # batch statistics: the structural check above is the one that applies
        x = inputs[i]
        shortcut = x if block.proj_conv is None else block.proj_bn(block.proj_conv(x.clone()))
        with torch.no_grad():
            torch.testing.assert_close(att[i], block.convs(x.clone()) + shortcut)
    if train:
        (out.logits.sum() + sum(a.sum() for a in att)).backward()  # no in-place autograd conflict


# ----------------------------------------------------------------------- classifier handling


def test_init_new_head_from_background():
    torch.manual_seed(0)
    model = small(classes=(4,))
    old_w, old_b = model.cls[0].weight.detach().clone(), model.cls[0].bias.detach().clone()
    with pytest.raises(ValueError, match="add_classes"):
        model.init_new_head_from_background()
    model.add_classes(3)
    assert model.classes_per_step == [4, 3] and model.num_classes == 7
    model.init_new_head_from_background()
    # rows = w_bg, new bias = b_bg - ln(n_new + 1) = b_bg - ln 4, bg bias likewise
    # (docs/methods.md#balanced-init).
    expected_bias = old_b[0].item() - math.log(4)
    assert torch.equal(model.cls[1].weight, old_w[0:1].expand(3, -1, -1, -1))
    torch.testing.assert_close(model.cls[1].bias, torch.full((3,), expected_bias))
    assert model.cls[0].bias[0].item() == pytest.approx(expected_bias)
    assert torch.equal(model.cls[0].weight, old_w) and torch.equal(model.cls[0].bias[1:], old_b[1:])
    out = model.eval()(torch.randn(1, 3, 32, 32)).logits_small
    # Background and the new classes now share one logit: softmax splits bg's mass n_new + 1 ways.
    torch.testing.assert_close(out[:, 4:], out[:, :1].expand(-1, 3, -1, -1))


def test_param_groups():
    model = small()
    groups = model.param_groups(0.01)
    assert [g["name"] for g in groups] == ["body", "head", "cls"]
    assert all(g["lr"] == 0.01 and g["weight_decay"] == 1e-4 for g in groups)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    split = model.param_groups(0.01, lr_old=0.1)
    lrs = [("body", 0.01), ("head", 0.01), ("cls_old", 0.001), ("cls", 0.01)]
    assert [(g["name"], g["lr"]) for g in split] == lrs
    assert split[2]["params"] == list(model.cls[0].parameters())
    for p in model.body.parameters():
        p.requires_grad_(False)
    assert [g["name"] for g in model.param_groups(0.01)] == ["head", "cls"]

"""DGCNN segmentation model (css.pointcloud.models) and its chunked kNN (css.pointcloud.knn)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from css.errors import ConfigError
from css.nn import BatchNormAct, SegOutput
from css.pointcloud.knn import edge_features, knn, knn_rows_per_chunk
from css.pointcloud.models import DGCNNSeg, EdgeConv, build_model

BACKBONE_PARAMS = 409_856


def randomise_norms(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, BatchNormAct):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))


# -------------------------------------------------------------------------------------- kNN


def brute_force_knn(x, k):
    points = x.double().transpose(1, 2)
    dist = ((points[:, :, None, :] - points[:, None, :, :]) ** 2).sum(-1)  # (B, N, N)
    return dist, dist.topk(k, dim=2, largest=False).indices


@pytest.mark.parametrize("chunk", [None, 1, 7, 32, 99, 100, 1000])
def test_chunked_knn_equals_brute_force(chunk):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 100)
    k = 10
    dist, expected = brute_force_knn(x, k)
    got = knn(x, k, chunk=chunk)
    assert got.shape == (3, 100, k) and got.dtype == torch.int64
    assert torch.equal(got[:, :, 0], torch.arange(100).expand(3, -1))  # self first (distance 0)
    # Same neighbour sets; the order may differ only among equal distances.
    assert torch.equal(got.sort(dim=2).values, expected.sort(dim=2).values)
    torch.testing.assert_close(dist.gather(2, got), dist.gather(2, expected))


def test_knn_small_memory_budget_and_half_inputs():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 50)
    expected = knn(x, 5, chunk=50)
    assert torch.equal(knn(x, 5, max_bytes=1), expected)  # one query point per chunk
    assert knn_rows_per_chunk(2, 50, max_bytes=1) == 1
    assert knn_rows_per_chunk(32, 2048) == 256  # 32 * 256 * 2048 * 4 bytes = 64 MiB
    assert knn_rows_per_chunk(1, 100) == 100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = knn(x.bfloat16(), 5)
    assert torch.equal(got, knn(x.bfloat16().float(), 5))  # distances in float32
    with pytest.raises(ValueError, match="k <= N"):
        knn(x, 51)


def test_edge_features_layout():
    x = torch.tensor([[[0.0, 1.0, 3.0]]])  # B=1, C=1, N=3
    index = torch.tensor([[[0, 1], [1, 0], [2, 1]]])
    e = edge_features(x, index)
    assert e.shape == (1, 2, 3, 2)
    assert e[0, 0].tolist() == [[0, 1], [0, -1], [0, -2]]  # x_j - x_i
    assert e[0, 1].tolist() == [[0, 0], [1, 1], [3, 3]]  # x_i


# -------------------------------------------------------------------------------- EdgeConv


def test_edge_conv_by_hand():
    """N=4 points in 1-D, k=2, hand-set 2-channel convs, eval-mode BN with unit statistics."""
    conv = EdgeConv(1, out_channels=2, k=2).eval()
    conv1, bn1, _, conv2, bn2, _ = conv.layer
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1))  # (-(xj-xi), xi)
        conv2.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]).view(2, 2, 1, 1))
    bn1.eps = bn2.eps = 0.0  # running mean 0, var 1, weight 1, bias 0: identity
    coords = [-2.0, -1.0, 1.0, 5.0]
    out = conv(torch.tensor(coords).view(1, 1, 4))

    def lrelu(v):
        return v if v >= 0 else 0.2 * v

    # Neighbours (self included): -2 -> {-2, -1}; -1 -> {-1, -2}; 1 -> {1, -1}; 5 -> {5, 1}.
    neighbours = {0: [0, 1], 1: [1, 0], 2: [2, 1], 3: [3, 2]}
    expected = [[], []]
    for i, xi in enumerate(coords):
        values = []
        for j in neighbours[i]:
            a0, a1 = lrelu(-(coords[j] - xi)), lrelu(xi)
            values.append((lrelu(a0 + a1), lrelu(a1)))
        expected[0].append(max(v[0] for v in values))
        expected[1].append(max(v[1] for v in values))
    # e.g. point 3 (x=5): neighbour 1 gives a0 = 4, a1 = 5 -> 9; point 0 (x=-2): self gives
    # lrelu(0 + -0.4) = -0.08, neighbour -1 gives lrelu(-0.2 - 0.4) = -0.12 -> -0.08.
    assert expected[0][3] == 9.0 and expected[0][0] == pytest.approx(-0.08)
    torch.testing.assert_close(out, torch.tensor([expected]), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------- model


@pytest.mark.parametrize("classes", [[13], [7, 3, 1], [2, 1, 1, 1]])
def test_shapes_and_output_contract(classes):
    torch.manual_seed(0)
    model = build_model(classes, k=8)
    out = model(torch.randn(2, 9, 64))
    assert isinstance(out, SegOutput)
    assert out.logits.shape == (2, sum(classes), 64)
    assert out.logits_small is out.logits
    assert out.features["body"].shape == (2, 448, 64)
    assert out.features["pre_logits"].shape == (2, 128, 64)
    assert out.features["attentions"] == []
    body = out.features["body"]
    assert torch.equal(body[:, 192:], body[:, 192:, :1].expand(-1, -1, 64))  # global feature, broadcast
    assert model.classes_per_step == classes and model.num_classes == sum(classes)
    assert model.norm == "bn"


def test_parameter_count_and_state_dict_layout():
    model = build_model([13])
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("cls."))
    assert backbone == BACKBONE_PARAMS
    assert sum(p.numel() for p in model.parameters()) == BACKBONE_PARAMS + 128 * 13
    model.add_classes(2)
    assert sum(p.numel() for p in model.cls.parameters()) == 128 * 15
    keys = [k for k in model.state_dict() if not k.startswith("cls.")]
    assert len(keys) == 61
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = set()
    for prefix in [f"encoder.edge_convs.{i}.layer." for i in range(3)] + ["encoder.conv.layer.", "segmentor."]:
        expected |= {f"{prefix}0.weight", f"{prefix}3.weight"} | {f"{prefix}{i}.{b}" for i in (1, 4) for b in bn}
    expected.add("segmentor.3.bias")
    assert set(keys) == expected
    assert [k for k in model.state_dict() if k.startswith("cls.")] == ["cls.0.weight", "cls.1.weight"]
    shapes = model.state_dict()
    assert shapes["encoder.edge_convs.0.layer.0.weight"].shape == (64, 18, 1, 1)
    assert shapes["encoder.edge_convs.1.layer.0.weight"].shape == (64, 128, 1, 1)
    assert shapes["encoder.conv.layer.0.weight"].shape == (512, 192, 1)
    assert shapes["segmentor.0.weight"].shape == (256, 448, 1)
    assert shapes["segmentor.3.weight"].shape == (128, 256, 1)
    assert all(isinstance(m, BatchNormAct) and m.sync for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_output_does_not_depend_on_knn_chunk():
    torch.manual_seed(0)
    model = build_model([4, 2], k=10).eval()
    randomise_norms(model)
    x = torch.randn(2, 9, 96)
    with torch.no_grad():
        reference = model(x).logits
        for chunk in (1, 5, 96, 1000):
            model.set_knn_chunk(chunk)
            torch.testing.assert_close(model(x).logits, reference, rtol=1e-5, atol=1e-6)
    chunked = build_model([4, 2], k=10, knn_chunk=7)
    chunked.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(chunked.eval()(x).logits, reference, rtol=1e-5, atol=1e-6)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model([5, 2], k=8).train()
    x = torch.randn(2, 9, 64)
    labels = torch.randint(0, 7, (2, 64))
    out = model(x)
    loss = F.cross_entropy(out.logits, labels) + out.features["body"].square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        if name != "segmentor.3.bias":  # a bias right before a training-mode BN: gradient ~0 in theory
            assert p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_mc_dropout_is_not():
    torch.manual_seed(0)
    model = build_model([4], k=8).eval()
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
        assert torch.equal(a.logits, b.logits)
        assert not model.mc_dropout_enabled
        assert model.mc_dropout(True) is model and model.mc_dropout_enabled and not model.training
        c, d = model(x), model(x)
        assert not torch.equal(c.logits, d.logits)
        dropped = (c.features["pre_logits"] == 0).float().mean().item()
        assert 0.25 < dropped < 0.35  # p = 0.3 on the 128-d features
        kept = c.features["pre_logits"] != 0
        torch.testing.assert_close(c.features["pre_logits"][kept], a.features["pre_logits"][kept] / 0.7)
        model.mc_dropout(False)
        assert torch.equal(model(x).logits, a.logits)


def test_bias_free_classifier_add_classes_and_init_from_background():
    torch.manual_seed(0)
    model = build_model([13], k=8)
    assert isinstance(model.cls, nn.ModuleList)
    assert all(isinstance(c, nn.Conv1d) and c.bias is None for c in model.cls)
    assert model.cls[0].weight.shape == (13, 128, 1)
    old = model.cls[0].weight.detach().clone()
    new = model.add_classes(3)
    assert model.classes_per_step == [13, 3] and model.num_classes == 16 and new.bias is None
    assert new.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.15)
    model.init_new_head_from_background()
    assert torch.equal(model.cls[1].weight, old[0:1].expand(3, -1, -1))
    assert torch.equal(model.cls[0].weight, old)
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 9, 32)).logits
    torch.testing.assert_close(logits[:, 13:], logits[:, :1].expand(-1, 3, -1))


def test_invalid_settings():
    with pytest.raises(ConfigError, match="model.norm"):
        build_model([3], norm="iabn_sync")
    with pytest.raises(ConfigError, match="non-empty"):
        build_model([])
    with pytest.raises(ConfigError, match="knn_chunk"):
        build_model([3], knn_chunk=0)
    model = build_model([3], k=20)
    with pytest.raises(ValueError, match="at least 20 points"):
        model(torch.randn(1, 9, 10))
    with pytest.raises(ValueError, match=r"\(B, 9, N\)"):
        model(torch.randn(1, 6, 64))
    assert isinstance(model, DGCNNSeg)


def test_training_dropout_mask_depends_on_the_sample_alone():
    """The mask of a sample is the same whatever else is in the batch (1 vs W processes)."""
    from css.pointcloud.models import MCDropout, sample_seeds

    torch.manual_seed(0)
    x = torch.randn(4, 9, 32)
    feats = torch.rand(4, 16, 32) + 1.0
    drop = MCDropout(0.3).train()
    seeds = sample_seeds(x)
    assert seeds.dtype == torch.int64 and len(set(seeds.tolist())) == 4
    assert torch.equal(sample_seeds(x[2:]), seeds[2:])  # a seed is a function of its sample
    full = drop(feats, seeds)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(drop(feats[2:], seeds[2:]), full[2:])
    dropped = (full == 0).float().mean().item()
    assert 0.25 < dropped < 0.35
    torch.testing.assert_close(full[full != 0], (feats / 0.7)[full != 0])
    assert not torch.equal(full[0] == 0, full[1] == 0)  # samples get different masks
    # another input (next epoch: other points, augmentation) gives another mask
    assert not torch.equal(sample_seeds(x + 1e-3), seeds)


def test_every_gradient_has_its_weights_layout():
    """The EdgeConv weights are channels-last like the gradients their channels-last inputs give, so
    DDP reduces each gradient in place (docs/pointcloud-model.md#memory-layout); with contiguous
    weights the 1x1 Conv2d gradients come out in the other layout."""
    torch.manual_seed(0)
    model = build_model([4, 2], k=8)
    model(torch.randn(2, 9, 64)).logits.sum().backward()
    convs = [n for n, p in model.named_parameters() if p.dim() == 4]
    assert len(convs) == 6  # two 1x1 Conv2d per EdgeConv
    assert all(p.grad.stride() == p.stride() for p in model.parameters() if p.grad is not None)
    contiguous = build_model([4, 2], k=8).to(memory_format=torch.contiguous_format)
    contiguous(torch.randn(2, 9, 64)).logits.sum().backward()
    assert {n for n, p in contiguous.named_parameters() if p.grad.stride() != p.stride()} == set(convs)

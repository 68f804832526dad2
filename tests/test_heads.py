"""css.heads.IncrementalHead: the per-step classifier shared by DeepLabV3 (Conv2d, bias) and DGCNN
(Conv1d, bias-free), with hand-computed expectations."""

import copy
import math

import pytest
import torch
from torch import nn

from css.errors import ConfigError
from css.heads import IncrementalHead


class Owner(nn.Module):
    """A model holding the head as ``cls``, as DeepLabV3 and DGCNNSeg do."""

    def __init__(self, head: IncrementalHead) -> None:
        super().__init__()
        self.cls = head


def set_conv(conv, weight, bias=None):
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).view_as(conv.weight))
        if bias is not None:
            conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))


# ------------------------------------------------------------------------- Conv2d with bias


def test_conv2d_head_forward_concatenates_heads_by_hand():
    head = IncrementalHead(3, [2, 1], dims=2, bias=True)
    assert isinstance(head, nn.ModuleList) and all(isinstance(c, nn.Conv2d) for c in head)
    assert [tuple(c.weight.shape) for c in head] == [(2, 3, 1, 1), (1, 3, 1, 1)]
    set_conv(head[0], [[1, 0, 0], [0, 2, 1]], [0.5, -1.0])
    set_conv(head[1], [[-1, 1, 3]], [2.0])
    x = torch.tensor([1.0, 2.0, -1.0]).view(1, 3, 1, 1).repeat(1, 1, 2, 2)
    # row 0: 1 + 0.5 = 1.5; row 1: 4 - 1 - 1 = 2; row 2: -1 + 2 - 3 + 2 = 0
    expected = torch.tensor([1.5, 2.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(head(x), expected)
    assert head.classes_per_step == [2, 1] and head.num_classes == 3
    keys = list(Owner(head).state_dict())
    assert keys == ["cls.0.weight", "cls.0.bias", "cls.1.weight", "cls.1.bias"]


def test_conv2d_head_init_from_background_by_hand():
    head = IncrementalHead(3, [2], dims=2, bias=True)
    set_conv(head[0], [[1, 2, 3], [4, 5, 6]], [0.5, 0.25])
    with pytest.raises(ValueError, match="add_classes"):
        head.init_new_head_from_background()
    new = head.add_classes(2)
    assert isinstance(new, nn.Conv2d) and new is head[1] and head.classes_per_step == [2, 2]
    head.init_new_head_from_background()
    shifted = 0.5 - math.log(3)  # b_bg - ln(n_new + 1), n_new = 2
    assert head[1].weight.view(2, 3).tolist() == [[1, 2, 3], [1, 2, 3]]
    torch.testing.assert_close(head[1].bias, torch.tensor([shifted, shifted]))
    torch.testing.assert_close(head[0].bias, torch.tensor([shifted, 0.25]))
    assert head[0].weight.view(2, 3).tolist() == [[1, 2, 3], [4, 5, 6]]
    logits = head(torch.randn(2, 3, 4, 4))
    torch.testing.assert_close(logits[:, 2:], logits[:, :1].expand(-1, 2, -1, -1))


# ------------------------------------------------------------------------- Conv1d without bias


def test_conv1d_bias_free_head_forward_by_hand():
    head = IncrementalHead(2, [2, 2], dims=1, bias=False, init="kaiming_normal")
    assert all(isinstance(c, nn.Conv1d) and c.bias is None for c in head)
    assert list(Owner(head).state_dict()) == ["cls.0.weight", "cls.1.weight"]
    set_conv(head[0], [[1, 1], [2, -1]])
    set_conv(head[1], [[0, 3], [-2, 0]])
    x = torch.tensor([[[1.0, 0.0, 2.0], [3.0, -1.0, 1.0]]])  # (B=1, C=2, N=3)
    expected = torch.tensor([[[4.0, -1.0, 3.0], [-1.0, 1.0, 3.0], [9.0, -3.0, 3.0], [-2.0, 0.0, -4.0]]])
    torch.testing.assert_close(head(x), expected)


def test_conv1d_bias_free_init_from_background_copies_the_row_only():
    head = IncrementalHead(2, [3], dims=1, bias=False)
    set_conv(head[0], [[0.5, -1.5], [1, 1], [2, 2]])
    head.add_classes(2)
    head.init_new_head_from_background()
    # No bias: only the weight row is copied (no -ln(n_new + 1) shift is possible).
    assert head[1].weight.view(2, 2).tolist() == [[0.5, -1.5], [0.5, -1.5]]
    assert head[0].weight.view(3, 2).tolist() == [[0.5, -1.5], [1, 1], [2, 2]]
    logits = head(torch.tensor([[[1.0], [2.0]]]))
    assert logits.view(-1).tolist() == [-2.5, 3.0, 6.0, -2.5, -2.5]


def test_kaiming_normal_init_std():
    torch.manual_seed(0)
    head = IncrementalHead(128, [4000], dims=1, bias=False, init="kaiming_normal")
    assert head[0].weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.03)
    new = head.add_classes(4000)
    assert new.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.03)
    assert new.weight.mean().abs().item() < 0.01


# ------------------------------------------------------------------------------ bookkeeping


def test_add_classes_follows_device_and_dtype_and_validates():
    head = IncrementalHead(4, [3], dims=2).double()
    new = head.add_classes(1)
    assert new.weight.dtype == torch.float64 and new.bias.dtype == torch.float64
    with pytest.raises(ConfigError, match="at least one class"):
        head.add_classes(0)
    with pytest.raises(ConfigError, match="non-empty"):
        IncrementalHead(4, [])
    with pytest.raises(ConfigError, match="positive"):
        IncrementalHead(4, [3, 0])
    with pytest.raises(ValueError, match="dims"):
        IncrementalHead(4, [3], dims=3)


def test_slice_deepcopy_and_parameters():
    head = IncrementalHead(4, [3, 2, 1], dims=1, bias=False)
    old = head[:-1]
    assert type(old) is nn.ModuleList and len(old) == 2 and old[0] is head[0]
    clone = copy.deepcopy(head)
    assert isinstance(clone, IncrementalHead) and clone.classes_per_step == [3, 2, 1]
    assert clone.in_channels == 4 and clone.dims == 1 and clone.bias is False
    assert sum(p.numel() for p in head.parameters()) == 4 * 6
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(clone(x), head(x))

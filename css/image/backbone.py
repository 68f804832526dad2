"""The ResNet body of DeepLabV3, stages mod1..mod5 (docs/protocol-2d-model.md#backbone): residual blocks
whose last block per stage also returns its pre-activation sum (for Local POD), dilated per
output stride.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from css.errors import ConfigError
from css.image.layers import LEAKY_SLOPE, NormFactory, conv

# name -> (block kind, blocks per stage mod2..mod5)
BACKBONES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),  # docs/protocol-2d-model.md#backbone
}
# Dilation of mod2..mod5 per output stride (docs/protocol-2d-model.md#backbone); a stage with dilation 1 (other than
# mod2) has stride 2, a dilated stage stride 1.
DILATIONS = {16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}


def check_choices(backbone: str, output_stride: int) -> None:
    if backbone not in BACKBONES:
        raise ConfigError(
            f"model.backbone: unknown backbone {backbone!r}; valid choices: {', '.join(BACKBONES)}"
        )
    if output_stride not in DILATIONS:
        raise ConfigError(f"model.output_stride must be 8 or 16, got {output_stride!r}")


class ResidualBlock(nn.Module):
    """Pre-sum residual block: out = leaky_relu(convs(x) + shortcut(x)) (docs/protocol-2d-model.md#backbone).

    ``channels`` is (c1, c2) for a basic block (3x3, 3x3) or (c1, c2, c3) for a bottleneck
    (1x1, 3x3 with the stride, 1x1). The last norm of ``convs`` and ``proj_bn`` have the identity
    activation. With ``return_preact`` the block returns (activated output, pre-activation sum)
    and computes the activation out of place, so the returned sum is not overwritten.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        norm: NormFactory,
        stride: int = 1,
        dilation: int = 1,
        return_preact: bool = False,
    ) -> None:
        super().__init__()
        self.return_preact = return_preact
        layers: list[tuple[str, nn.Module]]
        if len(channels) == 2:
            layers = [
                ("conv1", conv(in_channels, channels[0], 3, stride, dilation)),
                ("bn1", norm(channels[0], "leaky_relu")),
                ("conv2", conv(channels[0], channels[1], 3, 1, dilation)),
                ("bn2", norm(channels[1], "identity")),
            ]
        elif len(channels) == 3:
            layers = [
                ("conv1", conv(in_channels, channels[0], 1)),
                ("bn1", norm(channels[0], "leaky_relu")),
                ("conv2", conv(channels[0], channels[1], 3, stride, dilation)),  # stride on the 3x3
                ("bn2", norm(channels[1], "leaky_relu")),
                ("conv3", conv(channels[1], channels[2], 1)),
                ("bn3", norm(channels[2], "identity")),
            ]
        else:
            raise ValueError(f"a residual block has 2 or 3 convolutions, got channels {tuple(channels)}")
        self.convs = nn.Sequential(OrderedDict(layers))
        out_channels = channels[-1]
        if stride != 1 or in_channels != out_channels:
            self.proj_conv = conv(in_channels, out_channels, 1, stride)
            self.proj_bn = norm(out_channels, "identity")
        else:
            self.proj_conv = None
            self.proj_bn = None

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        shortcut = x if self.proj_conv is None else self.proj_bn(self.proj_conv(x))
        preact = self.convs(x) + shortcut
        if self.return_preact:
            return F.leaky_relu(preact, LEAKY_SLOPE), preact
        return F.leaky_relu(preact, LEAKY_SLOPE, inplace=True)


class ResNetStage(nn.Sequential):
    """A stage mod2..mod5: blocks block1..blockN; returns (activated output, pre-activation sum)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        *blocks, last = list(self)
        for block in blocks:
            x = block(x)
        return last(x)


class ResNet(nn.Module):
    """ResNet body with stages mod1..mod5 (docs/protocol-2d-model.md#backbone).

    forward(x) returns (mod5 output, [pre-activation sums of mod2..mod5]). mod1 = conv1 7x7/2 ->
    bn1 -> pool1 max 3/2. Stage widths: basic (b, b) and bottleneck (b, b, 4b) in mod2, doubled in
    each later stage, with b = ``base_channels`` (64 for the standard networks).
    """

    def __init__(
        self, backbone: str, norm: NormFactory, output_stride: int = 16, base_channels: int = 64
    ) -> None:
        super().__init__()
        check_choices(backbone, output_stride)
        kind, depths = BACKBONES[backbone]
        b = base_channels
        self.mod1 = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, b, 7, stride=2, padding=3, bias=False)),
                    ("bn1", norm(b, "leaky_relu")),
                    ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
                ]
            )
        )
        in_channels = b
        for index, (depth, dilation) in enumerate(zip(depths, DILATIONS[output_stride])):
            width = b * 2**index
            channels = (width, width) if kind == "basic" else (width, width, 4 * width)
            stride = 2 if index > 0 and dilation == 1 else 1
            blocks = []
            for i in range(depth):
                blocks.append(
                    (
                        f"block{i + 1}",
                        ResidualBlock(
                            in_channels,
                            channels,
                            norm,
                            stride=stride if i == 0 else 1,
                            dilation=dilation,
                            return_preact=i == depth - 1,
                        ),
                    )
                )
                in_channels = channels[-1]
            self.add_module(f"mod{index + 2}", ResNetStage(OrderedDict(blocks)))
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.mod1(x)
        attentions = []
        for stage in (self.mod2, self.mod3, self.mod4, self.mod5):
            x, preact = stage(x)
            attentions.append(preact)
        return x, attentions

"""DeepLabV3 on a ResNet, with one classifier head per step (docs/protocol-2d.md#model).

Module names follow the reference exactly (docs/protocol-2d.md#model, #weights) so that reference
checkpoints and the InPlaceABN ImageNet weights load by name (css.image.weights):

    body.mod1.{conv1, bn1, pool1}
    body.mod{2..5}.block{i}.convs.{conv1, bn1, conv2, bn2[, conv3, bn3]}
    body.mod{2..5}.block{i}.{proj_conv, proj_bn}        (when the shape changes)
    head.{map_convs.{0..3}, map_bn, red_conv, global_pooling_conv, global_pooling_bn,
          pool_red_conv, red_bn}
    cls.{0..T}

Normalisation (``norm``):
- "iabn_sync": InPlaceABNSync, the reference (docs/protocol-2d.md#normalisation); CUDA tensors and nccl only.
- "iabn": InPlaceABN, the same maths without synchronisation.
- "bn": css.nn.BatchNormAct, pure torch, synchronised across processes (CPU, gloo or nccl).
All use leaky-ReLU 0.01, eps 1e-5, momentum 0.1; bn3/proj_bn (and bn2 of basic blocks) use the
identity activation. InPlaceABN's scale is |gamma| + eps where BatchNormAct's is gamma.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from css.errors import ConfigError, require
from css.heads import IncrementalHead, IncrementalModel
from css.nn import BatchNormAct, SegOutput

__all__ = [
    "SegOutput",
    "NormFactory",
    "make_norm",
    "ResidualBlock",
    "ResNetStage",
    "ResNet",
    "DeepLabHead",
    "DeepLabV3",
    "build_model",
    "BACKBONES",
    "NORMS",
]

LEAKY_SLOPE = 0.01  # docs/protocol-2d.md#normalisation

# name -> (block kind, blocks per stage mod2..mod5)
BACKBONES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),  # docs/protocol-2d.md#backbone
}
NORMS = ("iabn_sync", "iabn", "bn")
# Dilation of mod2..mod5 per output stride (docs/protocol-2d.md#backbone); a stage with dilation 1 (other than
# mod2) has stride 2, a dilated stage stride 1.
DILATIONS = {16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}
# ASPP rates per output stride (docs/protocol-2d.md#head: 32, not 36, at OS8).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 32)}

NormFactory = Callable[[int, str], nn.Module]
"""norm(channels, activation) -> module; activation is "leaky_relu" or "identity"."""


def make_norm(norm: str, process_group: Any = None) -> NormFactory:
    """Return a factory of normalisation + activation modules of the given kind.

    "iabn_sync" without an initialised torch.distributed (or with a single process) builds
    InPlaceABN: with one process the synchronised statistics are the local ones, so the maths is
    identical, and InPlaceABN also runs on CPU tensors, which InPlaceABNSync does not.
    """
    if norm not in NORMS:
        raise ConfigError(f"model.norm: unknown normalisation {norm!r}; valid choices: {', '.join(NORMS)}")
    if norm == "bn":

        def bn_factory(channels: int, activation: str) -> nn.Module:
            return BatchNormAct(
                channels,
                activation=activation,
                activation_param=LEAKY_SLOPE,
                sync=True,
                process_group=process_group,
            )

        return bn_factory

    iabn = require("inplace_abn", needed_for=f"model.norm: {norm}", install="pip install inplace-abn==1.1.0")
    if norm == "iabn_sync" and _distributed_world_size(process_group) > 1:
        dist = torch.distributed
        backend = str(dist.get_backend(process_group))  # e.g. "nccl", "gloo" or "cpu:gloo,cuda:nccl"
        if "nccl" not in backend or not torch.cuda.is_available():
            raise ConfigError(
                "model.norm: iabn_sync needs CUDA tensors and the nccl backend, but this run uses "
                f"backend {backend!r}{'' if torch.cuda.is_available() else ' without CUDA'}. Use "
                "model.norm: bn on CPU (pure-torch synchronised batch norm)."
            )
        group = process_group if process_group is not None else dist.group.WORLD

        def sync_factory(channels: int, activation: str) -> nn.Module:
            return iabn.InPlaceABNSync(
                channels, activation=activation, activation_param=LEAKY_SLOPE, group=group
            )

        return sync_factory

    def iabn_factory(channels: int, activation: str) -> nn.Module:
        return iabn.InPlaceABN(channels, activation=activation, activation_param=LEAKY_SLOPE)

    return iabn_factory


def _check_choices(backbone: str, output_stride: int) -> None:
    if backbone not in BACKBONES:
        raise ConfigError(
            f"model.backbone: unknown backbone {backbone!r}; valid choices: {', '.join(BACKBONES)}"
        )
    if output_stride not in DILATIONS:
        raise ConfigError(f"model.output_stride must be 8 or 16, got {output_stride!r}")


def _distributed_world_size(process_group: Any = None) -> int:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """Bias-free conv with 'same' padding for odd kernels (dilation-aware)."""
    padding = dilation * (kernel // 2)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)


class ResidualBlock(nn.Module):
    """Pre-sum residual block: out = leaky_relu(convs(x) + shortcut(x)) (docs/protocol-2d.md#backbone).

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
                ("conv1", _conv(in_channels, channels[0], 3, stride, dilation)),
                ("bn1", norm(channels[0], "leaky_relu")),
                ("conv2", _conv(channels[0], channels[1], 3, 1, dilation)),
                ("bn2", norm(channels[1], "identity")),
            ]
        elif len(channels) == 3:
            layers = [
                ("conv1", _conv(in_channels, channels[0], 1)),
                ("bn1", norm(channels[0], "leaky_relu")),
                ("conv2", _conv(channels[0], channels[1], 3, stride, dilation)),  # stride on the 3x3
                ("bn2", norm(channels[1], "leaky_relu")),
                ("conv3", _conv(channels[1], channels[2], 1)),
                ("bn3", norm(channels[2], "identity")),
            ]
        else:
            raise ValueError(f"a residual block has 2 or 3 convolutions, got channels {tuple(channels)}")
        self.convs = nn.Sequential(OrderedDict(layers))
        out_channels = channels[-1]
        if stride != 1 or in_channels != out_channels:
            self.proj_conv = _conv(in_channels, out_channels, 1, stride)
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
    """ResNet body with stages mod1..mod5 (docs/protocol-2d.md#backbone).

    forward(x) returns (mod5 output, [pre-activation sums of mod2..mod5]). mod1 = conv1 7x7/2 ->
    bn1 -> pool1 max 3/2. Stage widths: basic (b, b) and bottleneck (b, b, 4b) in mod2, doubled in
    each later stage, with b = ``base_channels`` (64 for the standard networks).
    """

    def __init__(
        self, backbone: str, norm: NormFactory, output_stride: int = 16, base_channels: int = 64
    ) -> None:
        super().__init__()
        _check_choices(backbone, output_stride)
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


class DeepLabHead(nn.Module):
    """DeepLabV3 ASPP head without dropout or low-level skip (docs/protocol-2d.md#head).

    out = red_bn(red_conv(map_bn(cat(map_convs(x)))) + pool(x)), where pool = pool_red_conv(
    global_pooling_bn(global_pooling_conv(avg(x)))) broadcast to H x W. avg is the global spatial
    mean in training (or when ``pooling_size`` is None); in eval an average over sliding
    min(pooling_size, H) x min(pooling_size, W) windows (stride 1), replicate-padded back to H x W.
    """

    def __init__(
        self,
        in_channels: int,
        norm: NormFactory,
        out_channels: int = 256,
        hidden_channels: int = 256,
        output_stride: int = 16,
        pooling_size: int | None = 32,
    ) -> None:
        super().__init__()
        if output_stride not in ASPP_RATES:
            raise ConfigError(f"model.output_stride must be 8 or 16, got {output_stride!r}")
        self.pooling_size = pooling_size
        self.map_convs = nn.ModuleList(
            [_conv(in_channels, hidden_channels, 1)]
            + [_conv(in_channels, hidden_channels, 3, dilation=rate) for rate in ASPP_RATES[output_stride]]
        )
        self.map_bn = norm(4 * hidden_channels, "leaky_relu")
        self.red_conv = _conv(4 * hidden_channels, out_channels, 1)
        self.global_pooling_conv = _conv(in_channels, hidden_channels, 1)
        self.global_pooling_bn = norm(hidden_channels, "leaky_relu")
        self.pool_red_conv = _conv(hidden_channels, out_channels, 1)
        self.red_bn = norm(out_channels, "leaky_relu")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """xavier_normal_ with the leaky-ReLU gain on every conv; norms keep gamma=1, beta=0."""
        gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight, gain)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([conv(x) for conv in self.map_convs], dim=1)
        out = self.red_conv(self.map_bn(out))
        pool = self._pool(x)
        pool = self.pool_red_conv(self.global_pooling_bn(self.global_pooling_conv(pool)))
        if pool.shape[-2:] != x.shape[-2:]:
            pool = self._fill(pool, x.shape[-2:])
        return self.red_bn(out + pool)

    def _pool(self, x: Tensor) -> Tensor:
        """Global mean (training, or pooling_size None) or sliding-window mean (eval)."""
        if self.training or self.pooling_size is None:
            return x.mean(dim=(2, 3), keepdim=True)
        kernel = (min(self.pooling_size, x.shape[2]), min(self.pooling_size, x.shape[3]))
        return F.avg_pool2d(x, kernel, stride=1)

    @staticmethod
    def _fill(pool: Tensor, size: torch.Size) -> Tensor:
        """Bring the pooled map back to ``size``: broadcast a 1x1 map, replicate-pad a larger one.

        Padding after the 1x1 convs and the (eval-mode, per-position) norm equals padding before
        them, since those act on each position alone; it just costs less.
        """
        if pool.shape[-2:] == (1, 1):
            return pool.expand(-1, -1, *size)
        pad_h, pad_w = size[0] - pool.shape[2], size[1] - pool.shape[3]
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        return F.pad(pool, padding, mode="replicate")


class DeepLabV3(IncrementalModel):
    """Incremental segmentation model: body, head and one 1x1 classifier conv per step
    (docs/protocol-2d.md#classifier).

    forward(x) returns SegOutput(logits, logits_small, features) with logits_small the
    concatenated head outputs at stride 16 (or 8), logits their bilinear upsampling
    (align_corners=False) to the input size, and features = {"body": mod5 output, "pre_logits":
    head output, "attentions": [mod2..mod5 pre-activation sums, pre_logits]} (docs/protocol-2d.md#classifier).
    """

    def __init__(
        self, body: ResNet, head: DeepLabHead, classes_per_step: Sequence[int], head_channels: int, norm: str
    ) -> None:
        super().__init__()
        self.norm = norm
        """The model.norm it was built with (checkpoint writers store it, see css.image.weights)."""
        cls = IncrementalHead(head_channels, classes_per_step, dims=2, bias=True)  # validates the counts
        self.body = body
        self.head = head
        self.head_channels = head_channels
        self.cls = cls
        """One nn.Conv2d(head_channels, n_i, 1, bias=True) per step (css.heads.IncrementalHead)."""

    def forward(self, x: Tensor) -> SegOutput:
        body, attentions = self.body(x)
        pre_logits = self.head(body)
        logits_small = self.cls(pre_logits)
        logits = F.interpolate(logits_small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        features = {"body": body, "pre_logits": pre_logits, "attentions": [*attentions, pre_logits]}
        return SegOutput(logits, logits_small, features)

    def param_groups(
        self, lr: float, weight_decay: float = 1e-4, lr_old: float | None = None
    ) -> list[dict[str, Any]]:
        """SGD parameter groups body / head / cls, each with ``weight_decay``
        (docs/protocol-2d.md#optimiser-and-schedule).

        Only parameters with requires_grad are included; an empty group is omitted (e.g. a frozen
        body). With ``lr_old`` and more than one head, the old heads cls[:-1] get lr * lr_old and
        the last head lr, as groups "cls_old" and "cls".
        """
        def group(name: str, modules: Sequence[nn.Module], group_lr: float) -> dict[str, Any]:
            params = [p for m in modules for p in m.parameters() if p.requires_grad]
            return {"name": name, "params": params, "lr": group_lr, "weight_decay": weight_decay}

        if lr_old is not None and len(self.cls) > 1:
            cls_groups = [
                group("cls_old", list(self.cls[:-1]), lr * lr_old),
                group("cls", [self.cls[-1]], lr),
            ]
        else:
            cls_groups = [group("cls", [self.cls], lr)]
        groups = [group("body", [self.body], lr), group("head", [self.head], lr), *cls_groups]
        return [g for g in groups if g["params"]]


def build_model(
    classes_per_step: Sequence[int],
    backbone: str = "resnet101",
    norm: str = "iabn_sync",
    output_stride: int = 16,
    pooling_size: int | None = 32,
    base_channels: int = 64,
    process_group: Any = None,
    head_channels: int = 256,
) -> DeepLabV3:
    """Build DeepLabV3 on ``backbone`` with one classifier head per entry of ``classes_per_step``.

    Defaults are the reference model (docs/protocol-2d.md#model): ResNet-101, InPlaceABNSync, OS16,
    eval pooling window 32, 256-channel head. ``base_channels`` and ``head_channels`` shrink the
    network for CPU demos and tests. Weights are random (PyTorch defaults; xavier for the head);
    load pretrained ones with css.image.weights.load_reference_weights.
    """
    _check_choices(backbone, output_stride)  # before make_norm, which may need inplace_abn
    norm_factory = make_norm(norm, process_group)
    body = ResNet(backbone, norm_factory, output_stride, base_channels)
    head = DeepLabHead(
        body.out_channels, norm_factory, head_channels, head_channels, output_stride, pooling_size
    )
    return DeepLabV3(body, head, classes_per_step, head_channels, norm)

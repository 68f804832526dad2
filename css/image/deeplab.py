"""The DeepLabV3 ASPP head (docs/protocol-2d-model.md#head) and the incremental model: body, head and one
classifier conv per step (docs/protocol-2d-model.md#classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from css.errors import ConfigError
from css.heads import IncrementalHead, IncrementalModel
from css.image.backbone import ResNet
from css.image.layers import LEAKY_SLOPE, NormFactory, conv
from css.nn import SegOutput

# ASPP rates per output stride (docs/protocol-2d-model.md#head: 32, not 36, at OS8).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 32)}


class DeepLabHead(nn.Module):
    """DeepLabV3 ASPP head without dropout or low-level skip (docs/protocol-2d-model.md#head).

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
            [conv(in_channels, hidden_channels, 1)]
            + [conv(in_channels, hidden_channels, 3, dilation=rate) for rate in ASPP_RATES[output_stride]]
        )
        self.map_bn = norm(4 * hidden_channels, "leaky_relu")
        self.red_conv = conv(4 * hidden_channels, out_channels, 1)
        self.global_pooling_conv = conv(in_channels, hidden_channels, 1)
        self.global_pooling_bn = norm(hidden_channels, "leaky_relu")
        self.pool_red_conv = conv(hidden_channels, out_channels, 1)
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
    (docs/protocol-2d-model.md#classifier).

    forward(x) returns SegOutput(logits, logits_small, features) with logits_small the
    concatenated head outputs at stride 16 (or 8), logits their bilinear upsampling
    (align_corners=False) to the input size, and features = {"body": mod5 output, "pre_logits":
    head output, "attentions": [mod2..mod5 pre-activation sums, pre_logits]} (docs/protocol-2d-model.md#classifier).
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

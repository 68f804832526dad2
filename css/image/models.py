"""DeepLabV3 on a ResNet, with one classifier head per step (docs/protocol-2d-model.md#model).

Module names follow the reference exactly (docs/protocol-2d-model.md#model, #weights) so that reference
checkpoints and the InPlaceABN ImageNet weights load by name (css.image.weights):

    body.mod1.{conv1, bn1, pool1}
    body.mod{2..5}.block{i}.convs.{conv1, bn1, conv2, bn2[, conv3, bn3]}
    body.mod{2..5}.block{i}.{proj_conv, proj_bn}        (when the shape changes)
    head.{map_convs.{0..3}, map_bn, red_conv, global_pooling_conv, global_pooling_bn,
          pool_red_conv, red_bn}
    cls.{0..T}

The normalisation layers and the convolution are in css.image.layers, the ResNet in
css.image.backbone, the head and the incremental model in css.image.deeplab; this module builds the
network (build_model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from css.image.backbone import ResNet, check_choices
from css.image.deeplab import DeepLabHead, DeepLabV3
from css.image.layers import make_norm


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

    Defaults are the reference model (docs/protocol-2d-model.md#model): ResNet-101, InPlaceABNSync, OS16,
    eval pooling window 32, 256-channel head. ``base_channels`` and ``head_channels`` shrink the
    network for CPU demos and tests. Weights are random (PyTorch defaults; xavier for the head);
    load pretrained ones with css.image.weights.load_reference_weights.
    """
    check_choices(backbone, output_stride)  # before make_norm, which may need inplace_abn
    norm_factory = make_norm(norm, process_group)
    body = ResNet(backbone, norm_factory, output_stride, base_channels)
    head = DeepLabHead(
        body.out_channels, norm_factory, head_channels, head_channels, output_stride, pooling_size
    )
    return DeepLabV3(body, head, classes_per_step, head_channels, norm)

"""The layers the ResNet body and the DeepLabV3 head are built of: normalisation + activation
(``model.norm``, docs/protocol-2d-model.md#normalisation) and the bias-free convolution.

Normalisation (``norm``):
- "iabn_sync": InPlaceABNSync, the reference (docs/protocol-2d-model.md#normalisation); CUDA tensors and nccl only.
- "iabn": InPlaceABN, the same maths without synchronisation.
- "bn": css.nn.BatchNormAct, pure torch, synchronised across processes (CPU, gloo or nccl).
All use leaky-ReLU 0.01, eps 1e-5, momentum 0.1; bn3/proj_bn (and bn2 of basic blocks) use the
identity activation. InPlaceABN's scale is |gamma| + eps where BatchNormAct's is gamma.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from css.distributed import process_group_up
from css.errors import ConfigError, require
from css.nn import BatchNormAct

LEAKY_SLOPE = 0.01  # docs/protocol-2d-model.md#normalisation

NORMS = ("iabn_sync", "iabn", "bn")

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


def _distributed_world_size(process_group: Any = None) -> int:
    dist = torch.distributed
    if not process_group_up():
        return 1
    return dist.get_world_size(process_group)


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """Bias-free conv with 'same' padding for odd kernels (dilation-aware)."""
    padding = dilation * (kernel // 2)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)

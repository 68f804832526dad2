"""DGCNN point-cloud segmentation with one classifier head per step (docs/pointcloud-model.md).

Layout (module names chosen so that the released 3DPC-CISS S3DIS state dicts load by name, see
css.pointcloud.weights)::

    encoder.edge_convs.{0,1,2}.layer = [Conv2d, BN, LeakyReLU, Conv2d, BN, LeakyReLU]   + max over k
    encoder.conv.layer               = [Conv1d 192->512, BN, LeakyReLU, Conv1d 512->256, BN, LeakyReLU]
    segmentor                        = [Conv1d 448->256, BN, LeakyReLU, Conv1d 256->128 (bias), BN,
                                        LeakyReLU, MCDropout(0.3)]
    cls.{i}                          = Conv1d(128, n_i, 1, bias=False)  (css.heads.IncrementalHead)

BN is css.nn.BatchNormAct with the identity activation, followed by its own LeakyReLU(0.2)
module, so the Sequential indices (0 conv, 1 BN, 2 act, 3 conv, 4 BN, 5 act) are the
reference's. Backbone (encoder + segmentor): 409,856 trainable parameters; classifier 128·C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from css.errors import ConfigError
from css.heads import IncrementalHead, IncrementalModel
from css.nn import BatchNormAct, SegOutput
from css.pointcloud.knn import DEFAULT_CHUNK_BYTES, edge_features, knn

__all__ = [
    "DGCNNSeg",
    "DGCNNEncoder",
    "EdgeConv",
    "PointMLP",
    "MCDropout",
    "mc_seeds",
    "build_model",
    "NORMS",
    "LEAKY_SLOPE",
    "FEATURE_CHANNELS",
    "DESCRIPTOR_CHANNELS",
]

LEAKY_SLOPE = 0.2
NORMS = ("bn",)
EDGE_CHANNELS = 64
FEATURE_CHANNELS = 128
"""Channels of the per-point features the classifier sees."""
DESCRIPTOR_CHANNELS = 3 * EDGE_CHANNELS + 256
"""Channels of the per-point descriptor (three EdgeConvs + global feature): 448."""


def _norm(channels: int, process_group: Any) -> BatchNormAct:
    # Batch statistics are all-reduced when torch.distributed runs more than one process
    # (BatchNormAct decides per call), as css.image.models.make_norm does for norm "bn".
    return BatchNormAct(channels, activation="identity", sync=True, process_group=process_group)


def _conv_bn_act(conv: nn.Module, channels: int, process_group: Any) -> list[nn.Module]:
    return [conv, _norm(channels, process_group), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]


class EdgeConv(nn.Module):
    """Dynamic-graph edge convolution: (B, C, N) -> (B, 64, N).

    The k nearest neighbours of every point are found in the input feature space (self included,
    css.pointcloud.knn.knn); ``layer`` (two 1x1 Conv2d + BN + LeakyReLU(0.2), bias-free) maps each
    edge feature concat(x_j - x_i, x_i) to 64 channels, and the maximum over the k neighbours is
    the output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = EDGE_CHANNELS,
        k: int = 20,
        knn_chunk: int | None = None,
        knn_bytes: int = DEFAULT_CHUNK_BYTES,
        process_group: Any = None,
    ) -> None:
        super().__init__()
        self.k = k
        self.knn_chunk = knn_chunk
        self.knn_bytes = knn_bytes
        self.layer = nn.Sequential(
            *_conv_bn_act(nn.Conv2d(2 * in_channels, out_channels, 1, bias=False), out_channels, process_group),
            *_conv_bn_act(nn.Conv2d(out_channels, out_channels, 1, bias=False), out_channels, process_group),
        )

    def extra_repr(self) -> str:
        return f"k={self.k}, knn_chunk={self.knn_chunk}"

    def forward(self, x: Tensor) -> Tensor:
        index = knn(x, self.k, chunk=self.knn_chunk, max_bytes=self.knn_bytes)
        return self.layer(edge_features(x, index)).max(dim=3).values


class PointMLP(nn.Module):
    """``layer`` = Conv1d 192->512, BN, LeakyReLU, Conv1d 512->256, BN, LeakyReLU (bias-free)."""

    def __init__(self, in_channels: int = 3 * EDGE_CHANNELS, process_group: Any = None) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *_conv_bn_act(nn.Conv1d(in_channels, 512, 1, bias=False), 512, process_group),
            *_conv_bn_act(nn.Conv1d(512, 256, 1, bias=False), 256, process_group),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class DGCNNEncoder(nn.Module):
    """Three EdgeConvs (each on a graph rebuilt from its own input) and the point-wise MLP.

    forward(x (B, C_in, N)) returns the per-point descriptor (B, 448, N): concat(EC1, EC2, EC3,
    global), global being the maximum over points of the MLP's 256 channels, broadcast to N.
    """

    def __init__(
        self,
        in_channels: int = 9,
        k: int = 20,
        knn_chunk: int | None = None,
        knn_bytes: int = DEFAULT_CHUNK_BYTES,
        process_group: Any = None,
    ) -> None:
        super().__init__()
        widths = [in_channels, EDGE_CHANNELS, EDGE_CHANNELS]
        self.edge_convs = nn.ModuleList(
            EdgeConv(c, EDGE_CHANNELS, k, knn_chunk, knn_bytes, process_group) for c in widths
        )
        self.conv = PointMLP(3 * EDGE_CHANNELS, process_group)

    def forward(self, x: Tensor) -> Tensor:
        edges = []
        for edge_conv in self.edge_convs:
            x = edge_conv(x)
            edges.append(x)
        local = torch.cat(edges, dim=1)  # (B, 192, N)
        global_feature = self.conv(local).max(dim=2, keepdim=True).values  # (B, 256, 1)
        return torch.cat([local, global_feature.expand(-1, -1, local.shape[2])], dim=1)


_HASH_PRIME = 2**31 - 1


def sample_seeds(x: Tensor) -> Tensor:
    """One int64 seed per sample of ``x`` (B, ...), an exact function of that sample's float32 bits.

    Dropout masks drawn from these seeds depend on the sample alone, not on the other samples of
    the batch or on the process that holds it, so a run on W processes draws the masks of a
    1-process run with the same global batch (docs/pointcloud-model.md#dropout). The inputs change
    every epoch (random points, augmentation), and so do the masks."""
    bits = x.detach().float().reshape(x.shape[0], -1).contiguous().view(torch.int32).to(torch.int64)
    weights = (torch.arange(1, bits.shape[1] + 1, device=x.device, dtype=torch.int64) * 2654435761) % _HASH_PRIME
    return torch.remainder((bits * weights).sum(dim=1), _HASH_PRIME)  # int64 wrap-around is deterministic


_MC_SALT = 0x5BD1E995 % _HASH_PRIME


def mc_seeds(seeds: Tensor) -> Tensor:
    """The seeds of seeded MC dropout in eval mode, derived from ``sample_seeds`` with a salt, so
    that the old model's masks on a sample differ from the new model's training masks on it."""
    return torch.remainder(seeds * 48271 + _MC_SALT, _HASH_PRIME)


class MCDropout(nn.Dropout):
    """Dropout that can stay active in eval mode (``always``), for single-pass MC dropout.

    With ``seeds`` (one per sample, see ``sample_seeds``) every sample's mask comes from its own
    generator: in training mode, and in eval mode when MC dropout is ``seeded``. Otherwise (MC
    dropout in eval mode by default) from the global RNG, as nn.Dropout does, so repeated MC
    passes over one input differ."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.always = False
        self.seeded = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, always={self.always}, seeded={self.seeded}"

    def forward(self, x: Tensor, seeds: Tensor | None = None) -> Tensor:
        active = self.training or self.always
        if not active or self.p == 0 or seeds is None:
            return F.dropout(x, self.p, active, self.inplace)
        keep = torch.empty_like(x, dtype=torch.bool)
        gen = torch.Generator(device=x.device)
        for i, seed in enumerate(seeds.tolist()):
            gen.manual_seed(int(seed))
            keep[i] = torch.rand(x.shape[1:], generator=gen, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)


class DGCNNSeg(IncrementalModel):
    """Incremental DGCNN segmentation model (docs/pointcloud-model.md#architecture).

    forward(x (B, C_in, N)) returns SegOutput(logits (B, C, N), logits_small = the same tensor,
    features = {"body": descriptor (B, 448, N), "pre_logits": the classifier input (B, 128, N),
    "attentions": []}).
    """

    def __init__(
        self,
        classes_per_step: Sequence[int],
        in_channels: int = 9,
        k: int = 20,
        dropout: float = 0.3,
        norm: str = "bn",
        knn_chunk: int | None = None,
        knn_bytes: int = DEFAULT_CHUNK_BYTES,
        process_group: Any = None,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"model.norm: {norm!r} is not available for DGCNN; valid choices: {', '.join(NORMS)}")
        if int(k) < 1:
            raise ConfigError(f"model.k (DGCNN neighbours) must be a positive integer, got {k!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout!r}")
        if knn_chunk is not None and int(knn_chunk) < 1:
            raise ConfigError(f"model.knn_chunk must be a positive number of points or null, got {knn_chunk!r}")
        cls = IncrementalHead(FEATURE_CHANNELS, classes_per_step, dims=1, bias=False, init="kaiming_normal")
        self.norm = norm
        """The model.norm it was built with (checkpoint writers store it)."""
        self.in_channels = in_channels
        self.k = int(k)
        self.encoder = DGCNNEncoder(in_channels, self.k, knn_chunk, knn_bytes, process_group)
        self.segmentor = nn.Sequential(
            *_conv_bn_act(nn.Conv1d(DESCRIPTOR_CHANNELS, 256, 1, bias=False), 256, process_group),
            *_conv_bn_act(nn.Conv1d(256, FEATURE_CHANNELS, 1, bias=True), FEATURE_CHANNELS, process_group),
            MCDropout(float(dropout)),
        )
        self.cls = cls
        """One bias-free nn.Conv1d(128, n_i, 1) per step (css.heads.IncrementalHead)."""
        # The EdgeConv inputs are channels-last views (css.pointcloud.knn.edge_features), so the
        # gradients of the 1x1 Conv2d weights come out channels-last; weights in the same layout
        # (same values) let DDP reduce them in place instead of copying each one every iteration
        # (docs/pointcloud-model.md#memory-layout).
        self.encoder.to(memory_format=torch.channels_last)

    def set_knn_chunk(self, chunk: int | None) -> None:
        """Query points per kNN chunk in every EdgeConv (None: from the 64 MiB budget)."""
        for edge_conv in self.encoder.edge_convs:
            edge_conv.knn_chunk = chunk

    def mc_dropout(self, enabled: bool = True, seeded: bool = False) -> DGCNNSeg:
        """Keep the dropout on the 128-d features active even in eval mode (MC dropout); returns self.

        ``seeded``: the eval-mode masks come from per-sample seeds (``mc_seeds``) instead of the
        global RNG, so they depend on the sample alone, not on the process that holds it
        (docs/pointcloud-model.md#dropout); repeated passes over one input then agree."""
        self.segmentor[-1].always = bool(enabled)
        self.segmentor[-1].seeded = bool(enabled and seeded)
        return self

    @property
    def mc_dropout_enabled(self) -> bool:
        return self.segmentor[-1].always

    def forward(self, x: Tensor) -> SegOutput:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"DGCNN expects points (B, {self.in_channels}, N), got shape {tuple(x.shape)}")
        if x.shape[2] < self.k:
            raise ValueError(
                f"DGCNN with k={self.k} neighbours needs at least {self.k} points per cloud, got {x.shape[2]}"
            )
        body = self.encoder(x)
        drop = self.segmentor[-1]
        seeds = None
        if drop.p > 0 and drop.training:
            seeds = sample_seeds(x)
        elif drop.p > 0 and drop.always and drop.seeded:
            seeds = mc_seeds(sample_seeds(x))
        pre_logits = drop(self.segmentor[:-1](body), seeds)
        logits = self.cls(pre_logits)
        return SegOutput(logits, logits, {"body": body, "pre_logits": pre_logits, "attentions": []})

def build_model(
    classes_per_step: Sequence[int],
    in_channels: int = 9,
    k: int = 20,
    dropout: float = 0.3,
    norm: str = "bn",
    knn_chunk: int | None = None,
    knn_bytes: int = DEFAULT_CHUNK_BYTES,
    process_group: Any = None,
) -> DGCNNSeg:
    """Build the DGCNN segmentation model with one classifier head per entry of ``classes_per_step``.

    ``knn_chunk`` is the number of query points per kNN chunk (None: as many as fit ``knn_bytes``
    of float32 distances, 64 MiB by default); it changes memory and speed, never the result.
    Backbone weights are PyTorch's defaults; the classifier is Kaiming-normal (std sqrt(2/128)).
    Load the released 3DPC-CISS weights with css.pointcloud.weights.load_3dpc_ciss_weights.
    """
    return DGCNNSeg(classes_per_step, in_channels, k, dropout, norm, knn_chunk, knn_bytes, process_group)

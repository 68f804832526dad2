"""The image sections of a config (docs/config.md#sections) and their range checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from css.config.schema import Config, DataConfig
from css.errors import ConfigError


@dataclass
class ImageDataConfig(DataConfig):
    crop_size: int = 512
    scale: list[float] = field(default_factory=lambda: [0.5, 2.0])
    eval_mode: str = "crop"
    """crop: short side resized to crop_size + centre crop (the reference,
    docs/protocol-2d.md#transforms); whole: full images."""


@dataclass
class ImageModelConfig:
    backbone: str = "resnet101"
    norm: str = "iabn_sync"
    """iabn_sync | iabn | bn (pure torch, synchronised across processes; use it on CPU)."""
    output_stride: int = 16
    pooling_size: int | None = 32
    """Eval-time ASPP pooling window (docs/protocol-2d-model.md#head); null = global mean."""
    base_channels: int = 64
    """Width of the first ResNet stage (64 = standard); smaller values make CPU-sized networks."""
    head_channels: int = 256
    """Channels of the DeepLabV3 head (256 = standard)."""
    pretrained: str | None = None
    """ImageNet weights for the backbone (e.g. pretrained/resnet101_iabn_sync.pth.tar); null = random."""


# Keys of the image sections with a fixed set of values.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.eval_mode": ("crop", "whole"),
    "model.norm": ("iabn_sync", "iabn", "bn"),
}


def check_config(cfg: Config, where: str) -> None:
    """Ranges and combinations of the image sections (each error names the key and the fix)."""
    t = cfg.train
    if cfg.model.output_stride not in (8, 16):
        raise ConfigError(f"{where}model.output_stride must be 8 or 16, got {cfg.model.output_stride}")
    if cfg.protocol == "mib" and cfg.data.dataset == "cityscapes_domain":
        raise ConfigError(f"{where}protocol: mib has no Cityscapes conventions (MiB published no such benchmark); "
                          f"use protocol: reference or fixed")
    if cfg.data.crop_size <= 0:
        raise ConfigError(f"{where}data.crop_size must be positive, got {cfg.data.crop_size}")
    if t.precision == "bf16" and cfg.model.norm in ("iabn", "iabn_sync"):
        # InPlaceABN 1.1.0's kernels take float32 and float16 only; under bf16 autocast its CUDA
        # forward fails with "mean is not compatible with x" (seen on an H200, benchmarks/RESULTS.md).
        raise ConfigError(f"{where}train.precision: bf16 does not work with model.norm: {cfg.model.norm} "
                          f"(InPlaceABN has no bfloat16 kernels); use train.precision=fp16 or model.norm=bn")



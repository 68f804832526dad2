"""Joint image/label-map transforms (torchvision.transforms.v2), docs/protocol-2d.md#transforms.

Every transform takes ``(image, mask)``: the image as a PIL image or ``tv_tensors.Image`` (uint8,
C x H x W), the mask as a ``tv_tensors.Mask`` of dataset labels (H x W), and returns plain tensors
``(image float32 (3, h, w) normalised, mask (h, w) in the input's integer dtype)``. Label
remapping happens afterwards, in the dataset (docs/protocol-2d.md#transforms).

Masks are resized with centre-aligned nearest neighbour (``NEAREST_EXACT``, what PIL's NEAREST
used by the reference does). torchvision's default for masks is ``NEAREST``, which samples
source pixel floor(x * scale) and so shifts the labels by up to half a source pixel against the
bilinearly resized image; at the upscaling factors of RandomResizedCrop that is several pixels.

A light CPU-friendly variant is the same pipeline with a smaller ``crop_size``.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from css.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_MODES = ("crop", "whole")


def _resize_mask(mask: tv_tensors.Mask, size: list[int]) -> tv_tensors.Mask:
    """Resize a (H, W) or (..., H, W) mask to ``size`` = [h, w] with centre-aligned nearest."""
    plain = mask.as_subclass(torch.Tensor)
    squeeze = plain.ndim == 2
    if squeeze:
        plain = plain.unsqueeze(0)
    out = F.resize_image(plain, size, interpolation=InterpolationMode.NEAREST_EXACT)
    return tv_tensors.wrap(out.squeeze(0) if squeeze else out, like=mask)


class RandomResizedCrop(v2.RandomResizedCrop):
    """RandomResizedCrop with bilinear antialiased images and centre-aligned nearest masks.

    Crop parameters follow torchvision (and the reference, docs/protocol-2d.md#transforms): up to 10
    tries of area U(scale)·area and log-uniform aspect ratio, accepted when the crop fits, else a
    centred crop clamped to the ratio range. With scale up to 2.0 most tries do not fit. No padding
    is added, so no new ignore pixels appear.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            cropped = F.crop(inpt, params["top"], params["left"], params["height"], params["width"])
            return _resize_mask(cropped, list(self.size))
        return super().transform(inpt, params)


class Resize(v2.Resize):
    """Resize (shorter side to ``size`` when an int) with centre-aligned nearest for masks."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return _resize_mask(inpt, _output_size(tuple(inpt.shape[-2:]), self.size))
        return super().transform(inpt, params)


def _output_size(size: tuple[int, int], requested: list[int]) -> list[int]:
    """torchvision's resize rule: one number sets the shorter side (longer side truncated)."""
    if len(requested) == 2:
        return list(requested)
    height, width = size
    short, long = min(height, width), max(height, width)
    new_short, new_long = requested[0], int(requested[0] * long / short)
    return [new_short, new_long] if height <= width else [new_long, new_short]


def _finish() -> list[v2.Transform]:
    """uint8 image -> float [0, 1] -> ImageNet normalisation; mask dtype is left alone."""
    return [
        # A plain dtype converts only images and videos, so the mask stays integer.
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        v2.ToPureTensor(),
    ]


def train_transform(
    crop_size: int = 512,
    scale: tuple[float, float] = (0.5, 2.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> v2.Compose:
    """Training augmentation of docs/protocol-2d.md#transforms: random resized crop, horizontal flip,
    normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            RandomResizedCrop(crop_size, scale=tuple(scale), ratio=tuple(ratio), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            *_finish(),
        ]
    )


def eval_transform(mode: str = "crop", crop_size: int = 512) -> v2.Compose:
    """Evaluation transform of docs/protocol-2d.md#transforms.

    "crop": shorter side resized to ``crop_size``, then a centre crop of crop_size x crop_size
    (the reference default, crop_val=True). "whole": the full image at its own resolution.
    """
    if mode == "crop":
        spatial: list[v2.Transform] = [Resize(crop_size, antialias=True), v2.CenterCrop(crop_size)]
    elif mode == "whole":
        spatial = []
    else:
        raise ConfigError(f"data.eval_mode must be one of {EVAL_MODES}, got {mode!r}")
    return v2.Compose([v2.ToImage(), *spatial, *_finish()])

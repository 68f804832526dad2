"""A few test predictions of a step for the run report (docs/report.md#what-a-run-keeps): per image one PNG,
input | ground truth | prediction | errors, side by side, coloured by model channel.

The images are the same at every evaluation of a step (evenly spaced over its test set, which is in
the dataset's order), so that the report shows one set per step and a rewrite gives the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from css.colours import error_colours, label_colours
from css.image.predict import palette
from css.image.transforms import IMAGENET_MEAN, IMAGENET_STD
from css.results.stepdata import SAMPLE_COUNT, evaluating, sample_indices, scored_accuracy

GAP = 2  # white pixels between the panels
MAX_SIDE = 240  # a panel's longer side in pixels at most: the report shows thumbnails, not full images


def channel_colours(num_channels: int) -> np.ndarray:
    """(C, 3) uint8: the colour of every model channel in the sample panels and the report's legend."""
    return palette(max(num_channels, 1))[:num_channels]


def shrink(rgb: np.ndarray, labels: bool) -> np.ndarray:
    """``rgb`` scaled down so that its longer side is at most MAX_SIDE (label colours by nearest neighbour)."""
    h, w = rgb.shape[:2]
    scale = MAX_SIDE / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if labels else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize(size, resample))


def panel(image: torch.Tensor, target: np.ndarray, pred: np.ndarray, num_channels: int) -> np.ndarray:
    """input | ground truth | prediction | errors, (H, 4 W + 3 GAP, 3) uint8, each part at most
    MAX_SIDE pixels on its longer side."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = ((image.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    colours = channel_colours(num_channels)
    parts = [shrink(rgb, False)] + [shrink(part, True) for part in (
        label_colours(target, colours), label_colours(pred, colours), error_colours(pred, target, num_channels))]
    gap = np.full((parts[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    out = [parts[0]]
    for part in parts[1:]:
        out += [gap, part]
    return np.concatenate(out, axis=1)


def write_samples(model: torch.nn.Module, dataset: Any, *, num_channels: int, device: torch.device, out: Path,
                  count: int = SAMPLE_COUNT) -> dict[str, Any]:
    """Write the PNG of ``count`` test images of ``dataset`` into ``out``; returns the manifest
    (css.results.stepdata.write_samples): the channel colours and per image its file, id and pixel
    accuracy over the scored pixels."""
    entries = []
    with evaluating(model):
        for k, i in enumerate(sample_indices(len(dataset), count)):
            image, target = dataset[i]
            pred = model(image.unsqueeze(0).to(device)).logits.argmax(1)[0].cpu().numpy().astype(np.int64)
            target = target.numpy().astype(np.int64)
            name = f"sample{k}.png"
            Image.fromarray(panel(image, target, pred, num_channels)).save(out / name)
            entries.append({"kind": "png", "file": name, "id": str(dataset.ids[i]),
                            "accuracy": scored_accuracy(pred, target, num_channels),
                            "panels": ["input", "ground truth", "prediction", "errors"]})
    return {"colours": channel_colours(num_channels).tolist(), "samples": entries}

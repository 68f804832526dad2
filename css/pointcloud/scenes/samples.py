"""A few whole-scene test predictions for the run report (docs/report.md#what-a-run-keeps): per scene
one ``.npz`` in the layout of the block samples (xyz, ground truth, prediction; kind "xyz"), the
prediction being the step's metric's (every point, css.pointcloud.scenes.evaluation), of which
``MAX_POINTS`` evenly spaced points are kept for the report's 3-D view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from css.pointcloud.channels import class_predictor
from css.pointcloud.render import class_colours
from css.pointcloud.scenes.evaluation import scene_probabilities
from css.results.stepdata import evaluating, sample_indices, scored_accuracy

MAX_POINTS = 4096  # a scene is larger than a block: twice the points of a block sample
COUNT = 2


def write_scene_samples(model: torch.nn.Module, dataset: Any, *, task: Any, step: int, device: torch.device,
                        out: Path, batch_size: int, precision: str = "fp32", count: int = COUNT,
                        max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Write ``count`` test scenes of ``dataset`` into ``out``; returns the manifest
    (css.results.stepdata.write_samples)."""
    num_channels = task.num_classes(step)
    predict = class_predictor(task, step)
    entries = []
    with evaluating(model):
        for k, i in enumerate(sample_indices(len(dataset), count)):
            scene, probs, _ = scene_probabilities(model, dataset, i, num_classes=num_channels, device=device,
                                                  batch_size=batch_size, precision=precision)
            pred = predict(probs.t().unsqueeze(0))[0].cpu().numpy().astype(np.int64)
            target = scene["label"].astype(np.int64)
            keep = np.linspace(0, len(target) - 1, min(max_points, len(target))).astype(np.int64)
            name = f"sample{k}.npz"
            np.savez_compressed(out / name, xyz=scene["coord"][keep].astype(np.float32),
                                target=target[keep].astype(np.int16), pred=pred[keep].astype(np.int16))
            entries.append({"kind": "xyz", "file": name, "id": str(dataset.ids[i]),
                            "accuracy": scored_accuracy(pred, target, num_channels), "points": int(len(target)),
                            "max_points": max_points})
    return {"colours": class_colours(num_channels).tolist(), "samples": entries}

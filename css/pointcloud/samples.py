"""A few test predictions of a point-cloud step for the run report (docs/report.md#what-a-run-keeps):
per block one ``.npz`` with the sampled points' block-local xyz, ground truth and prediction (model
channels), at most ``MAX_POINTS`` points, which the report draws as an interactive 3-D view.

The blocks are evenly spaced over the step's test set, and their points are the seeded test sample
(``data.eval_seed``), so every evaluation of a step shows the same points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from css.pointcloud.channels import class_predictor
from css.pointcloud.render import class_colours
from css.results.stepdata import evaluating, sample_indices, scored_accuracy

MAX_POINTS = 2048  # points per block kept for the report's 3-D view
COUNT = 2  # blocks per step


def write_samples(model: torch.nn.Module, dataset: Any, *, task: Any, step: int, device: torch.device, out: Path,
                  count: int = COUNT, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Write ``count`` test blocks of ``dataset`` into ``out``; returns the manifest
    (css.results.stepdata.write_samples)."""
    num_channels = task.num_classes(step)
    predict = class_predictor(task, step)
    entries = []
    with evaluating(model):
        for k, i in enumerate(sample_indices(len(dataset), count)):
            features, labels = dataset[i]
            pred = predict(model(features.unsqueeze(0).to(device)).logits)[0].cpu().numpy().astype(np.int64)
            keep = slice(0, max_points)  # the sample is random already: its head is too
            target, pred = labels.numpy().astype(np.int64)[keep], pred[keep]
            name = f"sample{k}.npz"
            np.savez_compressed(out / name, xyz=features[:3].T.numpy()[keep].astype(np.float32),
                                target=target.astype(np.int16), pred=pred.astype(np.int16))
            entries.append({"kind": "xyz", "file": name, "id": str(dataset.ids[i]),
                            "accuracy": scored_accuracy(pred, target, num_channels), "points": int(len(target)),
                            "max_points": max_points})
    return {"colours": class_colours(num_channels).tolist(), "samples": entries}

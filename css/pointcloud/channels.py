"""What the point-cloud model's channels are: its input features and how its output channels
become a prediction (docs/pointcloud.md#evaluation)."""

from __future__ import annotations

from css.tasks.task import Task

IN_CHANNELS = 9  # xyz, rgb, normalised xyz (docs/pointcloud-datasets.md); 10 with data.height_feature


def in_channels(cfg) -> int:
    """The model's input channels: 9, or 10 with ``data.height_feature`` (docs/pointcloud-datasets.md#height-feature)."""
    from css.pointcloud.transforms import num_features

    return num_features(cfg.data.height_feature)


def class_predictor(task: Task, step: int):
    """argmax over all channels, or over the class channels 1.. once no point can be background
    (a synthetic background channel and no future class left; docs/pointcloud.md#evaluation)."""
    if task.background is None and not task.future_labels(step):
        return lambda logits: logits[:, 1:].argmax(1) + 1
    return lambda logits: logits.argmax(1)

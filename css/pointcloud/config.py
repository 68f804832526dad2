"""The point-cloud sections of a config (docs/config.md#sections) and their range checks."""

from __future__ import annotations

from dataclasses import dataclass

from css.config.schema import Config, DataConfig, TrainConfig
from css.errors import ConfigError


@dataclass
class PointDataConfig(DataConfig):
    dataset: str = "s3dis"
    num_points: int = 2048
    """Points sampled from a block per access (training and the sampled test metric)."""
    augment: bool = True
    """Training augmentation: rotation about z and jitter (docs/pointcloud-datasets.md)."""
    presence_fraction: float = 0.05
    presence_min_points: int = 100
    """A block shows a class when it has more than max(int(fraction * points), min_points) of it."""
    eval_seed: int = 0
    """Seed of the test-time point sampling: two evaluations of one checkpoint give one number."""
    height_feature: bool = False
    """A 10th input channel: z minus the block's minimum z, in metres (docs/pointcloud-datasets.md#height-feature)."""
    full_coverage: bool | None = None
    """Also score every point of every test block at the end of each step, next to the sampled
    metric (docs/pointcloud-evaluation.md#full-coverage); null/false: the sampled metric only."""


@dataclass
class PointModelConfig:
    arch: str = "dgcnn"
    k: int = 20
    """Neighbours of the dynamic kNN graph."""
    dropout: float = 0.3
    knn_chunk: int | None = None
    """Query points per kNN chunk (null: chosen to keep the distance block small)."""


@dataclass
class PointTrainConfig(TrainConfig):
    """The 3DPC-CISS schedule: Adam 1e-3, weight decay 1e-4, StepLR(50, 0.5), 100 epochs, batch 32."""

    batch_size: int = 32
    lr: float = 0.001
    epochs: int = 100
    optimizer: str = "adam"
    schedule: str = "step"


# Keys of the point-cloud sections with a fixed set of values.
CHOICES: dict[str, tuple[str, ...]] = {"model.arch": ("dgcnn",)}


def check_config(cfg: Config, where: str) -> None:
    """Ranges and combinations of the point-cloud sections (each error names the key and the fix)."""
    d, m = cfg.data, cfg.model
    if cfg.protocol == "mib":
        raise ConfigError(f"{where}protocol: mib is MiB's image conventions (docs/protocol.md#mib-conventions); "
                          f"point clouds take protocol: reference or fixed")
    if d.num_points <= 0:
        raise ConfigError(f"{where}data.num_points must be positive, got {d.num_points}")
    if not 0 <= d.presence_fraction < 1 or d.presence_min_points < 0:
        raise ConfigError(f"{where}data.presence_fraction must be in [0, 1) and data.presence_min_points >= 0, "
                          f"got {d.presence_fraction} and {d.presence_min_points}")
    if m.k < 1 or m.k > d.num_points:
        raise ConfigError(f"{where}model.k must be in 1..data.num_points ({d.num_points}), got {m.k}")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"{where}model.dropout must be in [0, 1), got {m.dropout}")
    if m.knn_chunk is not None and m.knn_chunk < 1:
        raise ConfigError(f"{where}model.knn_chunk must be positive or null, got {m.knn_chunk}")
    if cfg.method.pod not in (None, "none"):
        raise ConfigError(f"{where}method.pod: {cfg.method.pod!r} — Local POD distils 2-D feature maps and has "
                          f"no point-cloud form; remove method.pod (point-cloud presets leave it off)")

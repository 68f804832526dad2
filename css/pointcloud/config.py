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
    unit: str = "block"
    """block: 1 m blocks of num_points points (3DPC-CISS, DGCNN); scene: whole scenes on a voxel grid
    (model.arch: sparse_unet; docs/pointcloud-scenes.md#data)."""
    voxel_size: float = 0.05
    """Scenes: the grid (m): one point per voxel per access; S3DIS 0.05, ScanNet 0.02."""
    max_points: int | None = None
    """Scenes: a training sample is cropped to at most this many points (null: never cropped)."""
    crop: str = "sphere"
    """Scenes: the crop's shape, sphere or box (docs/pointcloud-scenes.md#sampling)."""
    tta_rotations: int = 1
    """Scenes: the test metric sums the softmax over this many rotations about z (1: none)."""


@dataclass
class PointModelConfig:
    arch: str = "dgcnn"
    k: int = 20
    """Neighbours of the dynamic kNN graph."""
    dropout: float = 0.3
    knn_chunk: int | None = None
    """Query points per kNN chunk (null: chosen to keep the distance block small)."""
    preset: str = "small"
    """sparse_unet: spunet (the published SpUNet size, 39 M parameters) or small (1.2 M, a CPU in minutes)."""


@dataclass
class PointTrainConfig(TrainConfig):
    """The 3DPC-CISS schedule: Adam 1e-3, weight decay 1e-4, StepLR(50, 0.5), 100 epochs, batch 32."""

    batch_size: int = 32
    lr: float = 0.001
    epochs: int = 100
    optimizer: str = "adam"
    schedule: str = "step"


# Keys of the point-cloud sections with a fixed set of values.
CHOICES: dict[str, tuple[str, ...]] = {"model.arch": ("dgcnn", "sparse_unet"), "model.preset": ("small", "spunet"),
                                       "data.unit": ("block", "scene"), "data.crop": ("sphere", "box")}
ARCH_OF_UNIT = {"block": "dgcnn", "scene": "sparse_unet"}


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
    if ARCH_OF_UNIT[d.unit] != m.arch:
        raise ConfigError(f"{where}model.arch: {m.arch} does not read data.unit: {d.unit}; DGCNN takes blocks and the "
                          f"sparse UNet whole scenes: set model.arch: {ARCH_OF_UNIT[d.unit]} or data.unit: "
                          f"{'scene' if d.unit == 'block' else 'block'} (docs/pointcloud-scenes.md)")
    if d.unit == "scene":
        check_scene_config(cfg, where)
        return
    if m.k < 1 or m.k > d.num_points:
        raise ConfigError(f"{where}model.k must be in 1..data.num_points ({d.num_points}), got {m.k}")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"{where}model.dropout must be in [0, 1), got {m.dropout}")
    if m.knn_chunk is not None and m.knn_chunk < 1:
        raise ConfigError(f"{where}model.knn_chunk must be positive or null, got {m.knn_chunk}")
    if cfg.method.pod not in (None, "none"):
        raise ConfigError(f"{where}method.pod: {cfg.method.pod!r} — Local POD distils 2-D feature maps and has "
                          f"no point-cloud form; remove method.pod (point-cloud presets leave it off)")


def check_scene_config(cfg: Config, where: str) -> None:
    """The keys of ``data.unit: scene`` (docs/pointcloud-scenes.md#config)."""
    from css.pointcloud.methods import CISS

    d = cfg.data
    if not d.voxel_size > 0:
        raise ConfigError(f"{where}data.voxel_size must be positive (metres), got {d.voxel_size}")
    if d.max_points is not None and d.max_points < 1:
        raise ConfigError(f"{where}data.max_points must be positive or null (no crop), got {d.max_points}")
    if d.tta_rotations < 1:
        raise ConfigError(f"{where}data.tta_rotations must be at least 1 (1: no test-time rotation), got "
                          f"{d.tta_rotations}")
    if d.full_coverage:
        raise ConfigError(f"{where}data.full_coverage scores every point of the test blocks; with data.unit: scene "
                          f"the test metric already scores every point of every scene: remove data.full_coverage")
    if d.height_feature:
        raise ConfigError(f"{where}data.height_feature is a DGCNN block channel; the scene features already hold "
                          f"the height (docs/pointcloud-scenes.md#augmentation): remove data.height_feature")
    if cfg.method.name == CISS:
        raise ConfigError(f"{where}method: {CISS} builds its neighbourhoods from the 2048 points of a 1 m block "
                          f"(docs/pointcloud-ciss.md); it has no whole-scene form: use data.unit: block with "
                          f"model.arch: dgcnn, or another method (docs/pointcloud-scenes.md#methods)")

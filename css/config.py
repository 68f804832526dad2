"""Typed configuration: YAML files (with ``base:`` inheritance) and ``key.sub=value`` overrides,
validated into dataclasses.

A config file is a YAML mapping whose sections mirror the dataclasses below. ``base: other.yaml``
(a path relative to the file, or a list of paths) names files whose values this file overrides;
mappings merge key by key, everything else (lists included) is replaced. Command-line overrides
use dotted keys: ``train.lr=0.01 method.prev_kd=5 task.name=15-5``; the value is parsed as YAML.
Number keys also take scientific notation (``1e-3``, a string to YAML 1.1) and refuse NaN and
infinity (docs/config.md#numbers).

Every unknown key is an error that names the file and the closest valid key. The resolved config
(after inheritance, overrides and the method preset) is what a run folder records.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from css.config_numbers import to_float, to_int
# YAML files and overrides live in css.config_yaml; the names stay importable from here.
from css.config_checks import check_values
# The method section lives in css.config_method; the name stays importable from here.
from css.config_method import MethodConfig  # noqa: F401
from css.config_yaml import apply_overrides, load_yaml_tree, merge, parse_override  # noqa: F401
from css.errors import ConfigError


@dataclass
class DataConfig:
    """Keys every modality's ``data`` section has (docs/config.md#sections)."""

    dataset: str = "voc"
    """voc | ade | folder | synthetic (images); s3dis | scannet | folder | synthetic (point clouds)."""
    root: str = "data"
    """Folder holding the dataset (for voc: the folder that contains PascalVOC2012/; for point
    clouds: the folder python -m css.pointcloud.prepare wrote)."""
    overlap: bool = True
    """Setting (docs/tasks.md#selection): overlap (True) or disjoint (False)."""
    num_workers: int = 4
    cache_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Dataset-specific options (synthetic: sizes and seed)."""


@dataclass
class ImageDataConfig(DataConfig):
    crop_size: int = 512
    scale: list[float] = field(default_factory=lambda: [0.5, 2.0])
    eval_mode: str = "crop"
    """crop: short side resized to crop_size + centre crop (the reference,
    docs/protocol-2d.md#transforms); whole: full images."""


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
class TaskConfig:
    name: str = "15-1"
    """A registered task (css.tasks.list_tasks) or, with ``steps`` given, the name of a user task."""
    steps: list[list[int]] | None = None
    """User-defined task: a list of class groups (dataset label ids), step 0 first."""


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


ModelConfig = ImageModelConfig  # the name earlier versions used


@dataclass
class PointModelConfig:
    arch: str = "dgcnn"
    k: int = 20
    """Neighbours of the dynamic kNN graph."""
    dropout: float = 0.3
    knn_chunk: int | None = None
    """Query points per kNN chunk (null: chosen to keep the distance block small)."""


@dataclass
class StepOverride:
    """Training values that differ at step 0 (the base step); null = same as the other steps."""

    batch_size: int | None = None
    lr: float | None = None
    epochs: int | None = None


@dataclass
class TrainConfig:
    batch_size: int = 24
    """GLOBAL batch size, split evenly over the processes (docs/contracts.md#global-batch)."""
    lr: float = 0.001
    epochs: int = 30
    step0: StepOverride = field(default_factory=StepOverride)
    optimizer: str = "sgd"
    """sgd (momentum, nesterov) | adam (docs/config.md#optimisers)."""
    schedule: str = "poly"
    """poly: lr (1 - i/max_iters)^lr_power stepped every iteration | step: lr x lr_gamma every lr_step epochs."""
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    lr_power: float = 0.9
    lr_step: int = 50
    lr_gamma: float = 0.5
    precision: str = "fp32"
    """fp32 | fp16 (autocast + GradScaler) | bf16 (autocast)."""
    eval_batch_size: int | None = None
    """Global evaluation batch; null = the training batch of the step."""
    max_iters_per_epoch: int | None = None
    """Cap on iterations per epoch (quick experiments and tests); null = the whole loader."""
    log_interval: int = 10
    skip_nonfinite: int = 0
    """Skip up to this many batches per step whose loss is inf/NaN (a warning each; the next one stops
    the run with a TrainingError); fp16 overflows, skipped by the GradScaler, do not count
    (docs/controller.md#non-finite-losses)."""
    dist_timeout: float = 1800.0
    """DDP: seconds a process waits for the others in one collective before it stops with a clear error
    (a hung or stopped process, docs/faults.md#distributed-runs); torch's default, 30 minutes."""
    legacy_eval_mode: bool | None = None
    """Point clouds: train with batch norm and dropout in eval mode from epoch 4 on, as the 3DPC-CISS
    code does by accident (docs/pointcloud.md#protocol); null = on under protocol reference."""
    select_best_on_test: bool | None = None
    """Keep the epoch with the best test mIoU as the step's model, evaluated every
    ``best_on_test_every`` epochs: the 3DPC-CISS joint training does this, which selects on the
    test set (docs/pointcloud-baselines.md#joint-training); null = on under protocol reference for
    a point-cloud task of one step (joint training), off otherwise."""
    best_on_test_every: int = 3
    """Epochs between two test evaluations of ``select_best_on_test`` (3, the reference's interval)."""


@dataclass
class PointTrainConfig(TrainConfig):
    """The 3DPC-CISS schedule: Adam 1e-3, weight decay 1e-4, StepLR(50, 0.5), 100 epochs, batch 32."""

    batch_size: int = 32
    lr: float = 0.001
    epochs: int = 100
    optimizer: str = "adam"
    schedule: str = "step"


@dataclass
class Config:
    name: str = "run"
    modality: str = "image"
    """image | pointcloud."""
    protocol: str = "reference"
    """reference: reproduce the reference code, quirks included; fixed: corrected behaviour
    (docs/contracts.md#protocol)."""
    seed: int = 42
    output_dir: str = "runs"
    device: str = "auto"
    """auto | cpu | cuda."""
    data: DataConfig = field(default_factory=ImageDataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: Any = field(default_factory=ImageModelConfig)
    """ImageModelConfig or PointModelConfig, after the modality (docs/config.md#sections)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# The sections whose keys depend on the modality; a key of the other modality's section is an
# error that says so (docs/config.md#sections).
SECTIONS: dict[str, dict[str, type]] = {
    "image": {"data": ImageDataConfig, "model": ImageModelConfig, "train": TrainConfig},
    "pointcloud": {"data": PointDataConfig, "model": PointModelConfig, "train": PointTrainConfig},
}

CHOICES: dict[str, tuple[str, ...]] = {
    "modality": ("image", "pointcloud"),
    "protocol": ("reference", "fixed"),
    "device": ("auto", "cpu", "cuda"),
    "data.eval_mode": ("crop", "whole"),
    "model.norm": ("iabn_sync", "iabn", "bn"),
    "train.precision": ("fp32", "fp16", "bf16"),
    "train.optimizer": ("sgd", "adam"),
    "train.schedule": ("poly", "step"),
    "model.arch": ("dgcnn",),
    "method.classification": ("ce", "unce", "bce"),
    "method.kd": ("kd", "unkd", "lgkd", "soft", "none"),
    "method.kd_resolution": ("small", "full"),
    "method.regularizer": ("ewc", "rw", "pi", "none"),
    "method.pod": ("local", "none"),
    "method.pseudo": ("entropy", "none"),
}


# ------------------------------------------------------------------------------------------------
# Validation into dataclasses


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, source: str = "") -> Any:
    """Check ``value`` against the annotation ``tp``; allow int -> float, list -> tuple and numbers
    in scientific notation (docs/config.md#numbers)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}{where}: invalid value {value!r}")
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}{where}: expected true or false, got {value!r}")
    if tp is int:  # also 1e3 (YAML reads it as a string), never NaN/inf: docs/config.md#numbers
        return to_int(value, f"{source}{where}")
    if tp is float:  # also 1e-3 (a string to YAML), never NaN/inf: docs/config.md#numbers
        return to_float(value, f"{source}{where}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. task name 50 written without quotes
        raise ConfigError(f"{source}{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    raise ConfigError(f"{source}{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _other_modality(section: str, key: str, modality: str) -> str | None:
    """The modality whose ``section`` has ``key`` when this config's modality does not."""
    for name, sections in SECTIONS.items():
        if name != modality and key in {f.name for f in dataclasses.fields(sections[section])}:
            return name
    return None


def _build(cls: type, data: Any, where: str, source: str = "", modality: str | None = None) -> Any:
    prefix = f"{where}." if where else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    if cls is Config and modality is not None:
        hints.update(SECTIONS[modality])
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            other = _other_modality(where, str(key), modality) if modality and where in SECTIONS[modality] else None
            if other:
                article = "an" if other[0] in "aeiou" else "a"
                raise ConfigError(f"{source}config key '{prefix}{key}' is {article} {other}-only key and this config's "
                                  f"modality is {modality}; remove it (or set modality: {other})")
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}unknown config key '{prefix}{key}'{hint}")
        if cls is Config and key in SECTIONS.get(modality or "", {}):
            kwargs[key] = _build(hints[key], value, key, source, modality)
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
        choices = CHOICES.get(f"{prefix}{key}")
        if modality == "pointcloud" and f"{prefix}{key}" == "model.norm":
            choices = None
        if choices and kwargs[key] is not None and kwargs[key] not in choices:
            raise ConfigError(f"{source}{prefix}{key}: {kwargs[key]!r} is not one of {', '.join(choices)}")
    if cls is Config and modality is not None:
        for key, section in SECTIONS[modality].items():
            kwargs.setdefault(key, section())
    return cls(**kwargs)


def from_dict(data: dict[str, Any], *, source: str = "") -> Config:
    """Validate a plain mapping into a Config (``source`` prefixes error messages, e.g. the file).

    The ``modality`` key picks the data, model and train sections (docs/config.md#sections)."""
    prefix = f"{source}: " if source else ""
    modality = (data or {}).get("modality", "image") if isinstance(data, dict) else "image"
    if modality not in SECTIONS:
        raise ConfigError(f"{prefix}modality: {modality!r} is not one of {', '.join(SECTIONS)}")
    cfg = _build(Config, data, "", prefix, modality)
    check_values(cfg, source)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (with inheritance) and apply ``key.sub=value`` overrides."""
    data = load_yaml_tree(path) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    return from_dict(data, source=str(path) if path is not None else "overrides")


def save_config(cfg: Config, path: str | Path) -> None:
    from css.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def step_value(cfg: Config, key: str, step: int) -> Any:
    """A training value for ``step``: train.step0.<key> at step 0 when given, else train.<key>."""
    if step == 0:
        over = getattr(cfg.train.step0, key)
        if over is not None:
            return over
    return getattr(cfg.train, key)

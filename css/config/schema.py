"""The sections of a config as dataclasses (docs/config.md#sections): the keys every modality has.

A modality adds its own ``data``, ``model`` and ``train`` sections (subclasses or its own classes,
``Modality.config_sections``); css.config.build validates a YAML mapping into them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from css.config.method import MethodConfig


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
class TaskConfig:
    name: str = "15-1"
    """A registered task (css.tasks.list_tasks) or, with ``steps`` given, the name of a user task."""
    steps: list[list[int]] | None = None
    """User-defined task: a list of class groups (dataset label ids), step 0 first."""





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
    data: DataConfig = field(default_factory=DataConfig)
    """The modality's data section (a DataConfig subclass, docs/config.md#sections)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: Any = None
    """The modality's model section (docs/config.md#sections)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def step_value(cfg: Config, key: str, step: int) -> Any:
    """A training value for ``step``: train.step0.<key> at step 0 when given, else train.<key>."""
    if step == 0:
        over = getattr(cfg.train.step0, key)
        if over is not None:
            return over
    return getattr(cfg.train, key)

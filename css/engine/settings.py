"""What the training loop of a step is given (``TrainSettings``) and what it logs of each epoch
(``EpochLog``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainSettings:
    epochs: int
    lr: float
    batch_size: int  # global
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    lr_power: float = 0.9
    precision: str = "fp32"
    num_workers: int = 0
    seed: int = 42
    step: int = 0
    max_iters_per_epoch: int | None = None
    log_interval: int = 10
    optimizer: str = "sgd"
    schedule: str = "poly"
    lr_step: int = 50
    lr_gamma: float = 0.5
    eval_mode_from_epoch: int | None = None
    """Train with norm layers and dropout in eval mode from this (0-based) epoch on; None: never."""
    skip_nonfinite: int = 0
    """Batches with an inf/NaN loss skipped per step before a TrainingError (docs/controller.md#non-finite-losses)."""
    protocol: str = "reference"
    """Under "fixed" the training sampler does not pad (docs/process-count.md#what-is-guaranteed)."""


@dataclass
class EpochLog:
    epoch: int
    terms: dict[str, float]
    lr: float
    seconds: float
    iterations: int
    skipped: int = 0
    """Updates skipped: fp16 overflows (GradScaler) and non-finite batches (``nonfinite``)."""
    nonfinite: int = 0
    """Batches skipped for an inf/NaN loss under train.skip_nonfinite (docs/controller.md#non-finite-losses)."""

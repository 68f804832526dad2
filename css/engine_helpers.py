"""What the training loop of css.engine is given and logs, and its small helpers: the step's
TrainSettings, the EpochLog of each epoch, autocast for train.precision
(docs/protocol-2d.md#mixed-precision) and the checks for non-finite losses and gradients
(docs/controller.md#non-finite-losses). Their names stay importable from css.engine.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch


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


def _gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one device sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def _nonfinite_terms(terms: dict[str, Any], loss: torch.Tensor) -> str:
    """``ce=nan, kd=inf``: the loss terms that are not finite (the total when no term is)."""
    vals = {k: float(v) for k, v in terms.items()}
    bad = {k: v for k, v in vals.items() if not math.isfinite(v)} or {"total": float(loss)}
    return ", ".join(f"{k}={v}" for k, v in bad.items())


def finite_or_none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

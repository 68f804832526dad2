"""Optimiser and learning-rate schedule of a step (docs/config.md#optimisers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from css.checkpoint import unwrap
from css.errors import ConfigError

if TYPE_CHECKING:
    from css.engine.settings import TrainSettings


def poly_lambda(max_iters: int, power: float) -> Callable[[int], float]:
    """lr_i = base_lr * (1 - i / max_iters) ** power, i = scheduler steps so far
    (docs/protocol-2d.md#optimiser-and-schedule)."""
    return lambda i: max(0.0, 1.0 - i / max_iters) ** power


def step_lambda(iters_per_epoch: int, step_epochs: int, gamma: float) -> Callable[[int], float]:
    """StepLR by epochs, stepped per iteration: lr_i = base_lr * gamma ** (epoch(i) // step_epochs)
    (docs/config.md#optimisers; 3DPC-CISS: 50 epochs, 0.5)."""
    return lambda i: gamma ** ((i // max(1, iters_per_epoch)) // step_epochs)


def build_optimizer(model: torch.nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    # One optimiser over every trainable parameter, all with weight decay (norms and biases too):
    # SGD Nesterov for images (docs/protocol-2d.md#optimiser-and-schedule), Adam with coupled L2 for
    # point clouds (docs/config.md#optimisers).
    params = [p for p in unwrap(model).parameters() if p.requires_grad]
    if s.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    elif s.optimizer != "sgd":
        raise ConfigError(f"train.optimizer: {s.optimizer!r} is not one of sgd, adam")
    else:
        optimizer = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov,
                                    weight_decay=s.weight_decay)
    inner = unwrap(model)
    if getattr(inner, "has_pinned_rows", False):
        # A separate classifier (docs/pointcloud-baselines.md#separate-classifier): the old class
        # rows share a tensor with the trained background row, so they are written back after
        # every step instead of being left out of the optimiser.
        optimizer.register_step_post_hook(lambda *_: inner.restore_pinned())
    return optimizer


def build_schedule(s: TrainSettings, iters_per_epoch: int, max_iters: int) -> Callable[[int], float]:
    if s.schedule == "step":
        return step_lambda(iters_per_epoch, s.lr_step, s.lr_gamma)
    if s.schedule != "poly":
        raise ConfigError(f"train.schedule: {s.schedule!r} is not one of poly, step")
    return poly_lambda(max_iters, s.lr_power)

"""Precision and finiteness in the training loop: autocast for ``train.precision``
(docs/protocol-2d.md#mixed-precision) and the checks for non-finite losses and gradients
(docs/controller.md#non-finite-losses)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one device sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def nonfinite_terms(terms: dict[str, Any], loss: torch.Tensor) -> str:
    """``ce=nan, kd=inf``: the loss terms that are not finite (the total when no term is)."""
    vals = {k: float(v) for k, v in terms.items()}
    bad = {k: v for k, v in vals.items() if not math.isfinite(v)} or {"total": float(loss)}
    return ", ".join(f"{k}={v}" for k, v in bad.items())

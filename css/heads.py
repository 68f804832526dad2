"""The incremental classifier shared by every segmentation model (images and point clouds).

A class-incremental model has one 1x1 classifier convolution ("head") per learning step; its
logits are the heads' outputs concatenated along the channel dimension, step 0 first. Channel 0,
the background, is the first output row of head 0 in every step (LGKD and MiB-style methods need
a background channel in both the old and the new model, docs/pointcloud-model.md#heads).

:class:`IncrementalHead` is an ``nn.ModuleList`` of those convolutions, so a model that stores it
as ``self.cls`` has the state-dict keys ``cls.{i}.weight`` (and ``cls.{i}.bias``):

- images (css.image.models.DeepLabV3): ``nn.Conv2d(in_channels, n_i, 1, bias=True)``, PyTorch's
  default initialisation;
- point clouds (css.pointcloud.models.DGCNNSeg): ``nn.Conv1d(in_channels, n_i, 1, bias=False)``,
  Kaiming-normal initialisation (std = sqrt(2 / in_channels)).

Usage::

    self.cls = IncrementalHead(256, [16], dims=2, bias=True)
    logits = self.cls(features)              # (B, sum(n_i), *S)
    self.cls.add_classes(1)                  # a new step: one more head
    self.cls.init_new_head_from_background() # new rows start as the background row
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from css.errors import ConfigError

__all__ = ["IncrementalHead", "IncrementalModel", "INITS"]

INITS = ("default", "kaiming_normal")
"""Initialisations of a new head: PyTorch's default for the conv type, or Kaiming-normal
(fan-in, ReLU gain: std = sqrt(2 / in_channels)) with a zero bias."""

_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}


class IncrementalHead(nn.ModuleList):
    """One 1x1 classifier convolution per step; ``forward`` concatenates their outputs (dim 1).

    Args:
        in_channels: channels of the features the heads classify.
        classes_per_step: output channels of each head, step 0 first (step 0 includes the
            background channel 0).
        dims: 2 for Conv2d heads on (B, C, H, W) maps, 1 for Conv1d heads on (B, C, N) points.
        bias: whether the convolutions have a bias.
        init: "default" or "kaiming_normal" (see :data:`INITS`), used for every head this object
            creates, the initial ones and those of :meth:`add_classes`.

    Indexing with a slice returns a plain ``nn.ModuleList`` of the selected heads.
    """

    def __init__(
        self,
        in_channels: int,
        classes_per_step: Sequence[int],
        *,
        dims: int = 2,
        bias: bool = True,
        init: str = "default",
    ) -> None:
        if dims not in _CONVS:
            raise ValueError(f"dims must be 1 (Conv1d) or 2 (Conv2d), got {dims!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        counts = list(classes_per_step)
        if not counts or any(int(n) < 1 for n in counts):
            raise ConfigError(
                f"classes_per_step must be a non-empty list of positive counts, got {counts}"
            )
        super().__init__()
        self.in_channels = int(in_channels)
        self.dims = dims
        self.bias = bool(bias)
        self.init = init
        for n in counts:
            self.append(self._new_conv(int(n)))

    def __getitem__(self, idx: int | slice) -> nn.Module | nn.ModuleList:  # type: ignore[override]
        if isinstance(idx, slice):
            # nn.ModuleList would call our constructor with a list of modules.
            return nn.ModuleList(list(self._modules.values())[idx])
        return super().__getitem__(idx)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, dims={self.dims}, bias={self.bias}, init={self.init}"

    def _new_conv(self, num_classes: int) -> nn.Module:
        conv = _CONVS[self.dims](self.in_channels, num_classes, 1, bias=self.bias)
        if self.init == "kaiming_normal":
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        return conv

    @property
    def classes_per_step(self) -> list[int]:
        """Output channels of each head, step 0 first."""
        return [conv.out_channels for conv in self]

    @property
    def num_classes(self) -> int:
        """Total number of output channels (the logits' C)."""
        return sum(self.classes_per_step)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes, *S) of features (B, in_channels, *S): the heads' outputs concatenated."""
        return torch.cat([conv(x) for conv in self], dim=1)

    def add_classes(self, num_new: int) -> nn.Module:
        """Append a head with ``num_new`` classes for a new step, on head 0's device and dtype.

        The head is initialised with ``init``; call :meth:`init_new_head_from_background` to start
        it from the background row instead. Returns the new convolution.
        """
        if int(num_new) < 1:
            raise ConfigError(f"a new step must add at least one class, got {num_new}")
        ref = self[0].weight
        conv = self._new_conv(int(num_new)).to(device=ref.device, dtype=ref.dtype)
        self.append(conv)
        return conv

    @torch.no_grad()
    def init_new_head_from_background(self) -> None:
        """Initialise the last head from the background row (MiB's "init_balanced").

        Every weight row of the last head becomes w_bg = head 0's row 0. With biases, every new
        bias and the background bias (head 0's bias[0]) become b_bg - ln(n_new + 1), b_bg being
        the background bias before the call and n_new the last head's class count: background
        and the new classes then share one logit, so the softmax splits the old background
        probability evenly among the n_new + 1 of them.

        Bias-free heads (point clouds) only copy the weight row: the -ln(n_new + 1) shift needs a
        bias and is therefore not applied. The new classes and the background then have equal
        logits, so each of them gets what the background alone had before, renormalised with the
        other classes (the background's share is not split as with biases).
        """
        if len(self) < 2:
            raise ValueError("init_new_head_from_background needs a new head: call add_classes first")
        background, new = self[0], self[-1]
        new.weight.copy_(background.weight[0:1].expand_as(new.weight))
        if self.bias:
            shifted = background.bias[0] - math.log(new.out_channels + 1)
            new.bias.fill_(shifted)
            background.bias[0] = shifted


class IncrementalModel(nn.Module):
    """Base of the segmentation models whose classifier is an ``IncrementalHead`` at ``self.cls``:
    the per-step head bookkeeping every model exposes (docs/contracts.md#models-both-modalities)."""

    cls: IncrementalHead

    @property
    def classes_per_step(self) -> list[int]:
        """Output channels of each classifier head, step 0 first."""
        return self.cls.classes_per_step

    @property
    def num_classes(self) -> int:
        return self.cls.num_classes

    def add_classes(self, num_new: int) -> nn.Module:
        """Append a classifier head for a new step with ``num_new`` classes (the head's own init)."""
        return self.cls.add_classes(num_new)

    def init_new_head_from_background(self) -> None:
        """Initialise the last head from the background row (docs/methods.md#balanced-init): with a
        bias, rows = background row and biases b_bg - ln(n_new + 1); bias-free, the rows only."""
        self.cls.init_new_head_from_background()

    def freeze_all_but_new_head(self) -> None:
        """Freeze and add (docs/pointcloud-baselines.md#freeze-and-add): every parameter but the last
        head's stops requiring gradients, and every module but the last head stays in eval mode
        from now on, whatever ``train()`` is called with, so batch-norm statistics and dropout of
        the frozen part behave as in model(t-1) at test time."""
        if len(self.cls) < 2:
            raise ValueError("freeze_all_but_new_head needs a new head: call add_classes first")
        trainable = {id(p) for p in self.cls[len(self.cls) - 1].parameters()}
        for p in self.parameters():
            if id(p) not in trainable:
                p.requires_grad_(False)
        self._body_frozen = True
        self.train(self.training)

    def separate_classifier(self) -> None:
        """Train a separate [background, novel] classifier (docs/pointcloud-baselines.md#separate-classifier).

        The heads of the earlier steps keep their class rows: head 0's rows 1.. are pinned (their
        values are written back after every optimiser step, ``restore_pinned``, so neither weight
        decay nor Adam moves them) and the heads of steps 1..t-1 stop requiring gradients. Head 0's
        background row starts afresh (Kaiming-normal, zero bias) and trains with the new head, as
        the published new classifier's background row does."""
        if len(self.cls) < 2:
            raise ValueError("separate_classifier needs a new head: call add_classes first")
        head0 = self.cls[0]
        for conv in list(self.cls)[1:-1]:
            conv.requires_grad_(False)
        head0.requires_grad_(True)  # also under freeze_body: the background row is the new classifier's
        with torch.no_grad():
            nn.init.kaiming_normal_(head0.weight[0:1], mode="fan_in", nonlinearity="relu")
            if head0.bias is not None:
                head0.bias[0] = 0.0
        # Non-persistent buffers: they follow .to(device) but stay out of the state dict.
        head0.register_buffer("pinned_weight", head0.weight[1:].detach().clone(), persistent=False)
        if head0.bias is not None:
            head0.register_buffer("pinned_bias", head0.bias[1:].detach().clone(), persistent=False)

    @property
    def has_pinned_rows(self) -> bool:
        return hasattr(self.cls[0], "pinned_weight")

    @torch.no_grad()
    def restore_pinned(self) -> None:
        """Write the pinned old-class rows of head 0 back (after an optimiser step)."""
        head0 = self.cls[0]
        if hasattr(head0, "pinned_weight"):
            head0.weight[1:].copy_(head0.pinned_weight)
        if hasattr(head0, "pinned_bias"):
            head0.bias[1:].copy_(head0.pinned_bias)

    @property
    def body_frozen(self) -> bool:
        return bool(getattr(self, "_body_frozen", False))

    def train(self, mode: bool = True) -> IncrementalModel:
        super().train(mode)
        if self.body_frozen:
            # The engine calls train() every epoch; the frozen part goes back to eval mode and only
            # the new head (a convolution without mode-dependent behaviour) follows ``mode``.
            for child in self.children():
                child.eval()
            self.cls[len(self.cls) - 1].train(mode)
        return self


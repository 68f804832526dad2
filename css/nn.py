"""Modality-agnostic building blocks shared by the image and point-cloud models.

- :class:`SegOutput`, the output contract of every segmentation model
  (docs/contracts.md#models-both-modalities).
- :class:`BatchNormAct`, batch normalisation followed by an activation, for inputs of any
  dimensionality, optionally synchronised across processes. It is our pure-torch stand-in for
  InPlaceABNSync (docs/protocol-2d-model.md#normalisation) where that library cannot run:
  ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so it cannot be used in gloo (CPU) data-parallel runs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from css.distributed import process_group_up

__all__ = ["SegOutput", "BatchNormAct", "ACTIVATIONS"]

ACTIVATIONS = ("leaky_relu", "identity")


class _AllReduceSum(torch.autograd.Function):
    """A differentiable sum over the processes of ``group``, on the public ``torch.distributed.all_reduce``
    (``torch.distributed.nn.functional.all_reduce`` is deprecated in torch 2.14). Every process's
    output is the same sum, so the gradient of an input is the sum of the output's gradients over
    the processes: one more all-reduce."""

    @staticmethod
    def forward(ctx, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = tensor.clone()
        torch.distributed.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad, group=ctx.group)
        return grad, None


def differentiable_all_reduce(tensor: Tensor, group: Any = None) -> Tensor:
    """The sum of ``tensor`` over the processes of ``group``, differentiable (docs/contracts.md#global-batch)."""
    return _AllReduceSum.apply(tensor, group)


class SegOutput(NamedTuple):
    """What a segmentation model returns (docs/contracts.md#models-both-modalities).

    logits: (B, C, *S) at input resolution (per point for clouds).
    logits_small: the stride-16 (or 8) logits for images; the same tensor as ``logits`` for points.
    features: e.g. "attentions" (list of maps for POD, the last being pre-logits), "body" (ILT).
    """

    logits: Tensor
    logits_small: Tensor
    features: dict[str, Any]


class BatchNormAct(_BatchNorm):
    """Batch normalisation over every dimension but the channel one (dim 1), then an activation.

    y = act(weight * (x - mean) / sqrt(var + eps) + bias), with act = leaky_relu(slope
    ``activation_param``) or identity. Unlike InPlaceABN the scale is ``weight`` itself, not
    |weight| + eps (docs/protocol-2d-model.md#normalisation); css.image.weights converts imported
    InPlaceABN weights.

    With ``sync=True``, in training mode, when torch.distributed is initialised and the process
    group (``process_group`` or the default group) has more than one process, the batch moments are
    all-reduced so that outputs, gradients and running statistics equal those of a single process
    normalising the concatenated global batch. The all-reduce is differentiable
    (``differentiable_all_reduce``, on torch.distributed.all_reduce; gloo and nccl), so gradients
    flow to the inputs of every process. Running variance uses the unbiased global variance, as in InPlaceABN.

    Accepts inputs of 2 to 5 dimensions: (B, C), (B, C, N), (B, C, H, W), (B, C, D, H, W).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        activation: str = "leaky_relu",
        activation_param: float = 0.01,
        sync: bool = False,
        process_group: Any = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.activation_param = activation_param
        self.sync = sync
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if not 2 <= input.dim() <= 5:
            raise ValueError(f"expected a 2-D to 5-D input (B, C, ...), got {input.dim()}-D")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}, sync={self.sync}"

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if self._sync_active():
            out = self._sync_forward(input)
        else:
            # _BatchNorm.forward: F.batch_norm with the usual running-statistics bookkeeping.
            out = super().forward(input)
        return self._activate(out)

    def _activate(self, x: Tensor) -> Tensor:
        if self.activation == "leaky_relu":
            # In place is safe: neither F.batch_norm's backward nor our affine step needs its output.
            return F.leaky_relu(x, self.activation_param, inplace=True)
        return x

    def _sync_active(self) -> bool:
        """Whether this call must all-reduce the batch moments."""
        if not (self.sync and self.training):
            return False
        if not process_group_up():
            return False
        return torch.distributed.get_world_size(self.process_group) > 1

    def _sync_forward(self, x: Tensor) -> Tensor:
        """Normalise with the moments of the global batch (all processes of the group).

        Two all-reduces, [sum, count] then the sum of squared deviations from the global mean,
        so the variance is as exact as a single process's two-pass one (E[x^2] - E[x]^2 in one
        reduce cancels badly when |mean| >> std). Half-precision inputs are computed in float32,
        as F.batch_norm does.
        """
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        view = (1, channels) + (1,) * (x.dim() - 2)
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        xc = x.to(dtype)
        count = torch.full((1,), x.numel() // channels, dtype=dtype, device=x.device)
        sums = differentiable_all_reduce(torch.cat([xc.sum(dims), count]), self.process_group)
        n = sums[channels]
        n_items = int(n.item())
        if n_items <= 1:
            raise ValueError(
                f"BatchNormAct needs more than 1 value per channel when training, got a global "
                f"input of shape {tuple(x.shape)} summed over all processes ({n_items} value(s))"
            )
        mean = sums[:channels] / n
        centred = xc - mean.view(view)
        var = differentiable_all_reduce((centred * centred).sum(dims), self.process_group) / n
        self._update_running_stats(mean.detach(), var.detach() * (n_items / (n_items - 1)))
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(dtype)
        out = centred * scale.view(view)
        if self.bias is not None:
            out = out + self.bias.to(dtype).view(view)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, unbiased_var: Tensor) -> None:
        """Exponential (or cumulative, momentum=None) running averages, as in _BatchNorm."""
        if not self.track_running_stats or self.running_mean is None:
            return
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var.to(self.running_var.dtype), alpha=factor)

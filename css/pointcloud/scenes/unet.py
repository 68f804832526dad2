"""A sparse-voxel UNet for whole scenes (docs/pointcloud-scenes.md#backbone), on spconv.

The shape the field uses (MinkUNet / SpUNet): a 5^3 submanifold stem, four encoder stages (a
stride-2 sparse convolution, then residual blocks of two 3^3 submanifold convolutions), and four
decoder stages (a stride-2 transposed convolution back to the skip's voxels, concatenation with
that skip, then residual blocks), batch norm and ReLU throughout. The decoder's last features are
classified by the shared incremental head (css.heads), one head per step with background channel 0
in head 0, as for DGCNN.

Presets (``PRESETS``): ``spunet`` is the published size (encoder 32-64-128-256 after a 32-channel
stem, decoder 256-128-96-96, blocks 2-3-4-6 / 2-2-2-2); ``small`` trains on a CPU in minutes.

``forward(features (N, C_in), grid (N, 3) voxel coordinates, offsets (B,))``, or ``forward(batch)`` with
a ``css.pointcloud.scenes.sampling.SceneBatch`` of them, takes the points of a batch concatenated. Points of one sample that
share a voxel are averaged into it and all get its prediction; samples never mix. It returns
``SegOutput(logits (1, C, N), the same tensor, {"body": decoder features (1, F, N), "pre_logits": the
same, "attentions": []})``: per-point logits in the layout the losses take.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from css.errors import ConfigError, require
from css.heads import IncrementalHead, IncrementalModel
from css.nn import BatchNormAct, SegOutput
from css.pointcloud.scenes.sampling import point_samples

PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "spunet": {"stem": (32,), "channels": (32, 64, 128, 256, 256, 128, 96, 96), "layers": (2, 3, 4, 6, 2, 2, 2, 2)},
    "small": {"stem": (16,), "channels": (16, 32, 64, 64, 64, 32, 32, 32), "layers": (1, 1, 1, 1, 1, 1, 1, 1)},
}
INSTALL = "pip install spconv==2.3.8 (CPU; on CUDA 12 machines spconv-cu120 2.3.8)"


def sparse_library() -> Any:
    """``spconv.pytorch``, made to run its backward pass on a machine without CUDA: spconv asks torch
    for the current CUDA stream there, which fails without a driver; it gets stream 0 instead."""
    spconv = require("spconv.pytorch", needed_for="model.arch: sparse_unet", install=INSTALL)
    if not torch.cuda.is_available() and not _GUARDED:
        _GUARDED.append(True)
        # spconv's modules import the function by name: replace every copy of it
        original = require("spconv.pytorch.cppcore", needed_for="model.arch: sparse_unet",
                           install=INSTALL).get_current_stream
        for name, module in list(sys.modules.items()):
            if name.startswith("spconv.") and getattr(module, "get_current_stream", None) is original:
                module.get_current_stream = _no_stream
    return spconv


def _no_stream() -> int:
    return 0


_GUARDED: list[bool] = []  # the stream guard is in place (once per process)


# spconv's CPU kernels run on torch's intra-op threads and race there: with two threads a submanifold
# convolution is off a dense conv3d by up to 20 % of its outputs, with one it is exact
# (docs/pointcloud-scenes.md#the-sparse-convolution-library). On a CPU the network's sparse part
# therefore runs on one thread, forward (``one_thread``) and backward (``_ThreadGate`` at both ends).

@contextmanager
def one_thread(active: bool) -> Iterator[None]:
    """torch on one intra-op thread inside the block when ``active``, the thread count restored after."""
    if not active:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _ThreadGate(torch.autograd.Function):
    """An identity whose backward sets the thread count: at the sparse part's output (``opens``) the
    backward pass through it starts on one thread; at its input, the last node of that pass gives
    the threads back."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, state: dict, opens: bool) -> Tensor:
        ctx.state, ctx.opens = state, opens
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.opens:
            ctx.state["threads"] = torch.get_num_threads()
            torch.set_num_threads(1)
        elif "threads" in ctx.state:
            torch.set_num_threads(ctx.state.pop("threads"))
        return grad, None, None


def _norm(channels: int) -> BatchNormAct:
    # synchronised across processes under DDP (BatchNormAct decides per call), so that 2 processes
    # train like 1 on the same global batch; ReLU is leaky_relu with slope 0
    return BatchNormAct(channels, activation="leaky_relu", activation_param=0.0, sync=True)


class _Block(nn.Module):
    """Residual block: two 3^3 submanifold convolutions with batch norm, a 1x1 projection when the
    channels change, ReLU after the sum."""

    def __init__(self, spconv: Any, in_channels: int, channels: int, key: str) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(in_channels, channels, 3, padding=1, bias=False, indice_key=key)
        self.norm1 = _norm(channels)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=key)
        self.norm2 = BatchNormAct(channels, activation="identity", sync=True)
        self.project = None
        if in_channels != channels:
            self.project = nn.Sequential(nn.Linear(in_channels, channels, bias=False),
                                         BatchNormAct(channels, activation="identity", sync=True))

    def forward(self, x: Any) -> Any:
        shortcut = x.features if self.project is None else self.project(x.features)
        y = self.conv1(x)
        y = y.replace_feature(self.norm1(y.features))
        y = self.conv2(y)
        return y.replace_feature(torch.relu(self.norm2(y.features) + shortcut))


class SparseUNet(IncrementalModel):
    """The incremental sparse-voxel UNet (module docstring)."""

    def __init__(self, classes_per_step: Sequence[int], in_channels: int = 6, preset: str = "small") -> None:
        super().__init__()
        if preset not in PRESETS:
            raise ConfigError(f"model.preset: {preset!r} is not a sparse UNet preset; valid: {', '.join(PRESETS)}")
        spconv = sparse_library()  # not kept on the model: a module object cannot be copied or pickled
        self.in_channels = int(in_channels)
        self.preset = preset
        shape = PRESETS[preset]
        stem, channels, layers = shape["stem"][0], shape["channels"], shape["layers"]
        self.stem = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, stem, 5, padding=2, bias=False, indice_key="stem"), _norm(stem))
        self.down, self.encoder = nn.ModuleList(), nn.ModuleList()
        skips, previous = [], stem
        for s in range(4):
            skips.append(previous)
            self.down.append(spconv.SparseSequential(
                spconv.SparseConv3d(previous, channels[s], 2, stride=2, bias=False, indice_key=f"down{s}"),
                _norm(channels[s])))
            self.encoder.append(nn.ModuleList([_Block(spconv, channels[s], channels[s], f"sub{s + 1}")
                                               for _ in range(layers[s])]))
            previous = channels[s]
        self.up, self.decoder = nn.ModuleList(), nn.ModuleList()
        for d in range(4):
            level = 3 - d  # back to the voxels of encoder level ``level`` (the stem's for d = 3)
            out = channels[4 + d]
            self.up.append(spconv.SparseSequential(
                spconv.SparseInverseConv3d(previous, out, 2, bias=False, indice_key=f"down{level}"), _norm(out)))
            key = f"sub{level}"  # the encoder's blocks at this level share it (the stem's 5^3 kernel does not)
            self.decoder.append(nn.ModuleList([_Block(spconv, out + skips[level] if i == 0 else out, out, key)
                                               for i in range(layers[4 + d])]))
            previous = out
        self.feature_channels = previous
        self.cls = IncrementalHead(previous, classes_per_step, dims=1, bias=True, init="kaiming_normal")
        """One nn.Conv1d(F, n_i, 1) per step (css.heads.IncrementalHead)."""

    def forward(self, features: Any, grid: Tensor | None = None, offsets: Tensor | None = None) -> SegOutput:
        """``features`` (N, C_in), ``grid`` and ``offsets``, or a ``SceneBatch`` alone (what the engine passes)."""
        if grid is None:
            features, grid, offsets = features.features, features.grid, features.offsets
        if features.dim() != 2 or features.shape[1] != self.in_channels:
            raise ValueError(f"the sparse UNet expects features (N, {self.in_channels}), got {tuple(features.shape)}")
        if grid.shape != (features.shape[0], 3) or offsets.dim() != 1 or int(offsets[-1]) != features.shape[0]:
            raise ValueError(f"grid must be (N, 3) voxel coordinates and offsets end at N = {features.shape[0]}; "
                             f"got grid {tuple(grid.shape)}, offsets {offsets.tolist()}")
        sample = point_samples(offsets)
        keys = torch.cat([sample[:, None], grid.long()], dim=1)
        voxels, inverse = torch.unique(keys, dim=0, return_inverse=True)
        counts = torch.bincount(inverse, minlength=len(voxels)).clamp(min=1).to(features.dtype)
        pooled = torch.zeros(len(voxels), features.shape[1], dtype=features.dtype, device=features.device)
        pooled = pooled.index_add(0, inverse, features) / counts[:, None]
        # each sample from its own corner: its stride-2 grid, hence its output, is that of the sample alone
        corner = torch.full((len(offsets), 3), torch.iinfo(torch.int64).max, dtype=torch.int64, device=grid.device)
        corner = corner.scatter_reduce(0, voxels[:, :1].expand(-1, 3), voxels[:, 1:], reduce="amin")
        local = voxels[:, 1:] - corner[voxels[:, 0]]
        indices = torch.cat([voxels[:, :1], local], dim=1).int()
        # a multiple of 2^4, so that the four stride-2 levels keep at least one voxel per axis
        shape = (((local.amax(dim=0) + 1 + 15) // 16) * 16).tolist()
        on_cpu = features.device.type == "cpu"
        gated = on_cpu and torch.is_grad_enabled()
        state: dict = {}
        if gated:  # the input gate must be in the graph so that its backward gives the threads back
            pooled = _ThreadGate.apply(pooled.requires_grad_() if not pooled.requires_grad else pooled, state, False)
        with one_thread(on_cpu):
            x = sparse_library().SparseConvTensor(pooled, indices, shape, len(offsets))
            x = self.stem(x)
            skips = []
            for down, blocks in zip(self.down, self.encoder):
                skips.append(x)
                x = down(x)
                for block in blocks:
                    x = block(x)
            for up, blocks, skip in zip(self.up, self.decoder, reversed(skips)):
                x = up(x)
                x = x.replace_feature(torch.cat([x.features, skip.features], dim=1))
                for block in blocks:
                    x = block(x)
        decoded = _ThreadGate.apply(x.features, state, True) if gated else x.features
        body = decoded[inverse].t().unsqueeze(0)  # (1, F, N): back to the points
        logits = self.cls(body)
        return SegOutput(logits, logits, {"body": body, "pre_logits": body, "attentions": []})


def build_sparse_unet(classes_per_step: Sequence[int], in_channels: int = 6, preset: str = "small") -> SparseUNet:
    """The sparse UNet with one classifier head per entry of ``classes_per_step`` (channel 0 background)."""
    return SparseUNet(classes_per_step, in_channels, preset)

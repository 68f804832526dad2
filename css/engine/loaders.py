"""Data loaders of a step (docs/contracts.md#global-batch): the global batch split over the
processes, per-sample seeding (augmentation independent of process, worker and resume), the
evaluation sampler, and clean errors from DataLoader workers (docs/controller.md).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from css.checkpoint import rng_state, set_rng_state
from css.config.protocols import quirks
from css.distributed import DistEnv, derived_seed, seed_everything
from css.errors import ConfigError, CSSError

if TYPE_CHECKING:
    from css.engine.settings import TrainSettings


def local_batch(global_batch: int, env: DistEnv, what: str = "train.batch_size") -> int:
    """Each process takes global / world size samples (docs/contracts.md#global-batch: the config
    holds the global batch)."""
    if global_batch % env.world_size:
        raise ConfigError(f"{what}={global_batch} is the GLOBAL batch and must be divisible by the "
                          f"number of processes ({env.world_size}); choose a multiple of {env.world_size}")
    return global_batch // env.world_size


class SeededDataset(Dataset):
    """Draws each sample's augmentation from a seed of (seed, step, epoch, index).

    The random crop and flip of a sample then do not depend on which process or DataLoader worker
    loads it, nor on whether the run was resumed: a 2-process run sees exactly the augmented
    batches of a 1-process run with the same global batch (docs/contracts.md#global-batch).
    The caller's RNG states are restored after the sample is loaded, so with ``num_workers: 0``
    the main process's random stream is not reset by every sample it loads.
    """

    def __init__(self, dataset: Dataset, seed: int, step: int):
        self.dataset, self.seed, self.step, self.epoch = dataset, seed, step, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        caller = rng_state()
        seed_everything(derived_seed(self.seed, self.step, self.epoch, index))
        try:
            return self.dataset[index]
        finally:
            set_rng_state(caller)


_WRAPPER = "Original Traceback (most recent call last):"


def _original_message(exc: CSSError) -> str:
    """The message a CSSError had in a DataLoader worker, without PyTorch's "Caught X in DataLoader
    worker process N. Original Traceback ..." wrapper (docs/controller.md#errors-in-loader-workers).
    The traceback text ends with ``module.ClassName: message``; a message of several lines is kept whole."""
    text = str(exc)
    if not text.startswith(f"Caught {type(exc).__name__} ") or _WRAPPER not in text:
        return text
    cls = type(exc)
    tail = text.split(_WRAPPER, 1)[1]
    for head in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        at = tail.rfind("\n" + head)
        if at >= 0:
            return tail[at + 1 + len(head):].rstrip("\n")
    return text


def clean_worker_errors(loader: Any) -> Iterator[Any]:
    """Iterate ``loader``; a CSSError raised in a worker process reaches the user as the same one-line
    message as with ``num_workers: 0`` (docs/contracts.md#errors, docs/controller.md#errors-in-loader-workers)."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except CSSError as exc:
            message = _original_message(exc)
            if message == str(exc):
                raise
            raise type(exc)(message) from None
        yield batch


def _seed_worker(worker_id: int) -> None:
    # DataLoader gives every worker torch seed base_seed + id; derive numpy/python from it so
    # augmentations that use them are reproducible too.
    import random

    import numpy as np

    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)


def pads_train_sampler(protocol: str) -> bool:
    """Whether the training sampler pads the shuffled order to a multiple of the process count (the
    published code's does; docs/process-count.md#what-is-guaranteed)."""
    return quirks(protocol) == "reference"


def shard_size(num_samples: int, world_size: int, protocol: str) -> int:
    """Samples each process's training sampler yields per epoch (``len(DistributedSampler)``)."""
    if pads_train_sampler(protocol):
        return -(-num_samples // world_size)
    return num_samples // world_size


def train_loader(dataset: Dataset, env: DistEnv, s: TrainSettings, collate: Callable | None = None) -> DataLoader:
    """Shuffled, drop_last loader over this process's shard (docs/protocol-2d.md#processes-and-batch:
    DistributedSampler with seed 0 + set_epoch, drop_last=True)."""
    if len(dataset) == 0:
        raise ConfigError(f"the training set of step {s.step} is empty: no image/block holds a class of this "
                          f"step; check data.root, the task and data.overlap")
    b = local_batch(s.batch_size, env)
    dataset = SeededDataset(dataset, s.seed, s.step)
    # The reference's sampler pads the shuffled order to a multiple of W by repeating its head, so
    # with N % B == B - 1 (W = 2) a W-process step gets one more iteration, partly of repeated
    # samples, than a 1-process step (floor(ceil(N / W) / b) > floor(N / B)). Without padding
    # (drop_last in the sampler) every W runs floor(N / B) iterations over the same global batches
    # (docs/process-count.md#what-is-guaranteed).
    pad = pads_train_sampler(s.protocol)
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                 seed=0, drop_last=not pad)
    if len(sampler) < b:  # css.controller.preflight says so before any step trains; this is the last guard
        raise ConfigError(f"step {s.step}: the training set has {len(dataset)} samples, fewer than one batch "
                          f"of {s.batch_size} (drop_last); lower train.batch_size")
    return DataLoader(dataset, batch_size=b, sampler=sampler, num_workers=s.num_workers, drop_last=True,
                      pin_memory=env.device.type == "cuda", worker_init_fn=_seed_worker, collate_fn=collate,
                      persistent_workers=False)


class _ShardSampler(Sampler[int]):
    """Every process takes indices rank, rank + W, ... without padding, so no sample is counted twice."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def eval_loader(dataset: Dataset, env: DistEnv, batch_size: int, *, protocol: str, num_workers: int = 0,
                collate: Callable | None = None, drop_last: bool = False) -> DataLoader:
    """``drop_last``: leave out the last incomplete batch (the 3DPC-CISS test loader does,
    docs/pointcloud.md#protocol)."""
    b = local_batch(batch_size, env, "train.eval_batch_size")
    if quirks(protocol) == "reference":
        # docs/protocol-2d.md#processes-and-batch: the reference test sampler shuffles and pads to a
        # multiple of W (up to W-1 images counted twice).
        sampler: Sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank,
                                              shuffle=env.world_size > 1, seed=0)
    else:
        sampler = _ShardSampler(len(dataset), env.rank, env.world_size)
    return DataLoader(dataset, batch_size=b, sampler=sampler, num_workers=num_workers,
                      pin_memory=env.device.type == "cuda", collate_fn=collate, drop_last=drop_last)


def to_device(batch, device):
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def progress(iterable, env: DistEnv, total: int, desc: str):
    if env.is_main and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    return iterable

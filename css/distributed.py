"""torchrun environment, seeding and small reductions.

One process per device. ``torchrun --nproc_per_node N -m css.train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; without them the run is a single process. NCCL is used on CUDA, gloo on CPU
(the reference used NCCL with 2 GPUs, docs/protocol-2d.md#processes-and-batch).
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from css.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX on x86, BF16 on Arm), read from
    /proc/cpuinfo; None where that file does not exist. Without it, bf16 autocast is emulated."""
    try:
        with open(cpuinfo) as info:
            flags = {word for line in info if line.startswith(("flags", "Features")) for word in line.split()}
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but no CUDA device is available; use device=cpu or auto")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


DEFAULT_TIMEOUT = 1800.0
"""Seconds a process waits for the others in one collective (train.dist_timeout), torch's own default."""


def init_distributed(device: str = "auto", timeout: float = DEFAULT_TIMEOUT) -> DistEnv:
    """Read the torchrun environment and join the process group when there is more than one process.

    ``timeout`` (train.dist_timeout, seconds) bounds every wait for the other processes: a process
    that hangs or is stopped then makes the others fail with a TrainingError after that long
    (``collective_timeout_error``, docs/faults.md#distributed-runs) instead of blocking forever. A
    group that already exists (several runs in one process) keeps the timeout it was made with."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=float(timeout)))
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that ran past the process group's timeout. gloo and NCCL
    report it as a RuntimeError (DistBackendError) whose text says it timed out; a DataLoader's own
    worker timeout ("DataLoader timed out ...") is a different fault and keeps its message."""
    text = str(exc).lower()
    if isinstance(exc, getattr(dist, "DistBackendError", ())):
        return "timed out" in text or "timeout" in text
    return isinstance(exc, RuntimeError) and "dataloader" not in text and ("timed out" in text or "timeout" in text)


def collective_timeout_error(exc: BaseException, rank: int, timeout: float):
    """The TrainingError a process raises when the others did not answer within train.dist_timeout."""
    from css.errors import TrainingError

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TrainingError(
        f"rank {rank}: another process of this DDP run did not answer within train.dist_timeout={timeout:g} s "
        f"({first[:200]}); it hung, was stopped or died. The finished epochs are kept: stop the remaining "
        f"processes and re-run the same command to resume. If a phase legitimately keeps the other processes "
        f"waiting longer (e.g. rank 0 reading every label file of a large split), raise train.dist_timeout "
        f"(docs/faults.md#distributed-runs)")


def is_peer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective whose peer closed its connection: a process of the run crashed
    or was killed, on this node or another (gloo: "Connection closed by peer" or "reset by peer")."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("closed by peer" in text or "reset by peer" in text)


def peer_lost_error(exc: BaseException, rank: int):
    """The TrainingError a process raises when another process of the run is gone (docs/clusters.md#after-a-failure)."""
    from css.errors import TrainingError

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TrainingError(
        f"rank {rank}: another process of this DDP run closed its connection ({first[:200]}); it crashed or was "
        f"killed, on this node or another. The finished epochs are kept: stop the remaining processes, then run "
        f"the same command again on every node to resume (docs/clusters.md#after-a-failure)")


def process_group_up() -> bool:
    """Whether a torch.distributed process group is initialised (the one test for it)."""
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    if process_group_up():
        dist.destroy_process_group()


def barrier() -> None:
    if process_group_up():
        dist.barrier()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs (the reference seeds all four,
    docs/protocol-2d.md#seeds)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (seed, step, epoch, rank): an epoch's randomness
    then does not depend on whether the run was resumed."""
    h = 1469598103934665603
    for p in parts:
        h ^= int(p) & 0xFFFFFFFFFFFFFFFF
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if process_group_up() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_object(obj, dst: int = 0) -> list | None:
    """Every process's ``obj`` on rank ``dst`` (a list indexed by rank), None on the others; [obj]
    without a process group. Used for the per-process part of the resume state (css/engine/resume.py)."""
    if process_group_up() and dist.get_world_size() > 1:
        box = [None] * dist.get_world_size() if dist.get_rank() == dst else None
        dist.gather_object(obj, box, dst=dst)
        return box
    return [obj]


def broadcast_object(obj, src: int = 0):
    if process_group_up() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def run_on_main(env: DistEnv, fn):
    """``fn()`` on rank 0 only; its result, or the error it raised, reaches every process, so that
    the others stop with rank 0 instead of waiting for it (docs/controller.md#one-run-per-folder)."""
    if not env.distributed:
        return fn()
    if env.is_main:
        try:
            result = fn()
        except BaseException as exc:
            from css.errors import CSSError

            broadcast_object(("error", exc if isinstance(exc, CSSError) else
                              RuntimeError(f"rank 0 failed: {type(exc).__name__}: {exc}")))
            # Wait until every process holds the error: a rank 0 that exits while another process
            # still reads the broadcast makes gloo abort that process (SIGABRT) instead of raising.
            barrier()
            raise
        broadcast_object(("ok", result))
        return result
    kind, value = broadcast_object(None)
    if kind == "error":
        barrier()
        raise value
    return value

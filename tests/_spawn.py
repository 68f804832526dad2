"""Multi-process runs for the DDP tests: spawn W gloo processes that run configs through the
controller, and compare the epoch losses they log (docs/contracts.md#global-batch)."""

import os
import socket
import warnings
from pathlib import Path

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strict_warnings() -> None:
    """In a spawned process, as pyproject's filterwarnings does in the test process: a
    DeprecationWarning or FutureWarning raised from css's own code is an error, so the next
    deprecation shows when it appears (the DDP-only code runs in spawned processes alone)."""
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("error", category=category, module=r"css(\.|$)")


def _worker(rank: int, world: int, port: int, jobs: list[tuple[str, str | None]]) -> None:
    """Run the configs of ``jobs`` (config path, --init-step0 or None) one after the other in one
    process group (one spawn instead of one per run: the imports cost seconds per process)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    strict_warnings()
    from css.config.build import load_config
    from css.controller.steps import run_from_config
    from css.distributed import shutdown

    try:
        for cfg_path, init_step0 in jobs:
            run_from_config(load_config(cfg_path), init_step0=init_step0)
    finally:
        shutdown()


def run(world: int, *jobs: tuple[Path, Path | None]) -> None:
    jobs = [(str(cfg), init and str(init)) for cfg, init in jobs]
    mp.spawn(_worker, args=(world, free_port(), jobs), nprocs=world, join=True)


def history(run: Path, step: int):
    return torch.load(run / f"step{step}" / "model.pt", weights_only=False)["history"]


def close(a: dict, b: dict, rel: float) -> bool:
    assert set(a) == set(b)
    return all(abs(a[k] - b[k]) <= rel * max(1e-3, abs(a[k])) for k in a)

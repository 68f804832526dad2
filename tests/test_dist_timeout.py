"""A process of a DDP run that hangs (here: stopped with SIGSTOP) no longer blocks the others forever:
after train.dist_timeout seconds they stop with a TrainingError that says what happened and what to
do (docs/faults.md#distributed-runs)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from css.config.build import load_config
from css.errors import ConfigError

from _spawn import free_port, strict_warnings
from _tiny import TINY, write_config

TIMEOUT = 4


def _worker(rank: int, world: int, port: int, cfg_path: str, out: str) -> None:
    strict_warnings()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from css.engine import trainer as engine
    from css.controller.steps import run_from_config
    from css.errors import CSSError

    original = engine.Trainer._epoch

    def hang(self, epoch):
        if rank == 1:
            Path(out, "stopping").write_text(str(time.time()))
            os.kill(os.getpid(), signal.SIGSTOP)  # the test kills this process
        return original(self, epoch)

    engine.Trainer._epoch = hang
    try:
        run_from_config(load_config(cfg_path))
        result = {"outcome": "finished"}
    except CSSError as exc:
        result = {"outcome": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong
        result = {"outcome": type(exc).__name__, "message": str(exc)[:2000]}
    result["time"] = time.time()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)  # skip destroying a process group whose peer is stopped


def test_a_stopped_process_makes_the_others_stop_within_the_timeout(tmp_path):
    cfg = write_config(tmp_path, name="hung", train=dict(TINY["train"], dist_timeout=TIMEOUT))
    ctx = mp.spawn(_worker, args=(2, free_port(), str(cfg), str(tmp_path)), nprocs=2, join=False)
    rank0, rank1 = ctx.processes
    try:
        deadline = time.time() + 240
        while rank0.is_alive() and time.time() < deadline:
            time.sleep(0.5)
        assert not rank0.is_alive(), "rank 0 still waits for the stopped rank 1"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()  # SIGKILL ends a stopped process too
            p.join(timeout=30)
    result = json.loads((tmp_path / "rank0.json").read_text())
    stopped = float((tmp_path / "stopping").read_text())
    assert result["outcome"] == "TrainingError", result
    message = result["message"]
    assert message.startswith(f"rank 0: another process of this DDP run did not answer within "
                              f"train.dist_timeout={TIMEOUT} s"), message
    assert "re-run the same command to resume" in message and "raise train.dist_timeout" in message
    # Within the timeout (plus the time rank 0 needs to reach its first wait and to stop).
    assert result["time"] - stopped < TIMEOUT + 30, result["time"] - stopped
    # Training had begun (rank 1 stopped in its first epoch): the folder stays, with the log of the
    # run for the user to read (docs/controller.md#failed-starts), but no checkpoint.
    run = tmp_path / "runs" / "hung"
    assert (run / "log.txt").is_file() and not list(run.glob("step*/*.pt"))


@pytest.mark.parametrize("value", [0, -5])
def test_dist_timeout_must_be_positive(tmp_path, value):
    with pytest.raises(ConfigError, match=r"train\.dist_timeout must be a positive number of seconds"):
        load_config(write_config(tmp_path, train=dict(TINY["train"], dist_timeout=value)))


def test_dist_timeout_is_passed_to_the_process_group(monkeypatch):
    """The group is made with the configured timeout (torch's default is 30 minutes)."""
    import datetime

    from css import distributed

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: seen.update(kw))
    distributed.init_distributed("cpu", 7.5)
    assert seen["timeout"] == datetime.timedelta(seconds=7.5) and seen["backend"] == "gloo"


def test_only_collective_timeouts_count_as_a_hung_process():
    """A DataLoader's worker timeout is its own fault: it must not be reported as another process hanging."""
    from css.distributed import is_timeout

    assert is_timeout(RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Timed out waiting 4000ms"))
    assert is_timeout(RuntimeError("Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE)"))
    assert not is_timeout(RuntimeError("DataLoader timed out after 60 seconds"))
    assert not is_timeout(ValueError("timed out"))
    assert not is_timeout(RuntimeError("shape mismatch"))


def test_a_closed_connection_is_a_lost_process_not_a_timeout():
    """A peer that crashed or was killed closes its connection: the others stop at once with a
    TrainingError that says so (docs/clusters.md#after-a-failure); tests/test_multinode.py kills a node."""
    from css.distributed import is_peer_lost, is_timeout, peer_lost_error
    from css.errors import TrainingError

    closed = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed "
                          "by peer [127.0.0.1]:20368. This is typically caused by a remote worker crashing.")
    assert is_peer_lost(closed) and not is_timeout(closed)
    assert is_peer_lost(RuntimeError("Connection reset by peer"))
    assert not is_peer_lost(RuntimeError("Timed out waiting 4000ms")) and not is_peer_lost(ValueError("closed by peer"))
    err = peer_lost_error(closed, 1)
    assert isinstance(err, TrainingError)
    assert str(err).startswith("rank 1: another process of this DDP run closed its connection ([/__w/pytorch")
    assert "docs/clusters.md#after-a-failure" in str(err)

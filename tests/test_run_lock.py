"""One run per run folder (docs/controller.md#one-run-per-folder): a second run is refused with a
message naming the holder, a lock left by a killed run is taken over, the lock is released at the
end and on errors, only rank 0 of a DDP job takes it, and a refusal stops every rank."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from css.engine import trainer as engine
from css.controller.steps import run_from_config
from css.errors import CSSError

from _run_folder import crash_in_step1_epoch1, make_config
from _spawn import strict_warnings

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time\nfrom css.controller.runlock import RunLock\nRunLock(sys.argv[1]).acquire()\n"
        "print('held', flush=True)\ntime.sleep(300)\n")


def _lock_record(run: Path, pid: int, started: str = "2001-02-03T04:05:06+00:00") -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": started}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_refuses_and_names_its_holder(tmp_path):
    """The test's own pid written as another run's lock: that process is alive."""
    cfg = make_config("image", tmp_path, "locked")
    run = tmp_path / "runs" / "locked"
    _lock_record(run, os.getpid())
    with pytest.raises(CSSError) as err:
        run_from_config(cfg, steps="0")
    msg = str(err.value)
    for part in (str(run), f"pid {os.getpid()}", socket.gethostname(), "2001-02-03T04:05:06+00:00",
                 str(run / "run.lock")):
        assert part in msg, (part, msg)
    assert not (run / "step0").exists() and not (run / "config.yaml").exists()  # nothing was touched
    assert json.loads((run / "run.lock").read_text())["pid"] == os.getpid()  # the holder's lock stays


def test_a_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    cfg = make_config("image", tmp_path, "stale")
    run = tmp_path / "runs" / "stale"
    pid = _dead_pid()
    _lock_record(run, pid)
    run_from_config(cfg, steps="0")
    assert (run / "step0" / "model.pt").is_file()
    log = (run / "log.txt").read_text()
    assert "taking over the lock" in log and f"pid {pid} is no longer running" in log
    assert not (run / "run.lock").exists()  # released at the end


def test_a_sleeping_run_holds_the_folder_until_it_is_killed(tmp_path):
    cfg = make_config("image", tmp_path, "held")
    run = tmp_path / "runs" / "held"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CSSError, match=rf"in use by another run \(pid {holder.pid} on host "):
            run_from_config(cfg, steps="0")
        # The command line prints the same message on one line, without a traceback, and exits 2.
        proc = subprocess.run([sys.executable, "-m", "css.train", "--config", str(tmp_path / "held.yaml"),
                               "--steps", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / "run.lock").is_file()  # a killed run leaves its lock behind
    run_from_config(cfg, steps="0")
    assert f"pid {holder.pid} is no longer running" in (run / "log.txt").read_text()
    assert not (run / "run.lock").exists()


def test_the_lock_is_released_after_an_error(tmp_path, monkeypatch):
    cfg = make_config("image", tmp_path, "error")
    run = tmp_path / "runs" / "error"
    holders = []
    original = engine.Trainer._epoch

    def watch(self, epoch):  # who holds the folder while a step trains
        holders.append(json.loads((run / "run.lock").read_text())["pid"])
        return original(self, epoch)

    monkeypatch.setattr(engine.Trainer, "_epoch", watch)
    crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(cfg)
    assert holders == [os.getpid()] * 3  # step 0: 2 epochs, step 1: 1 epoch before the crash
    assert (run / "step1" / "resume.pt").is_file() and not (run / "run.lock").exists()
    # A refusal after the lock was taken (here: another config) releases it as well.
    with pytest.raises(CSSError, match="different config"):
        run_from_config(make_config("image", tmp_path, "error", train={"lr": 0.5}))
    assert not (run / "run.lock").exists()


def _worker(rank: int, world: int, port: int, cfg_path: str, out: str) -> None:
    strict_warnings()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from css.config.build import load_config
    from css.distributed import shutdown

    try:
        run_from_config(load_config(cfg_path), steps="0")
        result = "ran"
    except CSSError as exc:
        result = f"refused: {exc}"
    finally:
        shutdown()
    Path(out, f"rank{rank}.txt").write_text(result)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_ddp_run_stops_on_every_rank(tmp_path):
    """Rank 0 takes the lock; its refusal reaches rank 1, which would otherwise wait for rank 0 in
    the first collective. (A 2-process run that is not refused: tests/test_distributed.py, where
    rank 1 must not be refused by rank 0's lock.)"""
    make_config("image", tmp_path, "ddp")
    run = tmp_path / "runs" / "ddp"
    _lock_record(run, os.getpid())
    ctx = mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp.yaml"), str(tmp_path)), nprocs=2, join=False)
    deadline = time.time() + 240
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank did not stop after rank 0 was refused")
    for rank in (0, 1):
        text = (tmp_path / f"rank{rank}.txt").read_text()
        assert text.startswith("refused:") and "in use by another run" in text and f"pid {os.getpid()}" in text
    assert not (run / "step0").exists()

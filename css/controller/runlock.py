"""One run per run folder: the lock file ``RUN/run.lock`` (docs/controller.md#one-run-per-folder).

The lock records who holds the folder: pid, host, start time, command line, the machine's boot id
and the process's start tick (so that a pid reused after a reboot or by another program is not
taken for the run). A second run on the folder is refused with a message naming the holder; a
lock whose process is gone (same host, pid not alive, or the machine restarted) is stale and is
taken over with a log line. Under DDP only rank 0 takes the lock (the controller, css/controller/runfolder.py).

The lock file appears complete or not at all: it is written to a temporary file and hard-linked
into place (``os.link`` fails when the lock exists). Taking over a stale lock happens under an
``flock`` of the run folder, so two runs that find the same stale lock do not both take it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from css.errors import ConfigError

log = logging.getLogger("css")

LOCK_NAME = "run.lock"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None where there is no /proc entry."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _proc_start(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22: start time in ticks


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie does not count)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))


def holder_info() -> dict[str, Any]:
    """What this process writes into a lock it takes."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
            "proc_start": _proc_start(os.getpid()),
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:500]}


def stale_reason(info: dict[str, Any]) -> str | None:
    """Why the process that wrote ``info`` no longer runs, or None while it may still run."""
    if info.get("host") != socket.gethostname():
        return None  # another machine: its processes cannot be checked from here
    boot = _boot_id()
    if info.get("boot_id") and boot and info["boot_id"] != boot:
        return "this machine has restarted since"
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        return "the lock names no valid pid"
    if not pid_alive(pid):
        return f"pid {pid} is no longer running"
    if info.get("proc_start") and _proc_start(pid) not in (None, info["proc_start"]):
        return f"pid {pid} now belongs to another process"
    return None


def describe(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"
            + (f": {info['command']}" if info.get("command") else ""))


@contextlib.contextmanager
def _folder_guard(folder: Path) -> Iterator[None]:
    """An exclusive flock of the folder while a stale lock is checked and replaced (best effort:
    a file system without flock of folders goes without)."""
    fd = None
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


class RunLock:
    """``with RunLock(run_dir): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.token = uuid.uuid4().hex
        self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def read(self) -> dict[str, Any] | None:
        """The holder's record; None when there is no lock; {} when the file cannot be read."""
        try:
            info = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def _create(self) -> bool:
        """Put our lock in place unless one exists; True when it is ours."""
        info = dict(holder_info(), token=self.token)
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=f".{LOCK_NAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(info, handle, indent=1)
                handle.write("\n")
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here: exclusive create (a crash may leave it empty)
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w") as handle:
                    json.dump(info, handle, indent=1)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _folder_guard(self.run_dir):
            for _ in range(3):
                if self._create():
                    self.held = True
                    return
                info = self.read()
                if info is None:
                    continue  # released meanwhile
                if not info:
                    raise ConfigError(
                        f"run folder {self.run_dir} has a lock file {self.path} that cannot be read; if no other "
                        f"run uses this folder, delete {self.path} and run again")
                reason = stale_reason(info)
                if reason is None:
                    raise ConfigError(
                        f"run folder {self.run_dir} is in use by another run ({describe(info)}); wait for it to "
                        f"finish or give this run another name (name=...). If that run is not running any more, "
                        f"delete {self.path} and run again")
                log.warning("run folder %s: taking over the lock of an earlier run that stopped without releasing "
                            "it (%s; %s)", self.run_dir, describe(info), reason)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        raise ConfigError(f"run folder {self.run_dir}: could not take the lock {self.path}; run again")

    def release(self) -> None:
        """Remove the lock if it is still ours (also called after errors)."""
        if not self.held:
            return
        self.held = False
        info = self.read()
        if info and info.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

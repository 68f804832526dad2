"""What every result file records about the run that made it: versions, the git commit of the css
checkout, the resolved config (docs/contracts.md#protocol)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def collect_versions() -> dict[str, str | None]:
    """Versions of Python, the core libraries and css, for the results metadata."""
    import torch

    import css

    def dist_version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": dist_version("torchvision"),
        "numpy": dist_version("numpy"),
        "css": css.__version__,
        "cuda": torch.version.cuda,
    }


def git_commit(repo_dir: str | os.PathLike) -> str | None:
    """The commit hash checked out in ``repo_dir``; None if it is not a git repository (or no git)."""
    try:
        out = subprocess.run(
            ["git", "-C", os.fspath(repo_dir), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def build_metadata(
    config_dict: Mapping[str, Any],
    *,
    protocol: str,
    seed: int,
    world_size: int,
    global_batch: int,
    precision: str,
) -> dict[str, Any]:
    """What every result file records (docs/contracts.md#protocol): protocol, seed, processes, batch,
    precision, versions, git commit of the css checkout, creation time and the resolved config."""
    return {
        "protocol": protocol,
        "seed": seed,
        "world_size": world_size,
        "global_batch": global_batch,
        "precision": precision,
        "versions": collect_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dict(config_dict),
    }

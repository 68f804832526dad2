"""Checkpoints: the finished model of a step, and the resumable state written every epoch.

Run folder layout (one folder per run, docs/contracts.md#vocabulary)::

    RUN/config.yaml              resolved config (inheritance, overrides and method preset applied)
    RUN/log.txt, RUN/tb/         log file and TensorBoard scalars
    RUN/step{t}/model.pt         finished step: {"format": "css", "model": state_dict, ...}
    RUN/step{t}/resume.pt        in-progress step, rewritten atomically after every epoch
    RUN/results.csv|json, RUN/miou.png

A step is finished when its ``model.pt`` exists (docs/controller.md#recovery: the results files are
rebuilt from it when they are lost); re-running the same command skips finished steps and resumes an
unfinished one from ``resume.pt``. Both files record the config they were trained with
(``config``, ``config_hash``, ``parent_config_hash``: docs/controller.md#config-identity).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from css.errors import CheckpointError
from css.utils import atomic_torch_save

FORMAT = "css"
FORMAT_VERSION = 1


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"step{step}"


def model_path(run_dir: Path, step: int) -> Path:
    return step_dir(run_dir, step) / "model.pt"


def resume_path(run_dir: Path, step: int) -> Path:
    return step_dir(run_dir, step) / "resume.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(model, "module", model)


def load_file(path: str | Path) -> Any:
    """torch.load on CPU with a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - older files may hold plain Python objects; retry below
        pass
    try:
        # Files written by the reference code store argparse namespaces and numpy scalars.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} cannot be read ({_first_line(exc)}): it is truncated or corrupt, "
                              f"or not a PyTorch file") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def peek(path: str | Path) -> dict[str, Any]:
    """A checkpoint's dict with its tensors memory-mapped, not read: cheap for large files, and a
    truncated or empty file fails here (its zip directory is at the end). CheckpointError otherwise."""
    path = Path(path)
    problem = None
    for kwargs in ({"mmap": True}, {}):  # a file of the legacy (non-zip) format cannot be mapped
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
            # the plain load's complaint when both fail: the mmap one only says the file is no zip
            # archive ("mmap can only be used with files saved with ..."), even for a corrupt file
            problem = _first_line(exc)
            continue
        if isinstance(obj, dict):
            return obj
        problem = f"holds a {type(obj).__name__}, not a dict"
        break
    raise CheckpointError(f"{path} is truncated or corrupt ({problem})")


def save_step_model(path: Path, model: torch.nn.Module, *, step: int, classes_per_step: list[int],
                    task: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    obj = {"format": FORMAT, "version": FORMAT_VERSION, "step": step, "classes_per_step": list(classes_per_step),
           "task": task, "model": unwrap(model).state_dict(),
           # The importer converts norm weights between InPlaceABN (|gamma| + eps) and plain BN by this.
           "norm": getattr(unwrap(model), "norm", None)}
    obj.update(extra or {})
    atomic_torch_save(obj, path)


def load_step_model(path: str | Path) -> dict[str, Any]:
    obj = load_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a css step checkpoint (no 'format: css' key); reference "
                              f"checkpoints are imported with --init-step0 or css.image.load_reference_weights")
    return obj


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_resume_state(path: Path, env: Any, step: int) -> dict[str, Any] | None:
    """The resume state at ``path`` (every process reads it), or None when there is none or it is
    truncated or corrupt: then it is moved aside to ``resume.pt.corrupt`` with a warning and the
    step restarts from its beginning, on every process alike (docs/controller.md#recovery)."""
    from css.distributed import all_reduce_sum, barrier

    path = Path(path)
    if not path.is_file():
        return None
    st, problem = None, None
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(st, dict) or not {"epoch", "model", "optimizer", "scheduler", "rng"} <= set(st):
            problem = "not a css resume state"
    except Exception as exc:  # noqa: BLE001 - any failure to read means the file is unusable
        problem = _first_line(exc)
    if float(all_reduce_sum(torch.tensor([float(problem is not None)], device=env.device))[0]) == 0:
        return st
    barrier()  # every process has finished reading the file
    aside = path.with_name(path.name + ".corrupt")
    if env.is_main and path.is_file():
        path.replace(aside)
    logging.getLogger("css").warning("step %d: %s is truncated or corrupt (%s); moved it aside to %s and "
                                     "restarting the step from its beginning", step, path,
                                     problem or "on another process", aside.name)
    barrier()
    return None

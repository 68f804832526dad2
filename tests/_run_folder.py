"""Shared helpers of the run-folder tests (tests/test_run_lock.py, tests/test_run_identity.py,
tests/test_run_recovery.py): finished tiny runs of both modalities, copied per test."""

import hashlib
import json
import shutil
from pathlib import Path

import torch

from css.config.build import load_config
from css.controller.steps import run_from_config

from _pc_tiny import PC_TINY, write_pc_config
from _tiny import TINY, write_config

MODALITIES = ["image", "pointcloud"]
BASE_LR = {"image": TINY["train"]["lr"], "pointcloud": PC_TINY["train"]["lr"]}


def make_config(modality: str, tmp: Path, name: str, data_root: Path | None = None, **sections):
    """The tiny config of ``modality`` named ``name``, its runs under ``tmp/runs``; point clouds read
    their synthetic rooms from ``data_root`` (shared with the finished fixture run)."""
    if modality == "image":
        return load_config(write_config(tmp, name=name, **sections))
    data = {**sections.pop("data", {}), "root": str(data_root)}
    return load_config(write_pc_config(tmp, name=name, data=data, **sections))


def finished_run(tmp: Path, modality: str) -> Path:
    """A finished 2-step run ``tmp/runs/full``."""
    run_from_config(make_config(modality, tmp, "full", tmp / "pc_data"))
    return tmp / "runs" / "full"


def copy_run(full: Path, tmp: Path, name: str) -> Path:
    """A copy of a finished run folder, as ``tmp/runs/name`` (another name and output_dir: both may
    change on resume, the folder is the name)."""
    target = tmp / "runs" / name
    shutil.copytree(full, target)
    return target


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def ious(run: Path) -> list:
    return [s["iou"] for s in results(run)["steps"]]


def saved_config(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["config"]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def no_training(monkeypatch):
    """Make any training fail: a finished step must not be retrained."""
    from css.engine import trainer as engine

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"step {self.settings.step} was retrained")

    monkeypatch.setattr(engine.Trainer, "fit", refuse)


def crash_in_step1_epoch1(monkeypatch):
    """Interrupt step 1 in its second epoch (after its first epoch was saved in resume.pt);
    returns the function that undoes it."""
    from css.engine import trainer as engine

    original = engine.Trainer._epoch

    def crash(self, epoch):
        if self.settings.step == 1 and epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(engine.Trainer, "_epoch", crash)
    return lambda: monkeypatch.setattr(engine.Trainer, "_epoch", original)

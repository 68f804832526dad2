"""Best-epoch selection on the test set, for joint training under the reference protocol
(docs/pointcloud-baselines.md#joint-training).

The 3DPC-CISS code evaluates its joint model on the test blocks every 3 epochs and reports the
best of those evaluations: the test set chooses the model. :class:`BestOnTest` does the same as
an ``after_epoch`` hook of ``Trainer.fit``: every ``every`` epochs it scores the model, and when
the score beats the best so far it writes the weights to ``path`` (beside the step's resume file),
so that an interrupted step that resumes still knows its best epoch. ``restore`` loads them into
the model before the step is saved and evaluated.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import torch

from css.distributed import barrier, broadcast_object
from css.modality.registry import get_modality
from css.utils import atomic_torch_save

log = logging.getLogger("css")

BEST_FILE = "best_on_test.pt"


def best_path(resume_file: Path) -> Path:
    """Where the best state of a step lives: beside its resume file."""
    return Path(resume_file).with_name(BEST_FILE)


def selects_best_on_test(cfg: Any, num_steps: int) -> bool:
    """``train.select_best_on_test``, null resolved by the modality (on for a one-step point-cloud
    task, joint training, under protocol reference, as the 3DPC-CISS code does; off otherwise)."""
    value = cfg.train.select_best_on_test
    if value is not None:
        return bool(value)
    return get_modality(cfg.modality).selects_best_on_test(cfg, num_steps)


class BestOnTest:
    """``after_epoch`` hook keeping the epoch with the highest score (e.g. test mIoU).

    ``score(model)`` runs on every process (an evaluation all-reduces) and returns the same float
    everywhere; rank 0 writes the file. ``identity`` (the config hash of the step) guards against a
    file left by another config in the same folder: such a file is ignored. Ties keep the earlier
    epoch; a NaN score never wins. A resumed step re-runs only epochs after its resume state, and
    those reproduce the interrupted run of the same config (docs/controller.md#recovery), so a best
    file written just before an interruption stays valid. A best file of an epoch at or after the
    first epoch this call trains was written by an earlier attempt of the step (a restart from
    epoch 0, --redo-from, a resume file moved aside) and is dropped."""

    def __init__(self, score: Callable[[torch.nn.Module], float], *, every: int, path: Path,
                 is_main: bool = True, identity: str | None = None):
        if every < 1:
            raise ValueError(f"every must be a positive number of epochs, got {every}")
        self.score, self.every, self.path = score, int(every), Path(path)
        self.is_main, self.identity = is_main, identity
        # Rank 0 reads the file and every process gets its copy: processes that read it on their
        # own could disagree (one cannot read it) and restore different weights.
        self.best: dict[str, Any] | None = broadcast_object(self._load() if is_main else None)
        self._checked = False

    def _load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated file: the evaluations after the resume point rebuild it
            log.warning("%s cannot be read (%s); selecting the best epoch from the remaining evaluations",
                        self.path, exc)
            return None
        if state.get("identity") != self.identity:
            log.warning("%s was written for another config; ignored", self.path)
            return None
        return state

    @property
    def best_epoch(self) -> int | None:
        return None if self.best is None else int(self.best["epoch"])

    def __call__(self, epoch: int, model: torch.nn.Module) -> None:
        if not self._checked:
            self._checked = True
            if self.best is not None and self.best["epoch"] >= epoch:
                log.warning("%s holds epoch %d of an earlier attempt of this step (training resumes at epoch %d); "
                            "ignored", self.path, self.best["epoch"], epoch)
                self.best = None
        if epoch % self.every:
            return
        value = float(self.score(model))
        better = not math.isnan(value) and (self.best is None or value > self.best["score"])
        if better:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best = {"epoch": epoch, "score": value, "model": state, "identity": self.identity}
            if self.is_main:
                atomic_torch_save(self.best, self.path)
        barrier()
        log.info("epoch %d: test mIoU %.4f%s (best: epoch %s, %.4f)", epoch, value, " (new best)" if better else "",
                 self.best_epoch, self.best["score"] if self.best else math.nan)

    def restore(self, model: torch.nn.Module) -> int | None:
        """Load the best weights into ``model``; returns their epoch (None: nothing evaluated, the
        model keeps its last weights)."""
        if self.best is None:
            log.warning("best-on-test selection: no epoch was evaluated (fewer than %d epochs); keeping the "
                        "last one", self.every)
            return None
        model.load_state_dict(self.best["model"])
        log.info("best-on-test selection: the step's model is epoch %d (test mIoU %.4f)", self.best["epoch"],
                 self.best["score"])
        return int(self.best["epoch"])

"""The resume state of one step's training (docs/controller.md#recovery): what the trainer writes
after every epoch and reads back to continue an interrupted step, per process under DDP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from css.checkpoint import load_resume_state, rng_state, set_rng_state, unwrap
from css.distributed import DistEnv
from css.engine.settings import EpochLog
from css.errors import CheckpointError

log = logging.getLogger("css")


@dataclass
class ResumeState:
    """Reads and writes ``path`` for the trainer of step ``step``: its model, optimiser, scheduler,
    scaler and objective (thresholds and regulariser progress)."""

    path: Path
    env: DistEnv
    step: int
    epochs: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    objective: Any

    def rank_state(self) -> dict[str, Any]:
        """What differs between the processes of a DDP run and must be restored per process: the RNG
        state, and the pseudo-label thresholds, which under protocol reference each process computes
        from its own shard (docs/protocol-2d-losses.md#thresholds). Model, optimiser, scheduler, scaler and
        regulariser are the same on every process (averaged gradients)."""
        th = self.objective.thresholds
        return {"rng": rng_state(), "thresholds": th.detach().cpu() if torch.is_tensor(th) else th}

    def state(self, epoch: int, history: list[EpochLog], extra: dict[str, Any] | None = None,
              ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The resume state after ``epoch`` epochs. ``ranks``: every process's ``rank_state()``, by
        rank (docs/controller.md#recovery); the top-level ``rng`` and ``thresholds`` are rank 0's.
        ``extra``: the config the step trains with (docs/controller.md#config-identity)."""
        obj = self.objective
        ranks = ranks or [self.rank_state()]
        return {
            "epoch": epoch, "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": ranks[0]["rng"],
            "thresholds": ranks[0]["thresholds"], "ranks": ranks,
            "regularizer_progress": obj.regularizer.progress_state() if obj.regularizer else None,
            "history": [vars(h) for h in history],
            **(extra or {}),
        }

    def _restore_rank_state(self, st: dict[str, Any]) -> None:
        """This process's RNG state and thresholds from a resume state (see ``rank_state``)."""
        env = self.env
        ranks = st.get("ranks")
        mine = {"rng": st["rng"], "thresholds": st.get("thresholds")}
        if ranks and len(ranks) == env.world_size:
            mine = ranks[env.rank]
        elif env.world_size > 1 or (ranks and len(ranks) > 1):
            # Another number of processes shards the data differently: the step cannot continue
            # exactly as it would have. Every process takes rank 0's state.
            log.warning("step %d: %s was written by %s process(es), this run has %d; every process continues "
                        "with rank 0's RNG state and pseudo-label thresholds, so the step will not match an "
                        "uninterrupted run exactly", self.step, self.path,
                        len(ranks) if ranks else "an unknown number of", env.world_size)
        set_rng_state(mine["rng"])
        th = mine.get("thresholds")
        if th is not None:
            self.objective.thresholds = th.to(env.device) if torch.is_tensor(th) else th

    def restore(self) -> tuple[int, list[EpochLog]] | None:
        """Load ``path`` if present: (epochs done, their history) when training continues from it.

        A truncated or corrupt file (a full disk, a copy cut short) is moved aside to
        ``resume.pt.corrupt`` with a warning, and the step restarts from its beginning
        (docs/controller.md#recovery); under DDP every process then restarts."""
        st = load_resume_state(self.path, self.env, self.step)
        if st is None:
            return None
        unwrap(self.model).load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        self._restore_rank_state(st)
        if "regularizer" in st and "regularizer_progress" not in st:
            raise CheckpointError(
                f"{self.path} was written by an earlier css that saved the regulariser's "
                f"next-step state instead of its progress; it cannot continue this step exactly. "
                f"Delete {self.path} to restart step {self.step} from its beginning")
        if st.get("regularizer_progress") is not None and self.objective.regularizer is not None:
            # The penalty (theta_old, importance) was attached from the previous step's checkpoint;
            # only this step's accumulators (Fisher, path integrals) continue from the file.
            self.objective.regularizer.load_progress_state(st["regularizer_progress"])
        epoch = int(st["epoch"])
        log.info("step %d: resuming from %s after epoch %d/%d", self.step, self.path, epoch, self.epochs)
        return epoch, [EpochLog(**h) for h in st.get("history", [])]

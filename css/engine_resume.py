"""The resume state of one step's training (docs/controller.md#recovery): what ``css.engine.Trainer``
writes after every epoch and reads back to continue an interrupted step, per process under DDP.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from css.checkpoint import rng_state, set_rng_state, unwrap
from css.engine_helpers import EpochLog
from css.errors import CheckpointError

log = logging.getLogger("css")


class TrainerResume:
    """``Trainer``'s resume state: it reads the trainer's model, optimiser, scheduler, scaler,
    objective, history, env, settings and resume_file."""

    def _rank_state(self) -> dict[str, Any]:
        """What differs between the processes of a DDP run and must be restored per process: the RNG
        state, and the pseudo-label thresholds, which under protocol reference each process computes
        from its own shard (docs/protocol-2d-losses.md#thresholds). Model, optimiser, scheduler, scaler and
        regulariser are the same on every process (averaged gradients)."""
        th = self.objective.thresholds
        return {"rng": rng_state(), "thresholds": th.detach().cpu() if torch.is_tensor(th) else th}

    def _state(self, epoch: int, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The resume state after ``epoch`` epochs. ``ranks``: every process's ``_rank_state()``, by
        rank (docs/controller.md#recovery); the top-level ``rng`` and ``thresholds`` are rank 0's."""
        obj = self.objective
        ranks = ranks or [self._rank_state()]
        return {
            "epoch": epoch, "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": ranks[0]["rng"],
            "thresholds": ranks[0]["thresholds"], "ranks": ranks,
            "regularizer_progress": obj.regularizer.progress_state() if obj.regularizer else None,
            "history": [vars(h) for h in self.history],
            # The config the step trains with (docs/controller.md#config-identity), given to fit().
            **(getattr(self, "extra_state", None) or {}),
        }

    def _restore_rank_state(self, st: dict[str, Any]) -> None:
        """This process's RNG state and thresholds from a resume state (see ``_rank_state``)."""
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
                        "uninterrupted run exactly", self.settings.step, self.resume_file,
                        len(ranks) if ranks else "an unknown number of", env.world_size)
        set_rng_state(mine["rng"])
        th = mine.get("thresholds")
        if th is not None:
            self.objective.thresholds = th.to(env.device) if torch.is_tensor(th) else th

    def try_resume(self) -> bool:
        """Load ``resume_file`` if present; returns True when training continues from it.

        A truncated or corrupt file (a full disk, a copy cut short) is moved aside to
        ``resume.pt.corrupt`` with a warning, and the step restarts from its beginning
        (docs/controller.md#recovery); under DDP every process then restarts."""
        from css.checkpoint import load_resume_state

        st = load_resume_state(self.resume_file, self.env, self.settings.step)
        if st is None:
            return False
        unwrap(self.model).load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        self._restore_rank_state(st)
        if "regularizer" in st and "regularizer_progress" not in st:
            raise CheckpointError(
                f"{self.resume_file} was written by an earlier css that saved the regulariser's "
                f"next-step state instead of its progress; it cannot continue this step exactly. "
                f"Delete {self.resume_file} to restart step {self.settings.step} from its beginning")
        if st.get("regularizer_progress") is not None and self.objective.regularizer is not None:
            # The penalty (theta_old, importance) was attached from the previous step's checkpoint;
            # only this step's accumulators (Fisher, path integrals) continue from the file.
            self.objective.regularizer.load_progress_state(st["regularizer_progress"])
        self.history = [EpochLog(**h) for h in st.get("history", [])]
        self.start_epoch = int(st["epoch"])
        log.info("step %d: resuming from %s after epoch %d/%d", self.settings.step, self.resume_file,
                 self.start_epoch, self.settings.epochs)
        return True

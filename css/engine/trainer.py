"""One step's training loop and the evaluation loop (modality-agnostic).

docs/protocol-2d.md: #optimiser-and-schedule (SGD Nesterov 0.9, weight decay 1e-4, poly 0.9 stepped
every iteration), #processes-and-batch and #mixed-precision (DDP, mixed precision; torch.autocast +
GradScaler replace apex O1), #loss-composition (the per-iteration order: old model under no_grad,
objective, backward, regulariser, optimiser and scheduler steps).

The engine knows nothing about steps beyond the objective it is given (docs/architecture.md#data-flow-of-one-step).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from css.checkpoint import unwrap
from css.distributed import DistEnv, all_reduce_sum, barrier, derived_seed, gather_object, seed_everything
from css.engine.loaders import clean_worker_errors, eval_loader, progress, to_device, train_loader
from css.engine.precision import autocast, gradients_finite, nonfinite_terms
from css.engine.resume import ResumeState
from css.engine.schedules import build_optimizer, build_schedule
from css.engine.settings import EpochLog, TrainSettings
from css.errors import TrainingError
from css.metrics import ConfusionMatrix
from css.utils import atomic_torch_save

log = logging.getLogger("css")


@dataclass
class Trainer:
    """Trains ``model`` for one step. ``old_model`` (frozen, eval mode) is None at step 0."""

    model: torch.nn.Module
    old_model: torch.nn.Module | None
    objective: Any
    dataset: Dataset
    env: DistEnv
    settings: TrainSettings
    resume_file: Path
    collate: Callable | None = None
    writer: Any = None
    history: list[EpochLog] = field(default_factory=list)

    def __post_init__(self):
        s = self.settings
        self.loader = train_loader(self.dataset, self.env, s, self.collate)
        self.iters_per_epoch = len(self.loader)
        if s.max_iters_per_epoch:
            self.iters_per_epoch = min(self.iters_per_epoch, s.max_iters_per_epoch)
        self.max_iters = s.epochs * self.iters_per_epoch
        self.optimizer = build_optimizer(self.model, s)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, build_schedule(s, self.iters_per_epoch, self.max_iters))
        use_scaler = s.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.env.device.type, enabled=use_scaler)
        self.start_epoch = 0
        self.extra_state: dict[str, Any] = {}
        self.resume = ResumeState(self.resume_file, self.env, s.step, s.epochs, model=self.model,
                                  optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                  objective=self.objective)

    def try_resume(self) -> bool:
        """Continue from ``resume_file`` when it holds a state of this step (docs/controller.md#recovery)."""
        restored = self.resume.restore()
        if restored is None:
            return False
        self.start_epoch, self.history = restored
        return True

    # --------------------------------------------------------------------------------------------
    def _old_outputs(self, x: torch.Tensor):
        if self.old_model is None or not self.objective.needs_old_model:
            return None
        with torch.no_grad():
            return self.old_model(x)

    def prepare_thresholds(self) -> None:
        """One pass over the augmented training data with the old model (docs/protocol-2d-losses.md#thresholds)."""
        if not self.objective.needs_thresholds:
            return
        env, s = self.env, self.settings
        self._set_epoch(0)
        seed_everything(derived_seed(s.seed, s.step, 10**6, env.rank))

        def batches():
            for i, batch in enumerate(clean_worker_errors(self.loader)):
                if s.max_iters_per_epoch and i >= s.max_iters_per_epoch:
                    break
                x, y = to_device(batch, env.device)
                with autocast(env.device, s.precision):
                    old = self._old_outputs(x)
                yield old.logits.float(), y

        t0 = time.time()
        th = self.objective.compute_thresholds(batches())
        log.info("step %d: pseudo-label thresholds from %d batches in %.1fs (min %.4g, max %.4g)", s.step,
                 self.iters_per_epoch, time.time() - t0, float(th.min()), float(th.max()))

    def fit(self, extra_state: dict[str, Any] | None = None,
            after_epoch: Callable[[int, torch.nn.Module], None] | None = None) -> list[EpochLog]:
        """``extra_state``: written into every resume state (the controller's config identity,
        docs/controller.md#config-identity). ``after_epoch(epochs_done, model)``: called on every
        process after each epoch, before its resume state is written (the best-on-test selection,
        docs/pointcloud-baselines.md#joint-training)."""
        env, s = self.env, self.settings
        self.extra_state = dict(extra_state or {})
        self.try_resume()
        if self.start_epoch == 0:
            self.prepare_thresholds()
        for epoch in range(self.start_epoch, s.epochs):
            # Seed every epoch from (seed, step, epoch, rank): a resumed run sees exactly the data
            # order and augmentations the uninterrupted one would have seen.
            seed_everything(derived_seed(s.seed, s.step, epoch, env.rank))
            self._set_epoch(epoch)
            entry = self._epoch(epoch)
            self.history.append(entry)
            if after_epoch is not None:
                after_epoch(epoch + 1, unwrap(self.model))
            # Each process's own part of the state reaches rank 0, which writes the one file.
            ranks = gather_object(self.resume.rank_state())
            if env.is_main:
                state = self.resume.state(epoch + 1, self.history, self.extra_state, ranks)
                atomic_torch_save(state, self.resume_file)
            barrier()
        return self.history

    def _agreed_bad(self, bad: str | None, epoch: int, i: int, nonfinite: int) -> bool:
        """Whether to skip this batch for a non-finite loss; raises the TrainingError when the step's
        budget of train.skip_nonfinite is spent (docs/controller.md#non-finite-losses).

        Under DDP every process takes the same decision (one all-reduce per check), or a process
        that skips would leave the others waiting in backward."""
        env, s = self.env, self.settings
        if env.world_size > 1:
            flag = all_reduce_sum(torch.tensor(float(bad is not None), device=env.device))
            if float(flag) == 0:
                return False
            bad = bad or "non-finite on another process"
        elif bad is None:
            return False
        used = sum(h.nonfinite for h in self.history) + nonfinite
        where = f"step {s.step}, epoch {epoch + 1}/{s.epochs}, iteration {i + 1}"
        if used < s.skip_nonfinite:
            log.warning("%s: non-finite loss (%s); batch skipped (%d of train.skip_nonfinite=%d this step)",
                        where, bad, used + 1, s.skip_nonfinite)
            return True
        if epoch > 0:
            kept = (f"The state after epoch {epoch} (the last finished one) is kept in {self.resume_file}; "
                    f"re-running the same command resumes from it")
        else:
            kept = (f"No epoch of step {s.step} has finished, so re-running the same command restarts "
                    f"step {s.step} from its beginning")
        skipped = f"after skipping {used} such batch(es) this step, " if used else ""
        raise TrainingError(
            f"non-finite loss at {where} ({bad}); {skipped}training stopped. {kept}. Fix: lower train.lr, "
            f"check the data and labels, or skip a few such batches with train.skip_nonfinite={used + 1} "
            f"(docs/controller.md#non-finite-losses)")

    def _set_epoch(self, epoch: int) -> None:
        self.loader.sampler.set_epoch(epoch)
        self.loader.dataset.set_epoch(epoch)

    def _epoch(self, epoch: int) -> EpochLog:
        env, s = self.env, self.settings
        self.model.train()
        if s.eval_mode_from_epoch is not None and epoch >= s.eval_mode_from_epoch:
            self.model.eval()  # docs/pointcloud.md#protocol (legacy_eval_mode)
        sums: dict[str, torch.Tensor] = {}
        t0 = time.time()
        n = 0
        skipped = 0
        nonfinite = 0  # batches skipped for train.skip_nonfinite (a subset of skipped)
        it = progress(clean_worker_errors(self.loader), env, self.iters_per_epoch,
                       f"step {s.step} epoch {epoch + 1}/{s.epochs}")
        for i, batch in enumerate(it):
            if i >= self.iters_per_epoch:
                break
            x, y = to_device(batch, env.device)
            bad = None  # the non-finite terms of this batch, or None (docs/controller.md#non-finite-losses)
            with autocast(env.device, s.precision):
                old = self._old_outputs(x)
                out = self.model(x)
                try:
                    loss, terms = self.objective(out, old, y, inputs=x)
                except FloatingPointError as exc:  # Local POD checks its layer losses itself
                    bad = f"pod: {exc}"
            # Under fp16 an inf/NaN loss is an overflow: the scaler skips the update (counted below).
            if bad is None and s.precision != "fp16" and not torch.isfinite(loss):
                bad = nonfinite_terms(terms, loss)
            if self._agreed_bad(bad, epoch, i, nonfinite):
                self.scheduler.step()  # the LR steps on a skipped batch, as on an fp16 overflow
                nonfinite += 1
                skipped += 1
                n += 1
                continue
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.objective.regularizer is not None:
                # docs/protocol-2d.md#loss-composition (step 6): the regulariser reads the gradients of
                # the total, then its penalty is backpropagated separately.
                self.scaler.unscale_(self.optimizer)
                # An fp16 overflow leaves inf/NaN gradients and the scaler skips the update; the
                # regulariser must not read them (an inf Fisher or a NaN path integral would stay).
                if not self.scaler.is_enabled() or gradients_finite(self.optimizer):
                    self.objective.after_backward(unwrap(self.model))
                reg = self.objective.regularizer_loss(unwrap(self.model))
                reg_bad = None
                if reg is not None and s.precision != "fp16" and not torch.isfinite(reg):
                    reg_bad = nonfinite_terms(dict(terms, reg=reg.detach()), loss)
                if self._agreed_bad(reg_bad, epoch, i, nonfinite):
                    self.optimizer.zero_grad(set_to_none=True)  # no update from this batch
                    self.scheduler.step()
                    nonfinite += 1
                    skipped += 1
                    n += 1
                    continue
                if reg is not None and reg.requires_grad:
                    reg.backward()
                    terms["reg"] = reg.detach()
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if scale is not None and self.scaler.get_scale() < scale:
                skipped += 1  # the scaler found inf/NaN gradients and skipped this update
            self.scheduler.step()  # as in the reference, the LR steps on a skipped update too
            n += 1
            # The logged total is everything backpropagated: the regulariser's penalty included
            # (docs/protocol-2d.md#logging).
            total = loss.detach() + terms["reg"].to(loss.dtype) if "reg" in terms else loss.detach()
            terms = dict(terms, total=total)
            # An fp16 overflow that the scaler skipped counts as zero, or the epoch mean would be inf;
            # every process still adds the same keys, so the all-reduce below lines up.
            finite = torch.isfinite(loss).double()
            for k, v in dict(terms, _count=torch.ones(())).items():
                zero = torch.zeros((), device=env.device, dtype=torch.float64)
                sums[k] = sums.get(k, zero) + torch.nan_to_num(v.detach().double().to(env.device)) * finite
            if hasattr(it, "set_postfix") and (i % max(1, s.log_interval) == 0):
                it.set_postfix({k: f"{float(v):.3f}" for k, v in terms.items()})
            if log.isEnabledFor(logging.DEBUG) and i % max(1, s.log_interval) == 0:
                log.debug("step %d epoch %d it %d: %s", s.step, epoch + 1, i + 1,
                          ", ".join(f"{k} {float(v):.4f}" for k, v in terms.items()))
        # Epoch means over all processes (docs/protocol-2d.md#logging: reduced, then divided by the
        # number of iterations summed, W*len in the reference, here without non-finite fp16 losses).
        keys = sorted(sums)
        vec = torch.stack([sums[k] for k in keys]) if keys else torch.zeros(0, dtype=torch.float64)
        vec = all_reduce_sum(vec.to(env.device))
        totals = dict(zip(keys, vec.tolist()))
        count = totals.pop("_count", 0.0)
        means = {k: v / max(1.0, count) for k, v in totals.items()}
        entry = EpochLog(epoch=epoch + 1, terms=means, lr=self.optimizer.param_groups[0]["lr"],
                         seconds=time.time() - t0, iterations=n, skipped=skipped, nonfinite=nonfinite)
        log.info("step %d epoch %d/%d: %s | lr %.2e | %.1fs%s", s.step, epoch + 1, s.epochs,
                 " ".join(f"{k} {v:.4f}" for k, v in means.items()), entry.lr, entry.seconds,
                 f" | skipped {skipped}" if skipped else "")
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"step{s.step}/loss_{k}", v, epoch + 1)
            self.writer.add_scalar(f"step{s.step}/lr", entry.lr, epoch + 1)
        return entry


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, *, num_classes: int, env: DistEnv, batch_size: int,
             precision: str = "fp32", protocol: str = "reference", num_workers: int = 0,
             collate: Callable | None = None, desc: str = "eval", drop_last: bool = False,
             predict: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ConfusionMatrix:
    """``predict(logits)`` (default: argmax over channels) of the full-resolution logits ->
    confusion matrix over the dataset, summed over processes (docs/protocol-2d.md#metrics)."""
    predict = predict or (lambda logits: logits.argmax(1))
    loader = eval_loader(dataset, env, batch_size, protocol=protocol, num_workers=num_workers, collate=collate,
                         drop_last=drop_last)
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device=env.device)
    seen = torch.zeros((), dtype=torch.int64, device=env.device)
    for batch in progress(clean_worker_errors(loader), env, len(loader), desc):
        x, y = to_device(batch, env.device)
        seen += x.shape[0]
        with autocast(env.device, precision):
            logits = model(x).logits
        cm.update(predict(logits), y)
    cm.all_reduce()
    # The samples evaluated over all processes: with a dropped last batch (docs/pointcloud.md#protocol)
    # or a padded sampler (docs/protocol-2d.md#processes-and-batch) this differs from len(dataset); the reports record it.
    cm.samples = int(all_reduce_sum(seen))
    model.train(was_training)
    return cm

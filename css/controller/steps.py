"""The step controller: runs steps 0..T of a task for either modality.

For each step t (docs/protocol-2d-model.md#step-hand-over, docs/controller.md#hand-over): build model(t)
with one classifier head per step, load model(t-1) into it (non-strictly: the new head is missing)
and into a frozen old model (strictly, eval mode, no gradients), initialise the new head from the
background row when the method asks, train, evaluate on the step's test set and write the reports.
Finished steps are skipped and an interrupted step resumes from its last epoch, so re-running the
same command continues a run. Before anything runs, css/controller/runfolder.py takes the folder's lock and
checks it (docs/controller.md#run-folder): one run per folder, the checkpoints' configs, --redo-from,
and the recovery from a kill or a lost results file.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from css import checkpoint as ck
from css.config import identity
from css.config.build import from_dict
from css.config.schema import Config, step_value
from css.controller.handover import hand_over, load_step
from css.controller.preflight import check_steps
from css.controller.runfolder import first_missing, prepare_run_folder, remove_failed_start, trained_anything
from css.controller.start import imported_regularizer, parse_steps, setup_logging
from css.distributed import (DistEnv, barrier, collective_timeout_error, cpu_has_bf16, init_distributed, is_peer_lost,
                             is_timeout, peer_lost_error, run_on_main, seed_everything)
from css.engine.best_epoch import BestOnTest, best_path, selects_best_on_test
from css.engine.settings import TrainSettings
from css.engine.trainer import Trainer
from css.methods.objective import Objective
from css.methods.resolve import check_for_domains, resolve_method
from css.modality.protocol import Modality
from css.modality.registry import get_modality
from css.results import recording
from css.results.jsonfile import read_results_json
from css.results.metadata import build_metadata
from css.results.summary import STEP_METRICS, step_summary
from css.results.stepdata import keep_step_data
from css.results.tables import format_table
from css.tasks.task import Task

log = logging.getLogger("css")


@dataclass
class Controller:
    cfg: Config
    env: DistEnv
    modality: Modality
    init_step0: str | None = None
    redo_from: int | None = None
    replace_step0: bool = False
    """--replace-step0: --init-step0 may replace a finished step 0 (docs/controller.md#command-line)."""
    task: Task = field(init=False)
    run_dir: Path = field(init=False)

    def __post_init__(self):
        self.cfg.method = resolve_method(self.cfg.method, dataset=self.cfg.data.dataset, protocol=self.cfg.protocol,
                                         modality=self.cfg.modality)
        self.task = self.modality.task(self.cfg)
        if self.task.adds == "domains":
            check_for_domains(self.cfg.method)  # docs/methods.md#domain-steps
        self.run_dir = self.cfg.run_dir
        self.writer = None
        self.lock = None  # rank 0's css.controller.runlock.RunLock while a run holds the folder
        # The outermost folder this command made for the run (rank 0; None: it existed), and whether
        # training began: a start that fails before it leaves nothing (docs/controller.md#failed-starts).
        self.created: Path | None = None
        self.training_started = False
        self.step_configs: dict[int, dict[str, Any]] = {}  # the config each finished step was trained with
        # the --init-step0 file's regulariser state (css.controller.start.imported_regularizer)
        self.imported_regularizer: dict[str, Any] | None = None

    def identity_state(self, parent_hash: str | None) -> dict[str, Any]:
        """What every checkpoint records of its config (docs/controller.md#config-identity)."""
        config = self.cfg.to_dict()
        return {"config": config, "config_hash": identity.config_hash(config), "parent_config_hash": parent_hash}

    def metadata(self) -> dict[str, Any]:
        return build_metadata(
            self.cfg.to_dict(), protocol=self.cfg.protocol, seed=self.cfg.seed, world_size=self.env.world_size,
            global_batch=self.cfg.train.batch_size, precision=self.cfg.train.precision)

    def settings(self, step: int) -> TrainSettings:
        t = self.cfg.train
        return TrainSettings(
            epochs=step_value(self.cfg, "epochs", step), lr=step_value(self.cfg, "lr", step),
            batch_size=step_value(self.cfg, "batch_size", step), momentum=t.momentum, nesterov=t.nesterov,
            weight_decay=t.weight_decay, lr_power=t.lr_power, precision=t.precision,
            num_workers=self.cfg.data.num_workers, seed=self.cfg.seed, step=step,
            max_iters_per_epoch=t.max_iters_per_epoch, log_interval=t.log_interval, optimizer=t.optimizer,
            schedule=t.schedule, lr_step=t.lr_step, lr_gamma=t.lr_gamma, skip_nonfinite=t.skip_nonfinite,
            protocol=self.cfg.protocol,
            eval_mode_from_epoch=self.modality.eval_mode_from_epoch(self.cfg))

    # --------------------------------------------------------------------------------------------
    def run(self, steps: list[int]) -> dict[str, Any] | None:
        plan = run_on_main(self.env, lambda: prepare_run_folder(self, steps, self.redo_from))
        self.step_configs = dict(plan["configs"])
        try:
            return self._run(steps, plan)
        except Exception:
            self.remove_failed_start()  # while the lock is still held: no other run can be in the folder
            raise
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.lock is not None:
                self.lock.release()

    def remove_failed_start(self) -> None:
        """Remove the run folder this command made when the run failed before training began. Once
        training began the folder stays, log.txt with the error included, even when no epoch finished
        (a non-finite loss, an out-of-memory error, a DDP timeout in the first epoch)."""
        created, self.created = self.created, None
        if created is None or self.training_started or trained_anything(self.run_dir):
            return
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        remove_failed_start(self.run_dir, created)

    def _run(self, steps: list[int], plan: dict[str, Any]) -> dict[str, Any] | None:
        # every step this command trains is checked before the first one trains (docs/controller.md#preflight)
        check_steps(self, steps, set(plan["finished"]))
        if self.env.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        log.info("task %s/%s: %d steps %s; method %s; protocol %s; %d process(es) on %s", self.cfg.data.dataset,
                 self.task.name, self.task.num_steps, self.task.steps if self.task.num_steps <= 12 else "",
                 self.cfg.method.name, self.cfg.protocol, self.env.world_size, self.env.device)
        for note in self.modality.start_notes(self.cfg):
            log.info("%s", note)
        if self.env.device.type == "cpu" and self.cfg.train.precision == "bf16" and cpu_has_bf16() is False:
            log.warning("train.precision=bf16 on a CPU without bf16 instructions: autocast emulates it, "
                        "far slower than fp32 (~50x for DeepLabV3-R101, benchmarks/RESULTS.md); use "
                        "train.precision=fp32 on this machine")
        # Finished steps that results.json lacks are re-evaluated, also outside --steps.
        for step in sorted(set(steps) | set(plan["missing_results"])):
            if step in plan["missing_results"]:
                self.reevaluate(step)
            elif step in plan["finished"]:
                log.info("step %d: already finished in %s, skipping", step, self.run_dir)
            else:
                self.run_step(step)
        return self.final_report()

    def run_step(self, step: int) -> None:
        cfg, env, task = self.cfg, self.env, self.task
        seed_everything(cfg.seed + step)
        num_old, num_cur = task.num_old_classes(step), task.num_classes(step)
        objective = Objective(cfg.method, step=step, num_old=num_old, num_current=num_cur,
                              num_new=task.num_new_classes(step), protocol=cfg.protocol,
                              ignore_index=task.ignore_index, num_steps=task.num_steps)
        model = self.modality.build_model(cfg, task.classes_per_step(step), env)
        old_model = None
        prev_extra: dict[str, Any] = {}
        parent_hash = None  # the config of the step this one starts from (docs/controller.md#config-identity)
        if step == 0 and self.init_step0:
            report = self.modality.import_weights(model, self.init_step0)
            log.info("step 0: imported %s (%s); evaluating it instead of training", self.init_step0, report)
            if self.imported_regularizer is not None:
                log.info("step 0: the next step's %s penalty uses the importance stored in %s",
                         self.imported_regularizer["kind"].upper(), self.init_step0)
            model.to(env.device)
            self.finish_step(step, model, objective, trained=False)
            return
        if step == 0:
            self.modality.load_pretrained(model, cfg)
        else:
            model, old_model, prev_extra = hand_over(self.modality, cfg, task, step, self.run_dir, env,
                                                     init_balanced=bool(cfg.method.init_balanced))
            parent_hash = identity.config_hash(prev_extra.get("config"))
            old_model.to(env.device)
        model.to(env.device)
        objective.attach_regularizer(model, prev_extra.get("regularizer"))
        log.info("step %d: %s %s -> %d channels (%d old); objective: %s", step, task.adds, task.steps[step], num_cur,
                 num_old, objective.describe())
        train_model = model
        if env.distributed:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        settings = self.settings(step)
        dataset = self.dataset(step, "train")
        # The test split is indexed (and its files checked) before training, so that a damaged test
        # file stops the run now rather than after the step has trained (docs/faults.md#data-files).
        test_set = self.dataset(step, "test")
        log.info("step %d: %d training samples, global batch %d, %d epochs, lr %g", step, len(dataset),
                 settings.batch_size, settings.epochs, settings.lr)
        trainer = Trainer(model=train_model, old_model=old_model, objective=objective, dataset=dataset, env=env,
                          settings=settings, resume_file=ck.resume_path(self.run_dir, step),
                          collate=self.modality.collate, writer=self.writer)
        best = self.best_on_test(step, parent_hash, test_set)  # docs/pointcloud-baselines.md#joint-training
        self.training_started = True
        trainer.fit(extra_state=self.identity_state(parent_hash), after_epoch=best)
        if best is not None:
            best.restore(model)
        self.finish_step(step, model, objective, trained=True, history=trainer.history, parent_hash=parent_hash,
                         test_set=test_set)

    def best_on_test(self, step: int, parent_hash: str | None, test_set) -> BestOnTest | None:
        """The best-epoch hook of train.select_best_on_test (None when off): test mIoU every
        train.best_on_test_every epochs (docs/pointcloud-baselines.md#joint-training)."""
        if not selects_best_on_test(self.cfg, self.task.num_steps):
            return None
        cfg = self.cfg
        if getattr(cfg.data, "full_coverage", None):
            # The sampled metric chooses the epoch; full coverage is for the step's report only.
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, full_coverage=False))

        def score(model: torch.nn.Module) -> float:
            cm = self.modality.evaluate(model, test_set, cfg, self.task, step, self.env)
            return step_summary(cm, self.task)["all"]

        return BestOnTest(score, every=self.cfg.train.best_on_test_every,
                          path=best_path(ck.resume_path(self.run_dir, step)), is_main=self.env.is_main,
                          identity=self.identity_state(parent_hash)["config_hash"])

    def dataset(self, step: int, split: str):
        """The step's dataset. Under DDP rank 0 builds it first, so that a first run scans the label
        files once and writes the cache that the other processes then read (instead of every
        process scanning the whole split at the same time)."""
        first = not self.env.distributed or self.env.is_main
        if not first:
            barrier()
        try:
            return self.modality.dataset(self.cfg, self.task, step, split)
        finally:
            # Also when rank 0 fails (a missing file, an empty split): the others then build,
            # meet the same error and stop, instead of waiting for rank 0 at the barrier.
            if first and self.env.distributed:
                barrier()

    def finish_step(self, step: int, model: torch.nn.Module, objective: Objective, *, trained: bool,
                    history: list | None = None, parent_hash: str | None = None, test_set=None) -> None:
        cfg, env, task = self.cfg, self.env, self.task
        test_set = test_set if test_set is not None else self.dataset(step, "test")
        cm = self.modality.evaluate(model, test_set, cfg, task, step, env)
        if env.is_main:
            regularizer = objective.regularizer.state_dict() if objective.regularizer else None
            if not trained and step == 0:
                regularizer = self.imported_regularizer  # css.controller.start.imported_regularizer
            extra = {"regularizer": regularizer,
                     "thresholds": objective.thresholds, "trained": trained, "world_size": env.world_size,
                     "history": [vars(h) for h in history or []], **self.identity_state(parent_hash)}
            ck.save_step_model(ck.model_path(self.run_dir, step), model, step=step,
                               classes_per_step=task.classes_per_step(step),
                               task={"dataset": task.dataset, "name": task.name, "steps": task.steps}, extra=extra)
            self.step_configs[step] = extra["config"]
            self.record(step, cm, getattr(cm, "samples", len(test_set)), config=extra["config"])
            keep_step_data(self.modality, cfg, task, step, env, cm, model, test_set, ck.model_path(self.run_dir, step).parent)
            rp = ck.resume_path(self.run_dir, step)
            if rp.exists():
                rp.unlink()
            best_path(rp).unlink(missing_ok=True)
        barrier()

    def reevaluate(self, step: int) -> None:
        """Rebuild the results entry of a finished step from its checkpoint (docs/controller.md#recovery),
        evaluated with the config it was trained with (the keys of identity.FREE_KEYS from this run)."""
        path = ck.model_path(self.run_dir, step)
        log.warning("step %d: finished (%s) but results.json has no entry for it; re-evaluating it to rebuild "
                    "the entry", step, path)
        config = identity.with_free_keys(self.step_configs.get(step) or self.cfg.to_dict(), self.cfg.to_dict())
        cfg = from_dict(config, source=str(path))
        model, saved = load_step(self.modality, cfg, self.task, step, path, self.env)
        model.to(self.env.device)
        test_set = self.dataset(step, "test")  # the data keys are those of the run (runfolder.redo)
        cm = self.modality.evaluate(model, test_set, cfg, self.task, step, self.env)
        if self.env.is_main:
            self.record(step, cm, getattr(cm, "samples", len(test_set)), config=saved.get("config"))
            keep_step_data(self.modality, cfg, self.task, step, self.env, cm, model, test_set, path.parent)
        barrier()

    # --------------------------------------------------------------------------------------------
    def write_results(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        return recording.write_results(self.run_dir, entries, self.task, self.metadata(), method=self.cfg.method.name,
                                       metric=self.modality.metric_name(self.cfg))

    def record(self, step: int, cm, num_test: int, config: dict[str, Any] | None = None) -> None:
        base = self.step_configs[min(self.step_configs)] if self.step_configs else config
        entry, summary = recording.step_entry(cm, self.task, step, num_test, config, base)
        entries = [e for e in recording.read_entries(self.run_dir)[0] if e["step"] != step]
        self.write_results(entries + [entry])
        log.info(recording.format_summary(step, num_test, summary))
        if self.writer is not None:
            for k in STEP_METRICS:
                v = summary.get(k)
                if v is not None and not math.isnan(v):
                    self.writer.add_scalar(f"test/{k}", v, step)

    def final_report(self) -> dict[str, Any] | None:
        path = self.run_dir / "results.json"
        if not self.env.is_main or not path.is_file():
            return None
        results = read_results_json(path)
        row = dict(results.get("final", {}), run=str(self.run_dir))
        log.info("\n%s", format_table([row]))
        return results


def run_from_config(cfg: Config, *, steps: str | None = None, init_step0: str | None = None,
                    verbose: bool = False, redo_from: int | None = None,
                    replace_step0: bool = False) -> dict[str, Any] | None:
    """``redo_from``: retrain step T and later with this config, keeping the finished steps before T
    (docs/controller.md#redo-from). ``replace_step0``: --init-step0 may replace a finished step 0.

    A start that fails before anything was trained leaves no run folder behind when this call made
    it (docs/controller.md#failed-starts)."""
    env = init_distributed(cfg.device, cfg.train.dist_timeout)
    modality = get_modality(cfg.modality)
    ctl = Controller(cfg, env, modality, init_step0=init_step0, redo_from=redo_from, replace_step0=replace_step0)
    selected = parse_steps(steps, ctl.task.num_steps)  # a bad --steps leaves no run folder behind
    ctl.imported_regularizer = imported_regularizer(ctl.cfg.method, init_step0)
    ctl.created = first_missing(cfg.run_dir) if env.is_main else None
    setup_logging(cfg.run_dir, env, verbose)
    try:
        return ctl.run(selected)
    except Exception as exc:
        ctl.remove_failed_start()  # a failure before ctl.run held the folder (its preparation)
        if env.distributed and is_timeout(exc):
            raise collective_timeout_error(exc, env.rank, cfg.train.dist_timeout) from None
        if env.distributed and is_peer_lost(exc):
            raise peer_lost_error(exc, env.rank) from None
        raise

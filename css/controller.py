"""The step controller: runs steps 0..T of a task for either modality.

For each step t (docs/protocol-2d.md#step-hand-over, docs/controller.md#hand-over): build model(t)
with one classifier head per step, load model(t-1) into it (non-strictly: the new head is missing)
and into a frozen old model (strictly, eval mode, no gradients), initialise the new head from the
background row when the method asks, train, evaluate on the step's test set and write the reports.
Finished steps are skipped and an interrupted step resumes from its last epoch, so re-running the
same command continues a run.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from css import checkpoint as ck
from css import reports
from css.config import Config, save_config, step_value
from css.distributed import DistEnv, barrier, cpu_has_bf16, init_distributed, seed_everything
from css.engine import Trainer, TrainSettings
from css.handover import hand_over
from css.errors import ConfigError
from css.methods import PRESETS, Objective, resolve_method
from css.utils import atomic_write_text
from css.modality import Modality, get_modality
from css.tasks import Task


def step_summary(cm, task: Task, num_base: int) -> dict[str, Any]:
    """bg/old/new/all/hIoU and OA of a step's confusion matrix. A synthetic background channel
    (point clouds, docs/tasks.md#channels) is not a class: it is left out of every mean."""
    return cm.summary(num_base, background=task.background is not None)

log = logging.getLogger("css")


def parse_steps(text: str | None, num_steps: int) -> list[int]:
    """'2-5', '3', '0,2' or None (all) -> sorted list of steps, checked against the task."""
    if text is None or text == "":
        return list(range(num_steps))
    out: set[int] = set()
    try:
        for part in str(text).split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out.update(range(int(a), int(b) + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise ConfigError(f"--steps {text!r}: write a step, a range or a list, e.g. 2-5, 3 or 0,2") from None
    bad = [s for s in sorted(out) if s < 0 or s >= num_steps]
    if bad:
        raise ConfigError(f"--steps {text!r}: step(s) {bad} outside this task's steps 0..{num_steps - 1}")
    return sorted(out)


def setup_logging(run_dir: Path | None, env: DistEnv, verbose: bool = False) -> None:
    logger = logging.getLogger("css")
    logger.handlers.clear()
    logger.propagate = False
    if not env.is_main:
        logger.setLevel(logging.WARNING)
        logger.addHandler(logging.StreamHandler(sys.stderr))
        return
    logger.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "log.txt")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(fh)


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class Controller:
    cfg: Config
    env: DistEnv
    modality: Modality
    init_step0: str | None = None
    task: Task = field(init=False)
    run_dir: Path = field(init=False)

    def __post_init__(self):
        self.cfg.method = resolve_method(self.cfg.method, dataset=self.cfg.data.dataset, protocol=self.cfg.protocol,
                                         modality=self.cfg.modality)
        self.task = self.modality.task(self.cfg)
        self.run_dir = self.cfg.run_dir
        self.writer = None

    # --------------------------------------------------------------------------------------------
    def check_run_dir(self) -> None:
        """A run folder belongs to one config: refuse to mix results of different configs."""
        path = self.run_dir / "config.yaml"
        current = self.cfg.to_dict()
        if path.is_file():
            saved, now = _dotted(yaml.safe_load(path.read_text()) or {}), _dotted(current)
            # Keys the saved config lacks were added by a later css: they do not block a resume.
            diff = [f"{k}: {saved[k]!r} -> {now.get(k, '(absent)')!r}"
                    for k in sorted(saved) if k != "device" and saved[k] != now.get(k, "(absent)")]
            started = any(self.run_dir.glob("step*/*.pt"))
            if diff and started:
                shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
                raise ConfigError(
                    f"run folder {self.run_dir} was started with a different config ({shown}); resume "
                    f"with the same config (see {path}), or pick a new run name (name=...)")
        if self.env.is_main:
            save_config(self.cfg, path)

    def metadata(self) -> dict[str, Any]:
        return reports.build_metadata(
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
            schedule=t.schedule, lr_step=t.lr_step, lr_gamma=t.lr_gamma,
            eval_mode_from_epoch=self.modality.eval_mode_from_epoch(self.cfg)
            if hasattr(self.modality, "eval_mode_from_epoch") else None)

    def step_done(self, step: int) -> bool:
        return ck.model_path(self.run_dir, step).is_file() and self._recorded(step)

    def _recorded(self, step: int) -> bool:
        path = self.run_dir / "results.json"
        if not path.is_file():
            return False
        data = reports.read_results_json(path)
        return any(e["step"] == step for e in data.get("steps", []))

    # --------------------------------------------------------------------------------------------
    def run(self, steps: list[int]) -> dict[str, Any] | None:
        self.check_run_dir()
        if self.env.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        log.info("task %s/%s: %d steps %s; method %s; protocol %s; %d process(es) on %s", self.cfg.data.dataset,
                 self.task.name, self.task.num_steps, self.task.steps if self.task.num_steps <= 12 else "",
                 self.cfg.method.name, self.cfg.protocol, self.env.world_size, self.env.device)
        if self.cfg.modality == "pointcloud" and PRESETS.get(self.cfg.method.name, {}).get("pod") == "local":
            log.info("method %s: Local POD distils 2-D feature maps; on point clouds the preset runs without it "
                     "(docs/methods.md#point-clouds)", self.cfg.method.name)
        if self.env.device.type == "cpu" and self.cfg.train.precision == "bf16" and cpu_has_bf16() is False:
            log.warning("train.precision=bf16 on a CPU without bf16 instructions: autocast emulates it, "
                        "far slower than fp32 (~50x for DeepLabV3-R101, benchmarks/RESULTS.md); use "
                        "train.precision=fp32 on this machine")
        try:
            for step in steps:
                if self.step_done(step):
                    log.info("step %d: already finished in %s, skipping", step, self.run_dir)
                    continue
                self.run_step(step)
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.final_report()

    def run_step(self, step: int) -> None:
        cfg, env, task = self.cfg, self.env, self.task
        seed_everything(cfg.seed + step)
        num_old, num_cur = task.num_old_classes(step), task.num_classes(step)
        objective = Objective(cfg.method, step=step, num_old=num_old, num_current=num_cur,
                              protocol=cfg.protocol, ignore_index=task.ignore_index)
        model = self.modality.build_model(cfg, task.classes_per_step(step), env)
        old_model = None
        prev_extra: dict[str, Any] = {}
        if step == 0 and self.init_step0:
            report = self.modality.import_weights(model, self.init_step0)
            log.info("step 0: imported %s (%s); evaluating it instead of training", self.init_step0, report)
            model.to(env.device)
            self.finish_step(step, model, objective, trained=False)
            return
        if step == 0:
            self.modality.load_pretrained(model, cfg)
        else:
            model, old_model, prev_extra = hand_over(self.modality, cfg, task, step, self.run_dir, env,
                                                     init_balanced=bool(cfg.method.init_balanced))
            old_model.to(env.device)
        model.to(env.device)
        objective.attach_regularizer(model, prev_extra.get("regularizer"))
        log.info("step %d: classes %s -> %d channels (%d old); objective: %s", step, task.steps[step], num_cur,
                 num_old, objective.describe())
        train_model = model
        if env.distributed:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        settings = self.settings(step)
        dataset = self.dataset(step, "train")
        log.info("step %d: %d training samples, global batch %d, %d epochs, lr %g", step, len(dataset),
                 settings.batch_size, settings.epochs, settings.lr)
        trainer = Trainer(model=train_model, old_model=old_model, objective=objective, dataset=dataset, env=env,
                          settings=settings, resume_file=ck.resume_path(self.run_dir, step),
                          collate=self.modality.collate, writer=self.writer)
        trainer.fit()
        self.finish_step(step, model, objective, trained=True, history=trainer.history)

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
                    history: list | None = None) -> None:
        cfg, env, task = self.cfg, self.env, self.task
        test_set = self.dataset(step, "test")
        cm = self.modality.evaluate(model, test_set, cfg, task, step, env)
        if env.is_main:
            extra = {"regularizer": objective.regularizer.state_dict() if objective.regularizer else None,
                     "thresholds": objective.thresholds, "config": cfg.to_dict(), "trained": trained,
                     "history": [vars(h) for h in history or []]}
            ck.save_step_model(ck.model_path(self.run_dir, step), model, step=step,
                               classes_per_step=task.classes_per_step(step),
                               task={"dataset": task.dataset, "name": task.name, "steps": task.steps}, extra=extra)
            self.record(step, cm, getattr(cm, "samples", len(test_set)))
            rp = ck.resume_path(self.run_dir, step)
            if rp.exists():
                rp.unlink()
        barrier()

    # --------------------------------------------------------------------------------------------
    def record(self, step: int, cm, num_test: int) -> None:
        task = self.task
        num_base = task.num_classes(0)
        summary = step_summary(cm, task, num_base)
        present = cm.present().tolist()
        iou = [float(v) if p else None for v, p in zip(cm.iou().tolist(), present)]
        total = task.num_classes(task.num_steps - 1)
        reports.append_results_row(self.run_dir / "results.csv", step, iou, total, summary["all"],
                                   oa=summary["oa"] if self.cfg.modality == "pointcloud" else None)
        path = self.run_dir / "results.json"
        entries = []
        if path.is_file():
            entries = [e for e in reports.read_results_json(path).get("steps", []) if e["step"] != step]
        entry = reports.step_entry(step, summary, iou)
        entry.update(num_test=num_test)
        entries = sorted(entries + [entry], key=lambda e: e["step"])
        results = reports.build_results(entries, task.channel_names(task.num_steps - 1), self.metadata(),
                                        task=task.name, dataset=task.dataset, method=self.cfg.method.name,
                                        background=task.background is not None)
        atomic_write_text(path, reports.dumps_json(results) + "\n")
        reports.plot_miou_per_step(self.run_dir / "miou.png", results)
        fmt = lambda v: "  -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.2f}"
        log.info("step %d test (%d samples): bg %s | old %s | new %s | all %s | hIoU %s | OA %s", step, num_test,
                 fmt(summary["bg"]), fmt(summary["old"]), fmt(summary["new"]), fmt(summary["all"]),
                 fmt(summary["hiou"]), fmt(summary["oa"]))
        if self.writer is not None:
            for k in ("bg", "old", "new", "all", "hiou", "oa"):
                v = summary.get(k)
                if v is not None and not math.isnan(v):
                    self.writer.add_scalar(f"test/{k}", v, step)

    def final_report(self) -> dict[str, Any] | None:
        path = self.run_dir / "results.json"
        if not self.env.is_main or not path.is_file():
            return None
        results = reports.read_results_json(path)
        row = dict(results.get("final", {}), run=str(self.run_dir))
        log.info("\n%s", reports.format_table([row]))
        return results


def run_from_config(cfg: Config, *, steps: str | None = None, init_step0: str | None = None,
                    verbose: bool = False) -> dict[str, Any] | None:
    env = init_distributed(cfg.device)
    modality = get_modality(cfg.modality)
    setup_logging(cfg.run_dir, env, verbose)
    ctl = Controller(cfg, env, modality, init_step0=init_step0)
    return ctl.run(parse_steps(steps, ctl.task.num_steps))

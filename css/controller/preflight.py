"""The check of every step a run will train, before the first one trains (docs/controller.md#preflight).

A step's training set can be too small for one batch, its test set empty, or one of its classes
shown by no training sample; each of these used to stop the run only when that step began, after
the earlier steps had trained for hours. Everything needed to know is there before step 0: the
class-presence index of each split is in memory, so building all 2 x (T + 1) datasets costs
little. ``check_steps`` builds them, collects every problem of every step and raises one error
that lists them with their fixes.
"""

from __future__ import annotations

import logging
from typing import Any

from css.distributed import DistEnv
from css.engine.loaders import local_batch, shard_size
from css.errors import ConfigError
from css.tasks.registry import is_published

log = logging.getLogger("css")


def step_problems(task, step: int, train, test, *, batch_size: int, env: DistEnv, protocol: str,
                  batch_key: str, trains: bool = True) -> tuple[list[str], list[str]]:
    """(problems, warnings) of one step, from its built training and test sets.

    ``train``/``test``: the step's datasets (``len`` and ``shown_labels()``, the dataset labels some
    item shows); ``trains``: False for a step that is only evaluated (an imported step 0). A class
    no training sample shows is a warning for a published task on its published dataset (the
    reference has such steps: ScanNet's refrigerator under ``protocol: reference``), else a problem."""
    problems: list[str] = []
    warnings: list[str] = []
    if trains:
        per_process = local_batch(batch_size, env, batch_key)
        available = shard_size(len(train), env.world_size, protocol)
        if available < per_process:
            largest = available * env.world_size
            fix = (f"set {batch_key} to at most {largest}" if largest > 0 else
                   "check data.root, the task and data.overlap")
            problems.append(f"step {step}: the training set has {len(train)} sample(s), fewer than one batch of "
                            f"{batch_size} ({batch_key}; the last incomplete batch is dropped); {fix}")
        if task.adds == "classes":
            shown = train.shown_labels()
            missing = [label for label in task.current_labels(step) if label not in shown]
            if missing:
                names = ", ".join(f"{task.class_name(label)} ({label})" for label in missing)
                what = f"step {step}: no training sample shows {names}, so the step cannot learn it"
                if is_published(task):
                    warnings.append(f"{what} (the published protocol has this step as it is)")
                else:
                    problems.append(f"{what}; add data that shows it, or move it to a step whose training "
                                    f"data shows it (task.steps)")
    if len(test) == 0:
        problems.append(f"step {step}: the test set is empty (no test sample shows a class seen by this step); "
                        f"check data.root and the task")
    return problems, warnings


def check_steps(ctl: Any, steps: list[int], finished: set[int]) -> None:
    """Build and check the training and test sets of every step of ``steps`` that is not finished;
    one ConfigError lists every problem (the run then leaves no folder it made behind,
    docs/controller.md#failed-starts). ``ctl``: the Controller (its task, config, datasets, settings)."""
    problems: list[str] = []
    for step in steps:
        if step in finished:
            continue
        trains = not (step == 0 and ctl.init_step0)
        train = ctl.dataset(step, "train") if trains else None
        test = ctl.dataset(step, "test")
        settings = ctl.settings(step)
        key = "train.step0.batch_size" if step == 0 and ctl.cfg.train.step0.batch_size is not None else "train.batch_size"
        found, warned = step_problems(ctl.task, step, train, test, batch_size=settings.batch_size,
                                      env=ctl.env, protocol=ctl.cfg.protocol, batch_key=key,
                                      trains=trains)
        problems += found
        for line in warned:
            log.warning("%s", line)
    if problems:
        listed = "\n  ".join(problems)
        raise ConfigError(f"the run would fail at a later step, so no step was trained:\n  {listed}")

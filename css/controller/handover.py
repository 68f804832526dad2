"""Loading a step's model, and the hand-over from step t-1 to step t (docs/controller.md#hand-over).

Both modalities and every entry point (the controller, ``css.evaluate``, ``css.predict``) load a
finished step through :func:`load_step`, so the checks on a checkpoint (its format, its heads
against the task) are written once. :func:`hand_over` builds what step t trains from:

- model(t): model(t-1)'s body and old heads loaded into a model with one more head; every key but
  the new head's must be present, and nothing unexpected; then, when the method asks, the new
  head is initialised from the background row (after the load, so the load cannot undo it);
- the old model: model(t-1) itself, loaded strictly, frozen (no gradients) and in eval mode.

Two method keys change what is handed over (``cfg.method``, resolved): ``freeze_body`` (F&A) freezes
model(t) but its new head (docs/pointcloud-baselines.md#freeze-and-add); ``separate_classifier``
pins the old class rows and restarts the background row (docs/pointcloud-baselines.md#separate-classifier).
The modality then prepares the old model (``Modality.prepare_old_model``: 3DPC-CISS runs it with
single-pass MC dropout, docs/pointcloud-ciss.md#wiring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from css import checkpoint as ck
from css.errors import CheckpointError


def check_heads(saved: dict[str, Any], task: Any, step: int, path: str | Path) -> None:
    """A checkpoint's heads must be those the task has at ``step``."""
    expected = task.classes_per_step(step)
    if list(saved["classes_per_step"]) != list(expected):
        raise CheckpointError(f"{path} has heads {list(saved['classes_per_step'])} but step {step} of task "
                              f"{task.name} needs {expected}; was it made for another task?")


def load_step(modality: Any, cfg: Any, task: Any, step: int, path: str | Path, env: Any,
              saved: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """model(step) with the weights of the css checkpoint ``path`` (strict), on the CPU."""
    saved = ck.load_step_model(path) if saved is None else saved
    if int(saved.get("step", step)) != step:
        raise CheckpointError(f"{path} holds the model of step {saved['step']}, not of step {step}")
    check_heads(saved, task, step, path)
    model = modality.build_model(cfg, task.classes_per_step(step), env)
    try:
        model.load_state_dict(saved["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model of this config ({_first_line(exc)}); was it "
                              f"trained with other model settings?") from exc
    return model, saved


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients: the old model of an incremental step."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def hand_over(modality: Any, cfg: Any, task: Any, step: int, run_dir: Path, env: Any, *,
              init_balanced: bool) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """(model(step), frozen old model, the step-(t-1) checkpoint) for incremental step ``step``."""
    path = ck.model_path(run_dir, step - 1)
    if not path.is_file():
        raise CheckpointError(
            f"step {step} needs the model of step {step - 1} at {path}, which does not exist; run step "
            f"{step - 1} first (e.g. --steps {step - 1}-{step}) or start from a step-0 checkpoint with --init-step0")
    old, prev = load_step(modality, cfg, task, step - 1, path, env)
    model = modality.build_model(cfg, task.classes_per_step(step), env)
    missing, unexpected = model.load_state_dict(prev["model"], strict=False)
    # a class step adds a head; a domain step keeps the heads it has (docs/tasks.md#domain-steps)
    adds_head = len(task.classes_per_step(step)) > len(task.classes_per_step(step - 1))
    new_head = f"cls.{step}."
    if any(not k.startswith(new_head) for k in missing) or unexpected or bool(missing) != adds_head:
        raise CheckpointError(f"{path} does not fit model({step}): missing "
                              f"{sorted(k for k in missing if not k.startswith(new_head))}, unexpected "
                              f"{sorted(unexpected)}; was the run folder made with other model settings?")
    if init_balanced:
        model.init_new_head_from_background()  # docs/methods.md#balanced-init
    method = getattr(cfg, "method", None)
    if getattr(method, "freeze_body", False):
        model.freeze_all_but_new_head()
    if getattr(method, "separate_classifier", False):
        model.separate_classifier()  # after the freeze: the background row trains under F&A too
    old = freeze(old)
    modality.prepare_old_model(cfg, old)
    return model, old, prev


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

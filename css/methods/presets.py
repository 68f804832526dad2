"""Method presets: the values every method starts from and what each preset sets
(docs/methods.md#presets), and the form in which a modality adds presets of its own
(``MethodExtension``, returned by ``Modality.method_extension``).

A *method* (FT, LwF, LwF-MC, ILT, EWC, RW, PI, MiB, PLOP, LGKD, lgkd-only, mib+lgkd, F&A; the point
clouds add 3DPC-CISS and LwF*) is a recipe of losses and options. css.methods.resolve fills a
config's method from these tables; css.methods.objective turns it into the loss of a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

# Values every method starts from (the reference argparser defaults, docs/methods.md#presets).
COMMON: dict[str, Any] = dict(
    classification="ce", loss_kd=0.0, kd="none", kd_resolution="full", alpha=1.0, prev_kd=10.0,
    novel_kd=2.0, loss_de=0.0, icarl_importance=0.0, regularizer="none", reg_importance=0.0,
    reg_alpha=0.9, reg_iterations=10, reg_normalize=True, reg_per_tensor=False,
    reg_skip_classifier=False, pod="none", pod_factor=0.01, pod_logits=False,
    pod_logits_factor=0.0005, pod_schedule=True, pod_scales=[1, 2, 4], pseudo="none", pseudo_threshold=0.001, pseudo_bins=100,
    adaptive_factor=False, init_balanced=False, freeze_body=False, separate_classifier=False,
)

_PLOP = dict(pod="local", pod_factor=0.01, pod_logits=True, pod_logits_factor=0.0005, pseudo="entropy",
             pseudo_threshold=0.001, adaptive_factor=True, init_balanced=True)

# docs/methods.md#presets (the values each preset sets).
PRESETS: dict[str, dict[str, Any]] = {
    "ft": {},
    "lwf": dict(loss_kd=100.0, kd="kd"),
    "lwf-mc": dict(classification="bce", icarl_importance=10.0),
    "ilt": dict(loss_kd=100.0, kd="kd", loss_de=100.0),
    "ewc": dict(regularizer="ewc", reg_importance=100.0),
    "rw": dict(regularizer="rw", reg_importance=100.0),
    "pi": dict(regularizer="pi", reg_importance=100.0),
    "mib": dict(loss_kd=10.0, kd="unkd", classification="unce", init_balanced=True),
    "plop": dict(_PLOP),
    # docs/protocol-2d-losses.md#lgkd-runs: LGKD = PLOP + 1 x LGKD on the stride-16 logits.
    "lgkd": dict(_PLOP, loss_kd=1.0, kd="lgkd", kd_resolution="small"),
    "lgkd-only": dict(loss_kd=1.0, kd="lgkd", kd_resolution="small"),
    "mib+lgkd": dict(classification="unce", loss_kd=1.0, kd="lgkd", kd_resolution="small", init_balanced=True),
    # docs/pointcloud-baselines.md#freeze-and-add: FT with everything but the new head frozen.
    "fa": dict(freeze_body=True),
}
ALIASES = {"finetune": "ft", "fine-tuning": "ft", "lwf_mc": "lwf-mc", "lgkd_only": "lgkd-only",
           "mib_lgkd": "mib+lgkd", "freeze-and-add": "fa", "f&a": "fa"}


class StepLoss(Protocol):
    """A loss that replaces the general objective of an incremental step (a modality's own method,
    e.g. 3DPC-CISS): ``(total, terms)`` of one batch, and the line that describes it in the log."""

    def __call__(self, new: Any, old: Any, labels: torch.Tensor, inputs: torch.Tensor | None, *,
                 correction: Callable[[torch.Tensor], Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def describe(self) -> str: ...


def _nothing(*args: Any, **kwargs: Any) -> None:
    """The default hook: no check, no step loss."""
    return None


@dataclass(frozen=True)
class MethodExtension:
    """The presets a modality adds to the core's, and how they resolve and train.

    - ``presets`` / ``aliases``: as PRESETS / ALIASES; listed after the core's.
    - ``resolve(key, given, values, *, dataset, protocol, modality)``: called for every method
      before the user's values apply: fill ``values`` for the modality's own presets, refuse their
      keys elsewhere (``key``: the preset; ``given``: the user's keys, None = not set).
    - ``check(key, values, *, modality)``: called after the user's values apply.
    - ``step_loss(method, *, step, num_steps, num_old, protocol, ignore_index)``: the ``StepLoss``
      of an incremental step of one of its presets, or None for every other method.
    """

    presets: dict[str, dict[str, Any]]
    aliases: dict[str, str] = field(default_factory=dict)
    resolve: Callable[..., None] = _nothing
    check: Callable[..., None] = _nothing
    step_loss: Callable[..., StepLoss | None] = _nothing

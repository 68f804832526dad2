"""The method presets the point clouds add (``EXTENSION``, docs/methods.md#point-clouds): 3DPC-CISS
and LwF as the 3DPC-CISS paper ran it, the separate classifier of its baselines, and Local POD left
out of every preset on points.

``resolve_ciss`` fills the ``method.ciss_*`` keys of the 3dpc-ciss preset from the dataset and the
protocol (docs/pointcloud-ciss.md#configuration) and refuses them on any other method;
``ciss_options`` turns a resolved method into the ``CISSOptions`` of one step, applying the
multi-step rule (docs/pointcloud-ciss.md#protocol); ``ciss_objective`` computes the loss of one
batch from the new and old model outputs and the batch inputs (docs/pointcloud-ciss.md#wiring).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from css.errors import ConfigError
from css.methods.presets import MethodExtension

CISS = "3dpc-ciss"

CISS_KEYS = ("ciss_threshold", "ciss_neighbours", "ciss_centres", "ciss_gft_neighbours", "ciss_gft_weight",
             "ciss_pooled_neighbours", "ciss_reference_offset", "ciss_overwrite_novel", "ciss_reference_nan",
             "ciss_reference_unannotated")

# method key -> the CISSOptions field it sets, for the keys that are plain copies.
_SWITCHES = {"ciss_reference_offset": "reference_offset", "ciss_overwrite_novel": "overwrite_novel",
             "ciss_reference_nan": "reference_nan", "ciss_reference_unannotated": "reference_unannotated"}


def resolve_ciss(key: str, given: dict[str, Any], values: dict[str, Any], *, dataset: str, protocol: str,
                 modality: str) -> None:
    """Fill ``values`` with the 3dpc-ciss defaults (in place), or refuse ciss_* keys elsewhere.

    ``key``: the preset name; ``given``: the keys the user set (None = not set)."""
    user = [k for k in CISS_KEYS if given.get(k) is not None]
    if key != CISS:
        if user:
            raise ConfigError(f"method.{user[0]}: a setting of method {CISS}, which method '{key}' does not use; "
                              f"remove it or set method.name: {CISS}")
        return
    if modality != "pointcloud":
        raise ConfigError(f"method.name: '{CISS}' is a point-cloud method (its neighbours, uncertainty and "
                          f"farthest point sampling need point coordinates) and cannot train modality "
                          f"'{modality}'; choose an image method (e.g. ft, lwf, plop, lgkd)")
    from css.pointcloud.ciss import CISSOptions

    if protocol not in ("fixed", "reference"):
        raise ConfigError(f"protocol: {protocol!r} is not one of fixed, reference")
    o = CISSOptions.for_protocol(protocol, dataset)
    values.update(ciss_threshold=o.threshold, ciss_neighbours=o.k, ciss_centres=None, ciss_gft_neighbours=o.gft_k,
                  ciss_gft_weight=o.gft_weight, ciss_pooled_neighbours=o.neighbour_mode == "pooled",
                  **{k: getattr(o, f) for k, f in _SWITCHES.items()})
    _check(given)


def _check(given: dict[str, Any]) -> None:
    def bad(k: str, what: str) -> ConfigError:
        return ConfigError(f"method.{k}: {given[k]!r} — {what}; remove the key for the default")

    t = given.get("ciss_threshold")
    if t is not None and not (math.isfinite(t) and t >= 0):
        raise bad("ciss_threshold", "the uncertainty threshold must be a finite number >= 0")
    n = given.get("ciss_neighbours")
    if n is not None and n < 2:
        raise bad("ciss_neighbours", "need at least 2 neighbours (the point itself and one other)")
    for k in ("ciss_centres", "ciss_gft_neighbours"):
        if given.get(k) is not None and given[k] < 1:
            raise bad(k, "must be a positive integer")
    w = given.get("ciss_gft_weight")
    if w is not None and not (math.isfinite(w) and w >= 0):
        raise bad("ciss_gft_weight", "the GFT weight must be a finite number >= 0")


def is_last_step(step: int, num_steps: int | None) -> bool:
    """Whether ``step`` is the last of a task of ``num_steps`` (None: unknown, taken as the last). At
    an earlier step future classes are still background, so the point-cloud presets keep the
    background channel (docs/pointcloud-ciss.md#protocol, docs/pointcloud-baselines.md#lwf-3dpc)."""
    return num_steps is None or step >= num_steps - 1


def ciss_options(method: Any, *, step: int, num_steps: int | None, protocol: str, dataset: str | None = None,
                 ignore_index: int = 255):
    """The ``CISSOptions`` of ``step`` for a resolved 3dpc-ciss method (null keys: protocol defaults).

    Multi-step tasks (docs/pointcloud-ciss.md#protocol): at an intermediate step (not the last of
    ``num_steps``) the background is kept as a target and nothing is shifted
    (keep_background, no reference_offset); the last step, and every step when ``num_steps`` is
    None, uses the two-step settings."""
    from css.pointcloud.ciss import CISSOptions

    o = CISSOptions.for_protocol(protocol, dataset)
    kwargs: dict[str, Any] = {}
    for key, value in (("threshold", method.ciss_threshold), ("k", method.ciss_neighbours),
                       ("gft_k", method.ciss_gft_neighbours), ("gft_weight", method.ciss_gft_weight),
                       ("gft_centres", method.ciss_centres)):
        if value is not None:
            kwargs[key] = value
    if method.ciss_pooled_neighbours is not None:
        kwargs["neighbour_mode"] = "pooled" if method.ciss_pooled_neighbours else "per_block"
    for key, field in _SWITCHES.items():
        if getattr(method, key) is not None:
            kwargs[field] = bool(getattr(method, key))
    if not is_last_step(step, num_steps):
        kwargs.update(keep_background=True, reference_offset=False)
    return dataclasses.replace(o, **kwargs, ignore_index=ignore_index)


def ciss_objective(new: Any, old: Any, labels: torch.Tensor, inputs: torch.Tensor | None, *, num_old: int,
                   options: Any, correction: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(CE + GFT, {"ce", "gft"}) of an incremental 3DPC-CISS batch (docs/pointcloud-ciss.md#wiring).

    ``correction(labels)``: the factor that turns the CE's per-process mean over labelled points
    into the mean over the global batch (1 outside DDP and under protocol reference)."""
    from css.pointcloud.ciss import batch_xyz, ciss_losses

    if inputs is None:
        raise RuntimeError(f"method {CISS} needs the batch inputs (the point coordinates): call "
                           f"objective(new, old, labels, inputs=x)")
    centres = options.gft_centres
    if centres is not None and centres > inputs.shape[2]:
        raise ConfigError(f"method.ciss_centres: {centres} centres per block, but a block has only "
                          f"{inputs.shape[2]} points (data.num_points); lower method.ciss_centres or remove it "
                          f"for ceil(N / 4)")
    ce, gft, pl = ciss_losses(new, old, labels, batch_xyz(inputs), num_old=num_old, options=options)
    ce = ce * correction(pl.labels)
    return ce + gft, {"ce": ce, "gft": gft}


# ------------------------------------------------------------------------------------------------
# LwF as the 3DPC-CISS paper ran it ("LwF*", docs/pointcloud-baselines.md#lwf-3dpc).

LWF3D = "lwf-3dpc"
LWF3D_KEYS = ("lwf_temperature", "lwf_reference_background")
# Keys of the general objective that lwf-3dpc replaces; a value given for them would be ignored.
_LWF3D_UNUSED = {"classification": "ce", "kd": "soft", "pseudo": "none", "loss_de": 0.0, "icarl_importance": 0.0}


def resolve_lwf3d(key: str, given: dict[str, Any], values: dict[str, Any], *, protocol: str,
                  modality: str) -> None:
    """Fill ``values`` with the lwf-3dpc defaults (in place), or refuse its keys elsewhere."""
    user = [k for k in LWF3D_KEYS if given.get(k) is not None]
    if key != LWF3D:
        if user:
            raise ConfigError(f"method.{user[0]}: a setting of method {LWF3D}, which method '{key}' does not use; "
                              f"remove it or set method.name: {LWF3D}")
        if given.get("kd") == "soft":
            raise ConfigError(f"method.kd: 'soft' is the distillation of method {LWF3D} (it drops the background "
                              f"channel at the last step); set method.name: {LWF3D}, or choose kd, unkd or lgkd")
        return
    if modality != "pointcloud":
        raise ConfigError(f"method.name: '{LWF3D}' trains without the background channel, which only a point-cloud "
                          f"task's synthetic background allows; on images choose lwf")
    for k, v in _LWF3D_UNUSED.items():
        if given.get(k) is not None and given[k] != v:
            raise ConfigError(f"method.{k}: {given[k]!r} — method {LWF3D} has its own loss (CE without background + "
                              f"soft KD) and does not use it; remove method.{k}")
    t = given.get("lwf_temperature")
    if t is not None and not (math.isfinite(t) and t > 0):
        raise ConfigError(f"method.lwf_temperature: {t!r} — the temperature must be a finite number > 0; "
                          f"remove the key for 2")
    values.update(_LWF3D_UNUSED, loss_kd=1.0, lwf_temperature=2.0,
                  lwf_reference_background=protocol == "reference", init_balanced=False)


def lwf3d_objective(new: Any, old: Any, labels: torch.Tensor, *, num_old: int, method: Any, last_step: bool,
                    correction: Any, ignore_index: int = 255) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(CE + loss_kd x KD, {"ce", "kd"}) of an incremental lwf-3dpc batch (docs/pointcloud-baselines.md#lwf-3dpc).

    At the last step of the task the background channel 0 is left out of both terms, as the
    published model has no background row: the CE runs over channels 1.. on the novel points
    (background points ignored, or with ``lwf_reference_background`` trained as the last old class,
    channel num_old - 1), and the KD over the old classes 1..num_old-1. At an intermediate step of a
    multi-step task future classes are still background, so both keep channel 0.
    ``correction(labels)`` rescales the CE's per-process mean to the global batch's under DDP."""
    from css import losses as L

    if last_step:
        bg = labels == 0
        fill = num_old - 1 if method.lwf_reference_background else ignore_index
        labels = torch.where(bg, torch.full_like(labels, fill), labels)
    ce = L.labelled_cross_entropy(new.logits, labels, background=not last_step, ignore_index=ignore_index)
    ce = ce * correction(labels)
    kd = method.loss_kd * L.soft_kd(new.logits, old.logits, temperature=method.lwf_temperature,
                                    first=1 if last_step else 0)
    return ce + kd, {"ce": ce, "kd": kd}


# ------------------------------------------------------------------------------------------------
# The separate [background, novel] classifier of the 3DPC-CISS FT, F&A and EWC baselines
# (docs/pointcloud-baselines.md#separate-classifier).

def check_separate_classifier(key: str, values: dict[str, Any], *, modality: str) -> None:
    """Refuse ``separate_classifier`` where its cross-entropy over [background, novel] is not the loss."""
    if not values.get("separate_classifier"):
        return
    if modality != "pointcloud":
        raise ConfigError("method.separate_classifier: true needs a synthetic background (point clouds): an "
                          "image's background class is scored at every step; remove the key")
    others = [k for k, off in (("kd", "none"), ("pseudo", "none"), ("classification", "ce")) if values[k] != off]
    others += [k for k in ("loss_de", "icarl_importance") if values[k]]
    if key in (CISS, LWF3D) or others:
        what = f"method {key}" if key in (CISS, LWF3D) else f"method.{others[0]}: {values[others[0]]!r}"
        raise ConfigError(f"method.separate_classifier: true trains a plain cross-entropy over [background, novel] "
                          f"(FT, F&A, EWC/RW/PI) and cannot be combined with {what}; remove one of them")


# ------------------------------------------------------------------------------------------------
# What the point clouds add to the presets (css.methods.presets.MethodExtension).

def resolve(key: str, given: dict[str, Any], values: dict[str, Any], *, dataset: str, protocol: str,
            modality: str) -> None:
    """Fill and check the point-cloud keys of ``values`` (in place) before the user's values apply."""
    if modality == "pointcloud":
        # Local POD distils 2-D feature maps: the presets that use it (PLOP, LGKD) run without it on
        # points (docs/methods.md#point-clouds); asking for it there is an error.
        if given.get("pod") not in (None, "none"):
            raise ConfigError(f"method.pod: {given['pod']!r} — Local POD distils 2-D feature maps and has no "
                              f"point-cloud form; remove method.pod (point-cloud presets leave it off)")
        values.update(pod="none", pod_logits=False)
    resolve_ciss(key, given, values, dataset=dataset, protocol=protocol, modality=modality)
    resolve_lwf3d(key, given, values, protocol=protocol, modality=modality)


@dataclass
class CissLoss:
    """The incremental loss of 3DPC-CISS for one step (docs/pointcloud-ciss.md#wiring)."""

    options: Any
    num_old: int

    def __call__(self, new, old, labels, inputs, *, correction):
        return ciss_objective(new, old, labels, inputs, num_old=self.num_old, options=self.options,
                              correction=correction)

    def describe(self) -> str:
        o = self.options
        return (f"CE on uncertainty-aware pseudo-labels (tau {o.threshold:g}, K {o.k}, {o.neighbour_mode} "
                f"neighbours) + {o.gft_weight:g} x GFT")


@dataclass
class Lwf3dLoss:
    """The incremental loss of lwf-3dpc for one step; it drops the background channel at the last
    step only (docs/pointcloud-baselines.md#lwf-3dpc)."""

    method: Any
    num_old: int
    last_step: bool
    ignore_index: int

    def __call__(self, new, old, labels, inputs, *, correction):
        return lwf3d_objective(new, old, labels, num_old=self.num_old, method=self.method, last_step=self.last_step,
                               correction=correction, ignore_index=self.ignore_index)

    def describe(self) -> str:
        m = self.method
        where = "without background" if self.last_step else "with background (intermediate step)"
        bg = ", background points as the last old class" if self.last_step and m.lwf_reference_background else ""
        return f"CE {where}{bg} + {m.loss_kd:g} x soft KD (T {m.lwf_temperature:g})"


def step_loss(method: Any, *, step: int, num_steps: int | None, num_old: int, protocol: str,
              ignore_index: int) -> CissLoss | Lwf3dLoss | None:
    """The loss that replaces the general objective at an incremental step of 3dpc-ciss or lwf-3dpc."""
    if method.name == CISS:
        options = ciss_options(method, step=step, num_steps=num_steps, protocol=protocol, ignore_index=ignore_index)
        return CissLoss(options, num_old)
    if method.name == LWF3D:
        return Lwf3dLoss(method, num_old, is_last_step(step, num_steps), ignore_index)
    return None


EXTENSION = MethodExtension(
    presets={
        # docs/pointcloud-ciss.md#wiring: CE on its own pseudo-labels + GFT, novel head Kaiming-initialised;
        # the ciss_* keys come from the dataset and the protocol (resolve_ciss).
        CISS: dict(init_balanced=False),
        # docs/pointcloud-baselines.md#lwf-3dpc: LwF as the 3DPC-CISS paper ran it (CE without background +
        # 1 x soft KD at T = 2); its keys come from the protocol (resolve_lwf3d).
        LWF3D: dict(init_balanced=False),
    },
    aliases={"3dpc_ciss": CISS, "ciss": CISS, "lwf*": LWF3D, "lwf-star": LWF3D, "lwf_3dpc": LWF3D},
    resolve=resolve, check=check_separate_classifier, step_loss=step_loss)

"""``resolve_method``: a config's ``method`` with every null field filled from its preset
(docs/methods.md#presets), the core's presets and those the modalities add (``MethodExtension``).
Unlike the reference (docs/protocol-2d.md#methods) a value the user gave is never overwritten.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from css.config.method import MethodConfig
from css.errors import ConfigError
from css.methods.presets import ALIASES, COMMON, PRESETS
from css.modality.registry import method_extensions


def all_presets(extensions: list[Any] | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(presets, aliases): the core's, then each modality's (``extensions``: the modalities'
    ``MethodExtension``s when the caller has them already)."""
    presets, aliases = dict(PRESETS), dict(ALIASES)
    for ext in method_extensions() if extensions is None else extensions:
        presets.update(ext.presets)
        aliases.update(ext.aliases)
    return presets, aliases


def method_names() -> list[str]:
    return list(all_presets()[0])


def resolve_method(method: MethodConfig, *, dataset: str, protocol: str = "reference",
                   modality: str = "image") -> MethodConfig:
    """Return a copy of ``method`` with every null field filled from its preset (docs/methods.md#presets).

    Each modality's extension then fills and checks its own keys (point clouds: Local POD distils
    2-D feature maps, so the presets that use it run without it on points, docs/methods.md#point-clouds).
    """
    extensions = method_extensions()
    presets, aliases = all_presets(extensions)
    key = aliases.get(method.name.lower(), method.name.lower())
    if key not in presets:
        import difflib

        close = difflib.get_close_matches(key, list(presets), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"method.name: unknown method '{method.name}'; choose one of {', '.join(presets)}.{hint}")
    values = dict(COMMON)
    values.update(presets[key])
    if dataset == "ade" and key == "lgkd":
        # docs/protocol-2d.md#methods: the LGKD preset switches to the PLOP ADE POD factors.
        values.update(pod_factor=0.001, pod_logits_factor=0.00001)
    if dataset == "ade" and key == "plop" and protocol == "fixed":
        # docs/protocol-2d.md#corrected-by-fixed: the reference PLOP preset ignores the dataset and
        # runs ADE with VOC factors; the fixed protocol uses the factors of the original PLOP ADE
        # scripts (docs/protocol-2d.md#methods).
        values.update(pod_factor=0.001, pod_logits_factor=0.00001)
    if protocol == "mib" and key in ("ewc", "pi"):
        # docs/protocol.md#mib-conventions: MiB's own presets weigh EWC and PI 500 (the LGKD/PLOP code 100)
        values.update(reg_importance=500.0)
    given = {f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.name != "name"}
    for ext in extensions:
        ext.resolve(key, given, values, dataset=dataset, protocol=protocol, modality=modality)
    _kd_from_weight(given, values)
    values.update({k: v for k, v in given.items() if v is not None})
    for ext in extensions:
        ext.check(key, values, modality=modality)
    return MethodConfig(name=key, **values)


# What each method key needs that a domain step lacks (docs/methods.md#domain-steps).
_NEEDS_NEW_CLASSES = {
    ("classification", "unce"): "MiB's unbiased cross-entropy merges the old classes into the background",
    ("kd", "unkd"): "MiB's unbiased distillation merges the new classes into the background",
    ("kd", "lgkd"): "LGKD's label guidance moves the background probability to the new class of a pixel",
    ("pseudo", "entropy"): "pseudo-labels relabel background pixels with old classes",
    ("init_balanced", True): "the balanced initialisation fills a new head from the background row",
}


def check_for_domains(method: MethodConfig) -> None:
    """Refuse a resolved method whose idea needs new classes or a background class on a domain-incremental
    task, where every step sees the same classes and there is no background (docs/methods.md#domain-steps)."""
    found = [f"method.{key}: {value} ({why})" for (key, value), why in _NEEDS_NEW_CLASSES.items()
             if getattr(method, key, None) == value]
    if found:
        raise ConfigError(
            f"method '{method.name}' does not apply to a domain-incremental task: domain steps add no classes and "
            "have no background class, but " + "; ".join(found) + ". Use method.name=ft with method.loss_kd "
            "(plain distillation, the MiB script) or method.pod=local (the PLOP scripts), or lwf, ilt, ewc, rw, pi")


def _kd_from_weight(given: dict[str, Any], values: dict[str, Any]) -> None:
    """A KD weight without a KD loss (docs/methods.md#kd-weight): ``loss_kd > 0`` given and ``kd`` left
    out switches a preset without distillation to plain KD, as the reference does (its Cityscapes-domain
    script runs FT with --loss_kd 10); ``kd: none`` given with it contradicts the weight."""
    weight = given.get("loss_kd")
    if weight is None or weight <= 0:
        return
    if given.get("kd") == "none":
        raise ConfigError(
            f"method.kd: 'none' contradicts method.loss_kd: {weight:g} (a distillation weight without a "
            f"distillation loss); remove method.kd to train plain KD with that weight, set method.kd to "
            f"kd, unkd or lgkd, or set method.loss_kd: 0 to train without distillation")
    if given.get("kd") is None and values["kd"] == "none":
        values["kd"] = "kd"

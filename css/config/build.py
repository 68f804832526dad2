"""Typed configuration: YAML files (with ``base:`` inheritance) and ``key.sub=value`` overrides,
validated into the dataclasses of css.config.schema and the modality's sections.

A config file is a YAML mapping whose sections mirror the dataclasses. ``base: other.yaml``
(a path relative to the file, or a list of paths) names files whose values this file overrides;
mappings merge key by key, everything else (lists included) is replaced. Command-line overrides
use dotted keys: ``train.lr=0.01 method.prev_kd=5 task.name=15-5``; the value is parsed as YAML.
Number keys also take scientific notation (``1e-3``, a string to YAML 1.1) and refuse NaN and
infinity (docs/config.md#numbers).

Every unknown key is an error that names the file and the closest valid key. The resolved config
(after inheritance, overrides and the method preset) is what a run folder records.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from css.config.checks import check_values
from css.config.files import apply_overrides, load_yaml_tree
from css.config.numbers import to_float, to_int
from css.config.protocols import PROTOCOLS
from css.config.schema import Config
from css.errors import ConfigError
from css.modality.registry import get_modality, modality_names

# Keys with a fixed set of values, for every modality; a modality adds those of its own sections
# (``Modality.config_choices``).
CHOICES: dict[str, tuple[str, ...]] = {
    "protocol": PROTOCOLS,
    "device": ("auto", "cpu", "cuda"),
    "train.precision": ("fp32", "fp16", "bf16"),
    "train.optimizer": ("sgd", "adam"),
    "train.schedule": ("poly", "step"),
    "method.classification": ("ce", "unce", "bce"),
    "method.kd": ("kd", "unkd", "lgkd", "soft", "none"),
    "method.kd_resolution": ("small", "full"),
    "method.regularizer": ("ewc", "rw", "pi", "none"),
    "method.pod": ("local", "none"),
    "method.pseudo": ("entropy", "none"),
}


# ------------------------------------------------------------------------------------------------
# Validation into dataclasses


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, source: str = "") -> Any:
    """Check ``value`` against the annotation ``tp``; allow int -> float, list -> tuple and numbers
    in scientific notation (docs/config.md#numbers)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}{where}: invalid value {value!r}")
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}{where}: expected true or false, got {value!r}")
    if tp is int:  # also 1e3 (YAML reads it as a string), never NaN/inf: docs/config.md#numbers
        return to_int(value, f"{source}{where}")
    if tp is float:  # also 1e-3 (a string to YAML), never NaN/inf: docs/config.md#numbers
        return to_float(value, f"{source}{where}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. task name 50 written without quotes
        raise ConfigError(f"{source}{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    raise ConfigError(f"{source}{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _other_modality(section: str, key: str, modality: str) -> str | None:
    """The modality whose ``section`` has ``key`` when this config's modality does not
    (the sections whose keys depend on the modality, docs/config.md#sections)."""
    for name in modality_names():
        sections = get_modality(name).config_sections
        if name != modality and key in {f.name for f in dataclasses.fields(sections[section])}:
            return name
    return None


def _build(cls: type, data: Any, where: str, source: str = "", modality: str | None = None) -> Any:
    prefix = f"{where}." if where else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    own = get_modality(modality) if modality is not None else None
    sections = own.config_sections if own is not None else {}
    own_choices = own.config_choices if own is not None else {}
    if cls is Config:
        hints.update(sections)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            other = _other_modality(where, str(key), modality) if modality and where in sections else None
            if other:
                article = "an" if other[0] in "aeiou" else "a"
                raise ConfigError(f"{source}config key '{prefix}{key}' is {article} {other}-only key and this config's "
                                  f"modality is {modality}; remove it (or set modality: {other})")
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}unknown config key '{prefix}{key}'{hint}")
        if cls is Config and key in sections:
            kwargs[key] = _build(hints[key], value, key, source, modality)
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
        choices = CHOICES.get(f"{prefix}{key}") or own_choices.get(f"{prefix}{key}")
        if choices and kwargs[key] is not None and kwargs[key] not in choices:
            raise ConfigError(f"{source}{prefix}{key}: {kwargs[key]!r} is not one of {', '.join(choices)}")
    if cls is Config:
        for key, section in sections.items():
            kwargs.setdefault(key, section())
    return cls(**kwargs)


def from_dict(data: dict[str, Any], *, source: str = "") -> Config:
    """Validate a plain mapping into a Config (``source`` prefixes error messages, e.g. the file).

    The ``modality`` key picks the data, model and train sections (docs/config.md#sections)."""
    prefix = f"{source}: " if source else ""
    modality = (data or {}).get("modality", "image") if isinstance(data, dict) else "image"
    if modality not in modality_names():
        raise ConfigError(f"{prefix}modality: {modality!r} is not one of {', '.join(modality_names())}")
    cfg = _build(Config, data, "", prefix, modality)
    check_values(cfg, source)
    get_modality(modality).check_config(cfg, prefix)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (with inheritance) and apply ``key.sub=value`` overrides."""
    data = load_yaml_tree(path) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    return from_dict(data, source=str(path) if path is not None else "overrides")


def save_config(cfg: Config, path: str | Path) -> None:
    from css.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

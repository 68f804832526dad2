"""Config identity: which keys make two configs the same run (docs/controller.md#config-identity).

Every step checkpoint (``step{t}/model.pt``) and resume state (``step{t}/resume.pt``) records the
resolved config it was trained with (``config``), its hash (``config_hash``) and the hash of the
config of the step it was handed over from (``parent_config_hash``, None at step 0). Resuming or
skipping a step compares the current config with what the checkpoints record, so a deleted, empty
or truncated ``config.yaml`` can neither hide a change nor invent one.

Keys that do not change results (:data:`FREE_KEYS`) may change on resume. ``--redo-from T``
(docs/controller.md#redo-from) may change the training keys (:func:`redo_blockers`) and keeps the
finished steps before T: the checkpoints of the redone steps then record, through
``parent_config_hash``, that they were trained on top of those steps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

# Keys that do not change results: the folder is the name, the data may move (docs/controller.md#config-identity).
FREE_KEYS = frozenset({"name", "output_dir", "device", "data.num_workers", "data.cache_dir", "data.root",
                       "train.log_interval", "train.skip_nonfinite", "data.full_coverage",
                       "train.dist_timeout"})
# train.skip_nonfinite is free: raising it is the fix a TrainingError suggests, and the resumed step
# continues from the epoch before the bad batch (docs/controller.md#non-finite-losses).
# data.full_coverage only adds an evaluation after each step; training is unchanged
# (docs/pointcloud-evaluation.md#full-coverage).
# Keys --redo-from may change for the redone steps (the training recipe); the task, the data, the
# model and the protocol must stay those of the kept steps (docs/controller.md#redo-from).
REDO_PREFIXES = ("train.", "method.")
REDO_KEYS = frozenset({"seed"})
ABSENT = "(absent)"


def dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The dotted keys of a resolved config that change results."""
    return {k: v for k, v in dotted(config).items() if k not in FREE_KEYS}


def config_hash(config: dict[str, Any] | None) -> str | None:
    """A short stable hash of :func:`identity` (None for None)."""
    if config is None:
        return None
    text = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changes(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, current value) of every result-changing key that differs. Keys the saved
    config lacks were added by a later css: they do not count (as before, docs/controller.md#config-identity)."""
    a, b = identity(saved), identity(now)
    return [(k, a[k], b.get(k, ABSENT)) for k in sorted(a) if a[k] != b.get(k, ABSENT)]


def format_changes(diff: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff[:limit])
    return shown + (f"; and {len(diff) - limit} more" if len(diff) > limit else "")


def change_list(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """``changes`` as 'key: old -> new' strings (what results.json records per step)."""
    return [] if saved is None else [f"{k}: {a!r} -> {b!r}" for k, a, b in changes(saved, now)]


def redo_blockers(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The changes --redo-from cannot make: everything outside the training recipe."""
    return [c for c in changes(saved, now) if not c[0].startswith(REDO_PREFIXES) and c[0] not in REDO_KEYS]


def read_config_yaml(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(config, None) for a readable config.yaml, else (None, what is wrong with it)."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path} is missing"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{path} is not valid YAML, truncated or corrupt? ({first})"
    if not isinstance(data, dict) or not data:
        return None, f"{path} is empty or not a mapping"
    return data, None


def with_free_keys(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with the values of :data:`FREE_KEYS` taken from ``now`` (where this run keeps its
    data, which device it uses): a step is re-evaluated with the config it was trained with."""
    import copy

    out = copy.deepcopy(saved)
    flat = dotted(now)
    for key in FREE_KEYS:
        if key in flat:
            *parents, leaf = key.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = flat[key]
    return out

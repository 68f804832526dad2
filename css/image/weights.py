"""Import weights into a css.image DeepLabV3: reference checkpoints, ImageNet backbones, our own.

Accepted files (decided by their top-level keys and then by their key names):
- reference LGKD/PLOP/MiB checkpoints: {"model_state": {"module.body.…", "module.head.…",
  "module.cls.i.…"}, "optimizer_state", …} (docs/protocol-2d-model.md#weights);
- the InPlaceABN ImageNet file, e.g. resnet101_iabn_sync.pth.tar: {"state_dict": {"module.mod1.…",
  …, "module.classifier.fc.*"}}, loaded into ``model.body`` with the classifier dropped
  (docs/protocol-2d-model.md#weights);
- our own checkpoints: {"model": plain state dict}.
A leading "module." (DDP wrapper) is stripped when every key carries it.

InPlaceABN scales by |gamma| + eps where css.nn.BatchNormAct (norm "bn") scales by gamma
(docs/protocol-2d-model.md#normalisation), and norm weights are converted when the file's kind and the
model's differ. The file's kind cannot be read off its keys (inplace_abn 1.1.0 saves
num_batches_tracked like torch batch norms do), so it comes from, in order: the ``source_norm``
argument; a "norm" entry of a css checkpoint; the format (reference and ImageNet files are
InPlaceABN, docs/protocol-2d-model.md#weights; a css checkpoint without "norm" is taken to match the
model, i.e. no conversion).
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from css.errors import CheckpointError

__all__ = ["LoadReport", "load_reference_weights", "ABN_EPS"]

logger = logging.getLogger(__name__)

ABN_EPS = 1e-5  # InPlaceABN's eps, added to |gamma| (docs/protocol-2d-model.md#normalisation)
# norm names (css model.norm values, plus the reference's "abn"/"std") -> scale convention
_ABN_SCALE = {"iabn_sync": True, "iabn": True, "abn": True, "bn": False, "std": False}
_TRACKED = "num_batches_tracked"
_SHOWN = 10  # keys listed per category in messages


@dataclass
class LoadReport:
    """Outcome of a weight import; key names are those of the whole model ("body.mod1.…")."""

    missing: list[str] = field(default_factory=list)
    """Model keys the file did not provide (num_batches_tracked never counts)."""
    unexpected: list[str] = field(default_factory=list)
    """File keys the model does not have (ignored)."""
    converted: list[str] = field(default_factory=list)
    """Norm weights converted between InPlaceABN's |gamma| + eps and plain gamma."""


def load_reference_weights(
    model: nn.Module,
    path_or_state: str | os.PathLike[str] | Mapping[str, Any],
    *,
    strict: bool = False,
    trusted: bool = True,
    source_norm: str | None = None,
) -> LoadReport:
    """Load a reference, ImageNet or css checkpoint (file path or already-loaded dict) into ``model``.

    ``model`` must have ``body`` (and, for full checkpoints, ``head`` and ``cls``) as built by
    css.image.models.build_model. With ``strict`` any missing or unexpected key is an error;
    otherwise they are logged and returned (e.g. the new step's head is missing when a step t-1
    checkpoint is loaded into the step-t model, docs/protocol-2d-model.md#step-hand-over). Shape mismatches
    are always errors.
    Files are read with ``torch.load(weights_only=True)``; if that refuses the file and ``trusted``,
    it is read again with full unpickling (which runs code from the file: trusted files only).
    ``source_norm`` ("iabn_sync", "iabn", "bn", ...) names the normalisation the file was trained
    with when the default (module docstring) is wrong, e.g. a reference run with ``--norm_act std``.
    """
    checkpoint, name = _read(path_or_state, trusted)
    state, kind, container = _extract_state(checkpoint, name)
    target, prefix = (model, "") if kind == "full" else (_body(model, name), "body.")
    model_state = target.state_dict()

    file_is_abn = _file_uses_abn_scale(checkpoint, container, source_norm, name)
    state, converted = _convert_norm_weights(target, state, name, file_is_abn)
    _check_shapes(model_state, state, name, prefix)
    missing = [prefix + k for k in model_state if k not in state and not k.endswith(_TRACKED)]
    unexpected = [prefix + k for k in state if k not in model_state and not k.endswith(_TRACKED)]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{name} does not fit the model exactly (strict loading): "
            f"missing keys {_shorten(missing)}, unexpected keys {_shorten(unexpected)}. "
            "Check model.backbone and the task/step, or load non-strictly."
        )
    target.load_state_dict({k: v for k, v in state.items() if k in model_state}, strict=False)

    report = LoadReport(missing, unexpected, [prefix + k for k in converted])
    logger.info(
        "loaded %s into the %s: %d tensors, %d missing, %d unexpected, %d norm weights converted",
        name, "model" if kind == "full" else "backbone", len(state) - len(unexpected), len(missing),
        len(unexpected), len(converted),
    )
    if missing:
        logger.warning("keys missing from %s (left as initialised): %s", name, _shorten(missing))
    if unexpected:
        logger.warning("unexpected keys in %s (ignored): %s", name, _shorten(unexpected))
    return report


def _read(path_or_state: str | os.PathLike[str] | Mapping[str, Any], trusted: bool) -> tuple[Any, str]:
    """Return (loaded object, a name for messages)."""
    if isinstance(path_or_state, Mapping):
        return path_or_state, "the given state dict"
    path = os.fspath(path_or_state)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"checkpoint file {path!r} does not exist; check the path (model.pretrained / step_ckpt)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True), path
    except pickle.UnpicklingError as exc:
        # also what a corrupt file raises ("invalid load key"): only the full load below tells them apart
        if not trusted:
            raise CheckpointError(
                f"{path} holds Python objects that weights_only loading refuses ({exc}). "
                "Load it with trusted=True only if you trust where the file comes from."
            ) from exc
    except Exception as exc:
        raise CheckpointError(_unreadable(path, exc)) from exc
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(_unreadable(path, exc)) from exc
    logger.warning("%s needs full unpickling (weights_only refused it); loaded it as trusted", path)
    return checkpoint, path


def _unreadable(path: str, exc: Exception) -> str:
    """The message of a file torch cannot load: which file, what it should be, and the fix."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (f"cannot read checkpoint {path} ({reason}): it is truncated or corrupt, or not a PyTorch file. "
            "Expected a css step checkpoint (RUN/stepT/model.pt), an LGKD/PLOP/MiB checkpoint or the InPlaceABN "
            "ImageNet backbone (docs/protocol-2d-model.md#weights). Fix: download the file again (an interrupted "
            "download or copy leaves it truncated), or point the option that names it (--init-step0, "
            "model.pretrained) at the right file")


def _extract_state(checkpoint: Any, name: str) -> tuple[dict[str, Tensor], str, str]:
    """Find the state dict in a checkpoint.

    Returns it ("module." stripped), "full" or "body" (what it holds) and its top-level key.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{name} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    # reference, css, ImageNet (docs/protocol-2d-model.md#weights)
    for container in ("model_state", "model", "state_dict"):
        if isinstance(checkpoint.get(container), Mapping):
            state = dict(checkpoint[container])
            break
    else:
        raise CheckpointError(
            f"{name} is not a known checkpoint format: top-level keys "
            f"{_shorten(list(map(str, checkpoint)))}. "
            "Expected 'model_state' (LGKD/PLOP/MiB checkpoint), 'state_dict' (InPlaceABN ImageNet "
            "backbone) or 'model' (css checkpoint)."
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{name}: '{container}' is not a state dict (non-tensor entries {_shorten(list(map(str, bad)))})"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if any(k.startswith("body.") for k in state):
        return state, "full", container
    if any(k.startswith("mod1.") for k in state):
        # ImageNet backbone: the classifier has no counterpart in a segmentation body
        # (docs/protocol-2d-model.md#weights).
        return {k: v for k, v in state.items() if not k.startswith("classifier.")}, "body", container
    raise CheckpointError(
        f"{name}: '{container}' has neither whole-model keys (body.…, head.…, cls.…) nor backbone keys "
        f"(mod1.…, mod2.…); first keys: {_shorten(list(state))}. Is it a checkpoint of this model?"
    )


def _body(model: nn.Module, name: str) -> nn.Module:
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise CheckpointError(f"{name} holds backbone weights, but the model has no 'body' to load them into")
    return body


def _norm_modules(module: nn.Module) -> dict[str, nn.Module]:
    """Map the name of every normalisation module to the module, for weight conversion.

    InPlaceABN classes are recognised only if inplace_abn is already imported: a model holding
    them has imported it.
    """
    abn_module = sys.modules.get("inplace_abn")
    norm_types: tuple[type, ...] = (_BatchNorm,) + ((abn_module.ABN,) if abn_module is not None else ())
    return {name: m for name, m in module.named_modules() if isinstance(m, norm_types)}


def _file_uses_abn_scale(
    checkpoint: Mapping[str, Any], container: str, source_norm: str | None, name: str
) -> bool | None:
    """Whether the file's norm weights follow InPlaceABN's |gamma| + eps; None: same as the model."""
    if source_norm is None and container == "model":
        source_norm = checkpoint.get("norm")
        if source_norm is None:
            return None
    if source_norm is None:
        return True  # reference and ImageNet files come from InPlaceABN (docs/protocol-2d-model.md#weights)
    if source_norm not in _ABN_SCALE:
        raise CheckpointError(
            f"{name}: unknown source normalisation {source_norm!r}; valid: {', '.join(_ABN_SCALE)}"
        )
    return _ABN_SCALE[source_norm]


def _convert_norm_weights(
    target: nn.Module, state: dict[str, Tensor], name: str, file_is_abn: bool | None
) -> tuple[dict[str, Tensor], list[str]]:
    """Convert norm scales between InPlaceABN (|gamma| + eps) and torch batch norm (gamma).

    ABN -> BN: gamma = |gamma_abn| + eps (exact). BN -> ABN: gamma_abn = gamma - eps, exact only
    for gamma >= eps; smaller values are an error. ``file_is_abn`` None means no conversion.
    """
    if file_is_abn is None:
        return state, []
    state = dict(state)
    converted = []
    for prefix, module in _norm_modules(target).items():
        key = f"{prefix}.weight"
        if key not in state:
            continue
        model_is_abn = not isinstance(module, _BatchNorm)
        if file_is_abn and not model_is_abn:
            state[key] = state[key].abs() + ABN_EPS
        elif model_is_abn and not file_is_abn:
            eps = getattr(module, "eps", ABN_EPS)
            if bool((state[key] < eps).any()):
                raise CheckpointError(
                    f"{name}: {key} comes from a torch batch norm and has entries below {eps}, which "
                    "InPlaceABN (scale |gamma| + eps) cannot represent. Load it into a model built with "
                    "model.norm: bn."
                )
            state[key] = state[key] - eps
        else:
            continue
        converted.append(key)
    return state, converted


def _check_shapes(
    model_state: Mapping[str, Tensor], state: Mapping[str, Tensor], name: str, prefix: str
) -> None:
    """Raise a CheckpointError listing every key whose shapes differ, with the likely cause."""
    mismatches = [
        (k, tuple(state[k].shape), tuple(model_state[k].shape))
        for k in state
        if k in model_state and state[k].shape != model_state[k].shape
    ]
    if not mismatches:
        return
    lines = "; ".join(f"{prefix}{k}: checkpoint {a} vs model {b}" for k, a, b in mismatches[:_SHOWN])
    if all((prefix + k).startswith("cls.") for k, _, _ in mismatches):
        cause = ("the classifier heads differ: the checkpoint was trained for another task or step "
                 "(number of classes per step); check the task name and the step")
    else:
        cause = ("the networks differ: check model.backbone, model.base_channels and the head width "
                 "against the checkpoint's")
    more = f" (and {len(mismatches) - _SHOWN} more)" if len(mismatches) > _SHOWN else ""
    raise CheckpointError(
        f"{name} does not fit the model, shape mismatch: {lines}{more}. Likely cause: {cause}."
    )


def _shorten(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN]) or "none"
    return shown + (f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")

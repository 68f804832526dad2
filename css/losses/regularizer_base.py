"""The parts every parameter regulariser shares (css/losses/regularizers.py has EWC, PI and RW):
the penalty against the previous step's parameters, loading that state, the running accumulators
(EMA Fisher, path integral) and their snapshots for an exact mid-step resume
(docs/protocol-2d-losses.md#regularisers, docs/controller.md#recovery).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from css.errors import CheckpointError

ParamFilter = Callable[[str], bool]


def _trainable(model: nn.Module, param_filter: ParamFilter | None) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs of ``model`` that require grad and pass ``param_filter``."""
    for name, param in model.named_parameters():
        if param.requires_grad and (param_filter is None or param_filter(name)):
            yield name, param


def _minmax_normalise(tensors: Mapping[str, Tensor], *, per_tensor: bool = False) -> dict[str, Tensor]:
    """Min-max normalise all entries of all tensors jointly to [0, 1] (one global min and max), or,
    with ``per_tensor``, each tensor with its own min and max (the 3DPC-CISS EWC*,
    docs/pointcloud-baselines.md#ewc).

    Without spread (every entry equal) the relative importance is undefined: every weight then
    becomes 1 if the common value is positive (all equally important) and 0 otherwise.
    """
    if per_tensor:
        return {name: _minmax_normalise({name: t})[name] for name, t in tensors.items()}
    nonempty = [t for t in tensors.values() if t.numel() > 0]
    if not nonempty:
        return dict(tensors)
    low = torch.stack([t.min().float().cpu() for t in nonempty]).min().item()
    high = torch.stack([t.max().float().cpu() for t in nonempty]).max().item()
    if high > low:
        return {name: (t - low) / (high - low) for name, t in tensors.items()}
    fill = 1.0 if high > 0 else 0.0
    return {name: torch.full_like(t, fill) for name, t in tensors.items()}


# ``normalize=PER_TENSOR``: min-max normalise each parameter tensor on its own.
PER_TENSOR = "per_tensor"


class Regularizer:
    """Shared part: the old state, the quadratic penalty and state loading.

    Subclasses define ``kind`` (stored in the state to catch mix-ups), ``state_keys`` (the
    importance entries of their state besides 'params'), ``update``, ``state_dict`` and
    ``_importance`` (how the stored state becomes the penalty weights).
    """

    kind = ""
    state_keys: tuple[str, ...] = ()
    # Attributes that accumulate during a step: what an exact mid-step resume must restore. The
    # penalty itself (theta_old, importance) comes from the previous step's state, not from here.
    progress_keys: tuple[str, ...] = ()

    def __init__(
        self,
        model: nn.Module,
        *,
        normalize: bool | str,
        param_filter: ParamFilter | None,
        old_state: Mapping | None,
    ) -> None:
        if normalize not in (True, False, PER_TENSOR):
            raise ValueError(f"normalize must be True, False or {PER_TENSOR!r}, got {normalize!r}")
        self.model = model
        self.normalize = normalize
        self.param_filter = param_filter
        self._weights: dict[str, Tensor] = {}
        self._anchors: dict[str, Tensor] = {}
        if old_state is not None:
            self.load_state_dict(old_state)

    def _params(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        return _trainable(model, self.param_filter)

    def _current(self) -> dict[str, Tensor]:
        """Detached copies of the current trainable parameters of the regularised model."""
        return {name: p.detach().clone() for name, p in self._params(self.model)}

    def _maybe_normalise(self, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if not self.normalize:
            return dict(tensors)
        return _minmax_normalise(tensors, per_tensor=self.normalize == PER_TENSOR)

    def _importance(self, state: Mapping) -> dict[str, Tensor]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping) -> None:
        """Take the previous step's state (from :meth:`state_dict`) as theta_old and importance.

        Raises CheckpointError if the state comes from another regulariser or lacks entries.
        Entries whose parameter no longer exists or changed shape are dropped; the others are
        moved to their parameter's device.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"the {self.kind.upper()} regulariser state must be a dict, got {type(state).__name__}; "
                "pass the 'regularizer' entry saved with the previous step's checkpoint"
            )
        found_kind = state.get("kind")
        missing = [key for key in ("params", *self.state_keys) if key not in state]
        if found_kind != self.kind or missing:
            raise CheckpointError(
                f"the previous step's regulariser state does not fit {self.kind.upper()}: kind "
                f"{found_kind!r}, missing keys {missing} (found {sorted(state)}). Continue from a "
                f"checkpoint trained with the same regulariser ({self.kind.upper()}), or start the "
                "run again from step 0 with this method."
            )
        weights = self._importance(state)
        current = dict(self._params(self.model))
        self._weights, self._anchors = {}, {}
        for name, anchor in state["params"].items():
            param = current.get(name)
            if param is None or name not in weights or param.shape != anchor.shape:
                continue
            self._anchors[name] = anchor.detach().to(device=param.device, dtype=torch.float32)
            self._weights[name] = weights[name].detach().to(device=param.device, dtype=torch.float32)

    def progress_state(self) -> dict:
        """This step's accumulators so far (copies), for :meth:`load_progress_state` after an
        interruption. Unlike :meth:`state_dict` (the state the next step needs) it does not
        touch the penalty of the current step."""
        return {"kind": self.kind, **{key: _snapshot(getattr(self, key)) for key in self.progress_keys}}

    def load_progress_state(self, state: Mapping) -> None:
        """Restore :meth:`progress_state` taken in the same step, on the parameters' device."""
        is_map = isinstance(state, Mapping)
        missing = [key for key in self.progress_keys if key not in state] if is_map else list(self.progress_keys)
        if not is_map or state.get("kind") != self.kind or missing:
            raise CheckpointError(
                f"the resume file's {self.kind.upper()} regulariser progress does not fit (kind "
                f"{state.get('kind') if is_map else None!r}, missing {missing}); "
                "delete the step's resume.pt to restart the step"
            )
        device = next((p.device for _, p in self._params(self.model)), torch.device("cpu"))
        for key in self.progress_keys:
            current = getattr(self, key)
            value = _restore(state[key], device)
            if isinstance(current, PathIntegral):
                current.load(value)
            else:
                setattr(self, key, value)

    def penalty(self, model: nn.Module) -> Tensor:
        """sum over parameters of w * (theta - theta_old)**2, a float32 scalar
        (docs/protocol-2d-losses.md#regularisers).

        0 without an old state (step 0). Differentiable with respect to the parameters.
        """
        total: Tensor | None = None
        device = torch.device("cpu")
        for name, param in self._params(model):
            device = param.device
            weight = self._weights.get(name)
            if weight is None:
                continue
            term = (weight * (param.float() - self._anchors[name]).pow(2)).sum()
            total = term if total is None else total + term
        return total if total is not None else torch.zeros((), device=device)


def ema_fisher(fisher: dict[str, Tensor], params: Iterator[tuple[str, nn.Parameter]], alpha: float) -> None:
    """F <- alpha * g**2 + (1 - alpha) * F in place for every parameter with a gradient."""
    for name, param in params:
        if param.grad is None:
            continue
        grad = param.grad.detach().float()
        fisher[name].mul_(1 - alpha).addcmul_(grad, grad, value=alpha)


class PathIntegral:
    """Running sum of -g * (change of theta) over the iterations of a step (PI, RW).

    :meth:`update` is called after the backward pass, before the optimiser moves the
    parameters. The gradient of iteration i is therefore paired with the move from theta_i to
    theta_(i+1), which is only known at the next call (or at :meth:`pending`, for the move made
    by the last optimiser step).
    """

    def __init__(self, params: Iterator[tuple[str, nn.Parameter]]) -> None:
        self.omega = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params}
        self._theta: dict[str, Tensor] = {}
        self._grad: dict[str, Tensor] = {}

    def update(self, params: Iterator[tuple[str, nn.Parameter]]) -> None:
        """Add the move since the previous call times -(previous gradient); remember this one."""
        for name, param in params:
            if param.grad is None:
                continue
            theta = param.detach().float()
            if name in self._grad:
                self.omega[name].sub_(self._grad[name] * (theta - self._theta[name]))
            self._theta[name] = theta.clone()
            self._grad[name] = param.grad.detach().float().clone()

    def pending(self, name: str, theta: Tensor) -> Tensor:
        """-g * (theta - theta at the last call) for the move not yet added (0 if none)."""
        if name not in self._grad:
            return torch.zeros_like(theta)
        return -self._grad[name] * (theta - self._theta[name])

    def reset(self) -> None:
        """Zero the running sum (keeps the last gradient and position to pair the next move)."""
        for omega in self.omega.values():
            omega.zero_()

    def state(self) -> dict[str, dict[str, Tensor]]:
        return {"omega": self.omega, "theta": self._theta, "grad": self._grad}

    def load(self, state: Mapping) -> None:
        self.omega, self._theta, self._grad = dict(state["omega"]), dict(state["theta"]), dict(state["grad"])


def _snapshot(value: Any) -> Any:
    """A deep copy of an accumulator: tensors cloned, dicts and path integrals walked."""
    if isinstance(value, PathIntegral):
        value = value.state()
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {key: _snapshot(item) for key, item in value.items()}
    return value


def _restore(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {key: _restore(item, device) for key, item in value.items()}
    return value

"""Parameter regularisers EWC, RW and PI (docs/protocol-2d-losses.md#regularisers; MiB lineage).

Each regulariser penalises moving a parameter away from its value at the end of the previous
step, weighted by an importance estimated during the previous step:

    penalty = sum over parameters of  w * (theta - theta_old) ** 2

- EWC: w is the Fisher information, estimated as an exponential moving average of squared
  gradients, F <- alpha * g**2 + (1 - alpha) * F, updated every iteration.
- PI (path integral, "synaptic intelligence"): w is the path-integral score
  omega / (delta**2 + epsilon), omega = sum over iterations of -g * (change of theta), delta the
  parameter's total change over the step.
- RW (Riemannian walk): w = Fisher (as EWC) + a score accumulated over windows of ``iterations``
  iterations, each window adding omega_window / (0.5 * F * delta_window**2 + epsilon).

With ``normalize=True`` (the reference default) each importance is min-max normalised to [0, 1]
before use; the reference's set is not pinned down, so we follow MiB and take one global min and
max over every entry of every parameter (RW normalises its Fisher and its score separately).
``normalize="per_tensor"`` normalises each parameter tensor with its own min and max, as the
3DPC-CISS EWC* does (docs/pointcloud-baselines.md#ewc).

Life cycle, one regulariser per step (docs/protocol-2d.md#loss-composition, docs/protocol-2d-losses.md#regularisers):
1. ``reg = build_regularizer(name, model, old_state=previous_state)`` right before the step's
   first iteration (after the new classifier is initialised). At step 0 ``old_state`` is None
   and the penalty is 0.
2. Every iteration, after the backward pass: ``reg.update(model)`` reads the gradients. They
   must be unscaled (call ``GradScaler.unscale_`` first) and finite (skip overflowed steps).
   Then ``loss = importance * reg.penalty(model)`` is added and back-propagated.
3. After the last iteration: ``reg.state_dict()`` is stored with the checkpoint
   (``torch.save``-able) and passed as ``old_state`` to the next step. A step 0 imported with
   ``--init-step0`` has trained elsewhere, so this state only exists when the imported file is a css
   checkpoint of the same regulariser; the controller refuses any other import rather than train
   step 1 without its penalty (docs/faults.md#run-folder-and-command-line).

Pass the unwrapped module (not a DistributedDataParallel wrapper) so that parameter names match
across steps. Only parameters that require grad (and pass ``param_filter``) take part. Parameters
absent from the old state (e.g. the new step's classifier head) or whose shape changed since are
skipped in the penalty. The running estimates start afresh at each step; the state handed to the
next step is the one computed over this step only, as in the reference.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

# The shared machinery (the base class, EMA Fisher, path integrals) is in css/losses/regularizer_base.py.
from css.losses.regularizer_base import ParamFilter, ema_fisher, PathIntegral, Regularizer

__all__ = ["EWC", "RW", "PI", "build_regularizer", "REGULARIZERS"]


class EWC(Regularizer):
    """Elastic weight consolidation with an EMA Fisher (docs/protocol-2d-losses.md#regularisers).

    State for the next step: {'kind': 'ewc', 'fisher': F, 'params': theta at the end of the
    step}. The penalty weight is F_old, min-max normalised unless ``normalize=False``.
    """

    kind = "ewc"
    state_keys = ("fisher",)
    progress_keys = ("fisher",)

    def __init__(
        self,
        model: nn.Module,
        *,
        alpha: float = 0.9,
        normalize: bool | str = True,
        param_filter: ParamFilter | None = None,
        old_state: Mapping | None = None,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        super().__init__(model, normalize=normalize, param_filter=param_filter, old_state=old_state)
        self.alpha = alpha
        self.fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in self._params(model)}

    def update(self, model: nn.Module) -> None:
        """F <- alpha * g**2 + (1 - alpha) * F from the current (unscaled) gradients."""
        with torch.no_grad():
            ema_fisher(self.fisher, self._params(model), self.alpha)

    def state_dict(self) -> dict:
        """The state the next step needs (see the class docstring); tensors are copies."""
        return {
            "kind": self.kind,
            "fisher": {name: f.clone() for name, f in self.fisher.items()},
            "params": self._current(),
        }

    def _importance(self, state: Mapping) -> dict[str, Tensor]:
        return self._maybe_normalise(state["fisher"])


class PI(Regularizer):
    """Path-integral regulariser, "synaptic intelligence" (docs/protocol-2d-losses.md#regularisers: score
    delta / dtheta**2).

    During the step omega accumulates -g * (change of theta) per iteration. At the end the
    score is max(omega, 0) / ((theta_end - theta_start)**2 + epsilon); theta_start is the
    parameters' value when the regulariser is built. The clamp at 0 keeps the penalty convex
    (a negative weight would reward drifting away); epsilon damps parameters that barely moved.
    State for the next step: {'kind': 'pi', 'score': ..., 'params': theta_end}.
    """

    kind = "pi"
    state_keys = ("score",)
    progress_keys = ("_start", "_path")

    def __init__(
        self,
        model: nn.Module,
        *,
        epsilon: float = 1e-3,
        normalize: bool | str = True,
        param_filter: ParamFilter | None = None,
        old_state: Mapping | None = None,
    ) -> None:
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        super().__init__(model, normalize=normalize, param_filter=param_filter, old_state=old_state)
        self.epsilon = epsilon
        self._start = self._current()
        self._path = PathIntegral(self._params(model))

    def update(self, model: nn.Module) -> None:
        """Accumulate the path integral with the current gradients."""
        with torch.no_grad():
            self._path.update(self._params(model))

    def state_dict(self) -> dict:
        """The state the next step needs (see the class docstring); tensors are copies."""
        theta = self._current()
        score = {}
        for name, end in theta.items():
            omega = self._path.omega[name] + self._path.pending(name, end.float())
            delta = end.float() - self._start[name].float()
            score[name] = omega.clamp(min=0) / (delta.pow(2) + self.epsilon)
        return {"kind": self.kind, "score": score, "params": theta}

    def _importance(self, state: Mapping) -> dict[str, Tensor]:
        return self._maybe_normalise(state["score"])


class RW(Regularizer):
    """Riemannian walk: EMA Fisher plus a windowed path-integral score (docs/protocol-2d-losses.md#regularisers).

    The Fisher is updated every iteration as in EWC. The path integral omega is summed over
    windows of ``iterations`` iterations; closing a window adds
    omega_window / (0.5 * F * delta_window**2 + epsilon) to the score, delta_window being the
    parameters' change over the window. The last, possibly partial, window is closed by
    :meth:`state_dict`. Stored score = max(score, 0) (kept convex, as for PI). Penalty weight
    = normalised F_old + normalised score_old (each min-max normalised on its own).
    State for the next step: {'kind': 'rw', 'fisher': F, 'score': s, 'params': theta_end}.
    """

    kind = "rw"
    state_keys = ("fisher", "score")
    progress_keys = ("fisher", "score", "_window_start", "_path", "_count")

    def __init__(
        self,
        model: nn.Module,
        *,
        alpha: float = 0.9,
        iterations: int = 10,
        epsilon: float = 1e-3,
        normalize: bool | str = True,
        param_filter: ParamFilter | None = None,
        old_state: Mapping | None = None,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        super().__init__(model, normalize=normalize, param_filter=param_filter, old_state=old_state)
        self.alpha = alpha
        self.iterations = iterations
        self.epsilon = epsilon
        self.fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in self._params(model)}
        self.score = {name: torch.zeros_like(f) for name, f in self.fisher.items()}
        self._window_start = {name: t.float() for name, t in self._current().items()}
        self._path = PathIntegral(self._params(model))
        self._count = 0

    def _window_score(self, name: str, omega: Tensor, theta: Tensor) -> Tensor:
        delta = theta - self._window_start[name]
        return omega / (0.5 * self.fisher[name] * delta.pow(2) + self.epsilon)

    def update(self, model: nn.Module) -> None:
        """Update the Fisher and the path integral; close a window every ``iterations`` calls."""
        with torch.no_grad():
            ema_fisher(self.fisher, self._params(model), self.alpha)
            self._path.update(self._params(model))
            self._count += 1
            if self._count % self.iterations:
                return
            for name, param in self._params(model):
                theta = param.detach().float()
                self.score[name].add_(self._window_score(name, self._path.omega[name], theta))
                self._window_start[name] = theta.clone()
            self._path.reset()

    def state_dict(self) -> dict:
        """The state the next step needs (see the class docstring); tensors are copies."""
        theta = self._current()
        score = {}
        for name, end in theta.items():
            omega = self._path.omega[name] + self._path.pending(name, end.float())
            score[name] = (self.score[name] + self._window_score(name, omega, end.float())).clamp(min=0)
        return {
            "kind": self.kind,
            "fisher": {name: f.clone() for name, f in self.fisher.items()},
            "score": score,
            "params": theta,
        }

    def _importance(self, state: Mapping) -> dict[str, Tensor]:
        fisher = self._maybe_normalise(state["fisher"])
        score = self._maybe_normalise(state["score"])
        return {name: fisher[name] + score[name] for name in fisher if name in score}


REGULARIZERS: dict[str, type[Regularizer]] = {"ewc": EWC, "rw": RW, "pi": PI}


def build_regularizer(name: str | None, model: nn.Module, **kwargs) -> EWC | RW | PI | None:
    """The regulariser called ``name`` ('ewc', 'rw', 'pi', case-insensitive) for ``model``.

    ``None`` or 'none' gives None (no regulariser). ``kwargs`` go to the class (alpha,
    normalize, epsilon, iterations, param_filter, old_state). Raises ValueError naming the valid
    choices for an unknown name.
    """
    if name is None or name.lower() == "none":
        return None
    cls = REGULARIZERS.get(name.lower())
    if cls is None:
        raise ValueError(
            f"unknown regularizer {name!r}; valid choices: {', '.join(REGULARIZERS)} or none"
        )
    return cls(model, **kwargs)

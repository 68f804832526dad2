"""Domain-incremental tasks: every step brings new domains (Cityscapes cities), not new classes
(docs/tasks.md#domain-steps).

A ``DomainTask`` has the members of ``css.tasks.task.Task`` the rest of ``css`` calls, with their
domain meaning:

- ``steps`` list domain ids, step 0 first; ``current_labels``, ``old_labels``, ``seen_labels`` and
  ``future_labels`` are domain ids too, and ``select`` picks items by domain: the ``presence``
  matrix a dataset gives it says which domain each item belongs to (one True per row);
- the model keeps one head of every class at every step (``classes_per_step`` = [C]); C_old and
  the number of new classes are C at every step > 0, as in the published code, so a distillation
  covers every class and POD's sqrt(C_cur / n_t) factor is 1;
- labels are the same at every step and in both splits: class c is channel c, ``ignore_index``
  stays ignored; there is no background class.

Which items of the selected domains a step trains and tests on is the 80 / 20 cut of a seeded
shuffle (docs/tasks.md#domain-steps): under ``per_domain_cut=False`` (the published code, protocol
``reference``) the train set of step t is the first 80 % of a shuffle of step t's domains and the
test set the last 20 % of a new shuffle over every seen domain, so from step 1 on it holds images
an earlier step trained on; ``per_domain_cut=True`` (``fixed``) cuts each domain once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from css.errors import TaskError
from css.tasks.task import SPLITS, is_int, normalise_steps

TRAIN_SHARE = 0.8  # the published cut: int(0.8 * n) train items, the rest test
SHUFFLE_SEED = 1  # numpy RandomState(1), as published


def reference_cut(items: Sequence[int], split: str) -> list[int]:
    """The published 80 / 20 cut: ``items`` shuffled in place by ``RandomState(1)``, then the first
    ``int(0.8 * n)`` (train) or the rest (test), in shuffled order."""
    order = list(items)
    np.random.RandomState(SHUFFLE_SEED).shuffle(order)
    cut = int(TRAIN_SHARE * len(order))
    return order[:cut] if split == "train" else order[cut:]


@dataclass(frozen=True)
class DomainTask:
    """An ordered list of domain groups over a fixed set of classes (module docstring)."""

    dataset: str
    name: str
    steps: list[list[int]]
    class_names: tuple[str, ...]
    domain_names: tuple[str, ...]
    ignore_index: int = 255
    reference_name: str | None = None
    per_domain_cut: bool = False
    """Cut each domain 80 / 20 once (protocol fixed) instead of the published per-step shuffles."""

    adds = "domains"
    background = None  # no background class: channel 0 is the first class
    void_labels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        where = f"task {self.name!r} of dataset {self.dataset!r}"
        steps = normalise_steps(self.steps, where)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "domain_names", tuple(self.domain_names))
        if self.reference_name is None:
            object.__setattr__(self, "reference_name", self.name)
        first: dict[int, int] = {}
        for index, group in enumerate(steps):
            for domain in group:
                if not 0 <= domain < len(self.domain_names):
                    raise TaskError(f"{where}: step {index} lists domain {domain}, but the domains are "
                                    f"0..{len(self.domain_names) - 1} ({', '.join(self.domain_names)})")
                if domain in first:
                    raise TaskError(f"{where}: domain {domain} ({self.domain_names[domain]}) appears twice (steps "
                                    f"{first[domain]} and {index}); every domain must come in exactly one step")
                first[domain] = index

    # -- structure ---------------------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def _check_step(self, step: int) -> None:
        if not is_int(step) or not 0 <= step < self.num_steps:
            raise TaskError(f"step {step!r} is out of range for task {self.name!r} of dataset {self.dataset!r}, "
                            f"which has {self.num_steps} step(s): use a step in 0..{self.num_steps - 1}")

    def classes_per_step(self, step: int) -> list[int]:
        """One head of every class, at every step."""
        self._check_step(step)
        return [len(self.class_names)]

    def num_classes(self, step: int) -> int:
        return sum(self.classes_per_step(step))

    def num_old_classes(self, step: int) -> int:
        """C_old: every class from step 1 on (the old model has them all), 0 at step 0."""
        self._check_step(step)
        return 0 if step == 0 else len(self.class_names)

    def num_new_classes(self, step: int) -> int:
        """n_t as the published code counts it for domains: every class, at every step."""
        self._check_step(step)
        return len(self.class_names)

    def order(self, step: int) -> list[int]:
        self._check_step(step)
        return list(range(len(self.class_names)))

    def current_labels(self, step: int) -> list[int]:
        """The domains of ``step``."""
        self._check_step(step)
        return list(self.steps[step])

    def old_labels(self, step: int) -> list[int]:
        self._check_step(step)
        return [d for group in self.steps[:step] for d in group]

    def seen_labels(self, step: int) -> list[int]:
        self._check_step(step)
        return [d for group in self.steps[: step + 1] for d in group]

    def future_labels(self, step: int) -> list[int]:
        self._check_step(step)
        return [d for group in self.steps[step + 1:] for d in group]

    # -- names -------------------------------------------------------------------------------

    def class_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class_{label}"

    def channel_names(self, step: int) -> list[str]:
        return [self.class_name(label) for label in self.order(step)]

    def domain_name(self, domain: int) -> str:
        return self.domain_names[domain]

    def describe(self) -> str:
        lines = [f"{self.dataset} task {self.name!r}: {self.num_steps} step(s) of new domains over the same "
                 f"{len(self.class_names)} classes ({', '.join(self.class_names)})"]
        for index, group in enumerate(self.steps):
            names = ", ".join(f"{self.domain_name(d)} ({d})" for d in group)
            lines.append(f"  step {index}: {len(group)} domain{'s' if len(group) != 1 else ''}: {names}")
        return "\n".join(lines)

    # -- label maps and selection --------------------------------------------------------------

    def label_map(self, step: int, split: str, overlap: bool = True) -> np.ndarray:
        """Class c -> channel c in both splits at every step; everything else is ignored."""
        self._check_step(step)
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        table = np.full(256, self.ignore_index, dtype=np.int64)
        table[: len(self.class_names)] = np.arange(len(self.class_names))
        return table

    def remap(self, labels: Any, step: int, split: str, overlap: bool = True) -> Any:
        table = self.label_map(step, split, overlap)
        if isinstance(labels, torch.Tensor):
            index = labels.long().clamp(0, len(table) - 1)
            return torch.from_numpy(table).to(index.device)[index]
        array = np.asarray(labels)
        return table[np.clip(array, 0, len(table) - 1).reshape(-1)].reshape(array.shape)

    def select(self, presence: Any, step: int, split: str, overlap: bool = True) -> np.ndarray:
        """Indices of the items a step uses, in the order the step uses them (the published shuffle).

        ``presence[i, d]``: item i belongs to domain d (the dataset's domain matrix). train: the
        step's domains; test: every domain seen so far (module docstring for the cut)."""
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        presence = np.asarray(presence, dtype=bool)
        domain = np.where(presence.any(axis=1), presence.argmax(axis=1), -1)
        wanted = self.current_labels(step) if split == "train" else self.seen_labels(step)
        if not self.per_domain_cut:
            return np.asarray(reference_cut(np.flatnonzero(np.isin(domain, wanted)).tolist(), split), dtype=np.int64)
        kept: list[int] = []
        for d in wanted:
            kept += reference_cut(np.flatnonzero(domain == d).tolist(), split)
        return np.asarray(kept, dtype=np.int64)

"""Task registry and per-step label maps for class-incremental segmentation.

A *task* is an ordered list of class groups ("steps"); step 0 learns the base classes and step t
adds group t. Model channel c at step t is the c-th entry of ``Task.order(t)``; channel 0 is
background in every step and both modalities (docs/tasks.md#channels).

- VOC and ADE20k (docs/protocol-2d.md#tasks-and-datasets): the dataset label 0 is background and is
  the first entry of step 0.
- S3DIS and ScanNet (docs/tasks.md#tasks, docs/pointcloud-datasets.md#tasks): every dataset label is
  a semantic class, so the model gets a *synthetic* background channel 0 that no dataset label maps
  to in ``order`` (docs/tasks.md#channels:
  LGKD needs a background channel in every step). ScanNet's "unannotated" label 0 is always
  ignored.

The class names and reference tables live in css.task_tables, the label maps and the selection
rule in css.task_labels (docs/tasks.md#label-maps); their names stay importable from here.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from css.errors import TaskError
# Class names, tables and label maps live in their own modules; their names stay importable from here.
from css.task_labels import SPLITS, TaskLabelMaps  # noqa: F401
from css.task_tables import (ADE_CLASSES, S3DIS_CLASSES, SCANNET_CLASSES, VOC_CLASSES,  # noqa: F401
                             _DATASETS, _REGISTRY, _Dataset)


# --- validation helpers ---------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _normalise_steps(steps: Any, where: str) -> list[list[int]]:
    """Check that ``steps`` is a non-empty list of non-empty lists of ints; return a copy."""
    example = "e.g. [[0, 1, 2, 3], [4], [5]]"
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise TaskError(
            f"{where}: steps must be a non-empty list of class groups ({example}); got {steps!r}"
        )
    result = []
    for index, group in enumerate(steps):
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence):
            raise TaskError(
                f"{where}: step {index} must be a list of class ids, got {group!r}; "
                f"write each step as a list, {example}"
            )
        if len(group) == 0:
            raise TaskError(f"{where}: step {index} is empty; every step needs at least one class")
        bad = [label for label in group if not _is_int(label)]
        if bad:
            raise TaskError(
                f"{where}: step {index} holds non-integer class ids {bad!r}; "
                f"class ids are the integer labels of the dataset, {example}"
            )
        result.append([int(label) for label in group])
    return result


def _dataset_info(dataset: str) -> _Dataset:
    key = str(dataset).lower()
    if key not in _DATASETS:
        raise TaskError(
            f"unknown dataset {dataset!r}{_suggestion(str(dataset), list(_DATASETS))}; "
            f"valid datasets: {', '.join(_DATASETS)}"
        )
    return _DATASETS[key]


def _suggestion(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


# --- the Task -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task(TaskLabelMaps):
    """An ordered list of class groups and the label maps it implies at every step.

    ``steps`` hold dataset label ids, step 0 first. ``background`` is the dataset label that is
    model channel 0 (voc/ade: 0, first entry of step 0) or None when channel 0 is a synthetic
    background channel (s3dis/scannet). ``void_labels`` are dataset labels that are always ignored
    (ScanNet unannotated); ``train_ignore_as_background`` makes ignore_index pixels background at
    train time (ADE, docs/protocol-2d.md#label-maps-and-filters). ``name`` is the name the user asked for,
    ``reference_name`` the reference's name (for an alias such as VOC '15-1' that is '15-5s').
    """

    dataset: str
    name: str
    steps: list[list[int]]
    background: int | None = 0
    ignore_index: int = 255
    class_names: tuple[str, ...] | None = None
    reference_name: str | None = None
    void_labels: tuple[int, ...] = ()
    train_ignore_as_background: bool = False

    def __post_init__(self) -> None:
        where = f"task {self.name!r} of dataset {self.dataset!r}"
        steps = _normalise_steps(self.steps, where)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "void_labels", tuple(int(v) for v in self.void_labels))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.reference_name is None:
            object.__setattr__(self, "reference_name", self.name)
        self._check_labels(where)

    def _check_labels(self, where: str) -> None:
        """Structural checks valid for any dataset: unique ids, background first, no empty step."""
        first_step: dict[int, int] = {}
        for index, group in enumerate(self.steps):
            for label in group:
                if label < 0 or label == self.ignore_index or label in self.void_labels:
                    reserved = sorted({self.ignore_index, *self.void_labels})
                    raise TaskError(
                        f"{where}: step {index} lists label {label}, which is negative or reserved "
                        f"for ignored pixels/points ({reserved}); list only class ids"
                    )
                if label in first_step:
                    raise TaskError(
                        f"{where}: label {label} appears twice (steps {first_step[label]} and "
                        f"{index}); every class must be learnt in exactly one step"
                    )
                first_step[label] = index
        if self.background is not None and self.steps[0][0] != self.background:
            raise TaskError(
                f"{where}: step 0 must start with the background label {self.background} "
                f"(it becomes model channel 0), got step 0 = {self.steps[0]}; "
                f"add {self.background} as the first label of step 0, "
                f"e.g. [[{self.background}, 1, 2, ...], [16], ...]"
            )
        for index in range(self.num_steps):
            if not self.current_labels(index):
                raise TaskError(
                    f"{where}: step {index} holds only the background label; "
                    f"every step needs at least one foreground class"
                )

    # -- structure ---------------------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def _check_step(self, step: int) -> None:
        if not _is_int(step) or not 0 <= step < self.num_steps:
            raise TaskError(
                f"step {step!r} is out of range for task {self.name!r} of dataset "
                f"{self.dataset!r}, which has {self.num_steps} step(s): use a step in "
                f"0..{self.num_steps - 1}"
            )

    def classes_per_step(self, step: int) -> list[int]:
        """Channel count of each classifier head of model(step); docs/protocol-2d.md#task-tables.

        A synthetic background channel is counted in head 0.
        """
        self._check_step(step)
        counts = [len(group) for group in self.steps[: step + 1]]
        if self.background is None:
            counts[0] += 1
        return counts

    def num_classes(self, step: int) -> int:
        """C_cur: number of model channels at ``step``."""
        return sum(self.classes_per_step(step))

    def num_old_classes(self, step: int) -> int:
        """C_old: channels of the previous step's model (0 at step 0)."""
        counts = self.classes_per_step(step)
        return sum(counts[:-1])

    def order(self, step: int) -> list[int]:
        """Dataset label of every model channel 0..C_cur-1 (-1: synthetic background channel)."""
        self._check_step(step)
        labels = [label for group in self.steps[: step + 1] for label in group]
        return labels if self.background is not None else [-1] + labels

    def _foreground(self, groups: Iterable[list[int]]) -> list[int]:
        return [label for group in groups for label in group if label != self.background]

    def current_labels(self, step: int) -> list[int]:
        """Foreground dataset labels learnt at ``step``."""
        self._check_step(step)
        return self._foreground(self.steps[step: step + 1])

    def old_labels(self, step: int) -> list[int]:
        """Foreground dataset labels learnt before ``step``."""
        self._check_step(step)
        return self._foreground(self.steps[:step])

    def seen_labels(self, step: int) -> list[int]:
        """Foreground dataset labels learnt at or before ``step``."""
        self._check_step(step)
        return self._foreground(self.steps[: step + 1])

    def future_labels(self, step: int) -> list[int]:
        """Foreground dataset labels learnt after ``step``."""
        self._check_step(step)
        return self._foreground(self.steps[step + 1:])

    # -- names -------------------------------------------------------------------------------

    def class_name(self, label: int) -> str:
        """Name of a dataset label ("background" for the background label and channel -1)."""
        if label < 0 or label == self.background:
            return "background"
        if self.class_names is not None and label < len(self.class_names):
            return self.class_names[label]
        return f"class_{label}"

    def channel_names(self, step: int) -> list[str]:
        """Class name of every model channel at ``step`` ("background" for channel 0)."""
        return [self.class_name(label) for label in self.order(step)]

    def describe(self) -> str:
        """Multi-line human-readable summary: one line per step with class names and ids."""
        alias = ""
        if self.reference_name != self.name:
            alias = f" (reference name {self.reference_name!r})"
        last = self.num_steps - 1
        lines = [
            f"{self.dataset} task {self.name!r}{alias}: {self.num_steps} step(s), "
            f"{self.num_classes(last)} channels after the last step",
        ]
        if self.background is None:
            lines.append("  channel 0: synthetic background (no dataset label)")
        for index, group in enumerate(self.steps):
            names = ", ".join(f"{self.class_name(label)} ({label})" for label in group)
            count = len(group)
            lines.append(f"  step {index}: {count} class{'es' if count != 1 else ''}: {names}")
        return "\n".join(lines)


# --- public registry functions ----------------------------------------------------------------

def list_tasks(dataset: str) -> list[str]:
    """Names get_task accepts for ``dataset``: reference names first, then aliases."""
    _dataset_info(dataset)
    tables, aliases = _REGISTRY[dataset.lower()]
    return list(tables) + list(aliases)


def _make_task(dataset: str, name: str, steps: list[list[int]], reference_name: str) -> Task:
    info = _DATASETS[dataset]
    return Task(
        dataset=dataset,
        name=name,
        steps=steps,
        background=info.background,
        class_names=info.class_names,
        reference_name=reference_name,
        void_labels=info.void_labels,
        train_ignore_as_background=info.train_ignore_as_background,
    )


def get_task(dataset: str, name: str) -> Task:
    """The reference task ``name`` of ``dataset`` ('voc', 'ade', 's3dis', 'scannet')."""
    _dataset_info(dataset)
    key = dataset.lower()
    tables, aliases = _REGISTRY[key]
    reference = aliases.get(name, name)
    if reference not in tables:
        valid = list_tasks(key)
        raise TaskError(
            f"unknown task {name!r} for dataset {dataset!r}{_suggestion(str(name), valid)}; "
            f"valid tasks: {', '.join(valid)}. A custom task can be given as a list of class "
            f"groups, e.g. task: [[0, 1, 2], [3]]"
        )
    return _make_task(key, name, [list(group) for group in tables[reference]], reference)


def task_from_steps(dataset: str, steps: Sequence[Sequence[int]], name: str = "custom") -> Task:
    """A user-defined task: ``steps`` lists dataset label ids per step, step 0 first.

    Validates that ids are ints in the dataset's label range, that no id appears twice and, for
    voc/ade, that step 0 starts with the background label 0. Raises TaskError saying how to fix it.
    """
    info = _dataset_info(dataset)
    key = dataset.lower()
    where = f"custom task {name!r} of dataset {key!r}"
    normalised = _normalise_steps(steps, where)
    for index, group in enumerate(normalised):
        outside = [label for label in group if label not in info.labels]
        if outside:
            hint = ""
            if info.void_labels:
                hint = f" (label(s) {list(info.void_labels)} are unannotated and always ignored)"
            raise TaskError(
                f"{where}: step {index} holds class ids {outside} outside the {key} label range "
                f"{info.labels.start}..{info.labels.stop - 1}{hint}; use ids from that range"
            )
    return _make_task(key, name, normalised, name)


def load_task(dataset: str, spec: Any) -> Task:
    """A task from a config value: a reference task name or a list of class groups (YAML).

    A bare integer is read as a name, since YAML parses ``task: 50`` as the number 50.
    """
    if isinstance(spec, str):
        return get_task(dataset, spec)
    if _is_int(spec):
        return get_task(dataset, str(spec))
    if isinstance(spec, Sequence):
        return task_from_steps(dataset, spec)
    raise TaskError(
        f"task for dataset {dataset!r} must be a task name (see css.tasks.list_tasks) or a list "
        f"of class groups such as [[0, 1, 2], [3]]; got {spec!r} of type {type(spec).__name__}"
    )

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

Label maps (docs/tasks.md#label-maps): at train time only the current step's classes keep their
channel and everything else is background; at test time every seen class keeps its channel and
future classes are background. The channel of a label is its position in the task order, so
permuted orders (VOC 15-5s_b ... 15-5s_w) remap the original ids. The published tables and the
lookup by name are in css.tasks.registry.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from css.errors import DataError, TaskError

SPLITS = ("train", "test")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# --- validation helpers ---------------------------------------------------------------------

def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def normalise_steps(steps: Any, where: str) -> list[list[int]]:
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
        bad = [label for label in group if not is_int(label)]
        if bad:
            raise TaskError(
                f"{where}: step {index} holds non-integer class ids {bad!r}; "
                f"class ids are the integer labels of the dataset, {example}"
            )
        result.append([int(label) for label in group])
    return result


# --- the Task -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
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
    test_ignores_unseen: bool = False
    """Future classes are ignored at test instead of background (MiB's convention, docs/protocol.md#mib-conventions)."""
    test_ignores_background: bool = False
    """The background label is ignored at test (MiB on ADE, where label 0 is void)."""

    def __post_init__(self) -> None:
        where = f"task {self.name!r} of dataset {self.dataset!r}"
        steps = normalise_steps(self.steps, where)
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

    adds = "classes"
    """What a step adds: new classes (here) or new domains (css.tasks.domain.DomainTask)."""

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def _check_step(self, step: int) -> None:
        if not is_int(step) or not 0 <= step < self.num_steps:
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

    def num_new_classes(self, step: int) -> int:
        """n_t: channels of the step's own head (C_cur - C_old)."""
        return self.classes_per_step(step)[-1]

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

    # --- label maps and selection (docs/tasks.md#label-maps, docs/tasks.md#selection) -------------
    def _table_size(self) -> int:
        largest = max(label for group in self.steps for label in group)
        return max(256, largest + 1, self.ignore_index + 1, *(v + 1 for v in self.void_labels))

    def label_map(self, step: int, split: str, overlap: bool = True) -> np.ndarray:
        """Lookup table (int64, index = dataset label) from dataset labels to model labels.

        train: current labels -> their channel; every other label -> 0 (background); ignore_index
        stays ignored, except for datasets whose training has no ignore label (ADE,
        docs/protocol-2d.md#label-maps-and-filters).
        test: seen labels -> their channel; future labels -> 0 (docs/tasks.md#label-maps), or ignored
        with ``test_ignores_unseen``; the background label ignored with ``test_ignores_background``.
        Void labels (ScanNet unannotated) -> ignore_index in both splits (docs/tasks.md#label-maps).
        The channel of a label is its position in ``order(step)`` (docs/tasks.md#channels).
        ``overlap`` is accepted for symmetry with ``keep``: the masking is the same in the overlap
        and disjoint settings, which differ only in the images they keep (docs/tasks.md#steps).
        """
        _check_split(split)
        channel = {label: index for index, label in enumerate(self.order(step)) if label >= 0}
        mapped = self.current_labels(step) if split == "train" else self.seen_labels(step)
        table = np.zeros(self._table_size(), dtype=np.int64)  # unlisted labels -> background
        if split == "test" and self.test_ignores_unseen:
            table[:] = self.ignore_index
            if self.background is not None:
                table[self.background] = 0
        for label in mapped:
            table[label] = channel[label]
        if split == "test" and self.test_ignores_background and self.background is not None:
            table[self.background] = self.ignore_index
        ignore_is_bg = split == "train" and self.train_ignore_as_background
        table[self.ignore_index] = 0 if ignore_is_bg else self.ignore_index
        for label in self.void_labels:
            table[label] = self.ignore_index
        return table

    def remap(self, labels: Any, step: int, split: str, overlap: bool = True) -> Any:
        """Map dataset labels to model labels with ``label_map``.

        ``labels``: a numpy array or torch tensor of any shape and integer dtype (uint8 included).
        Returns int64 of the same kind (numpy array, or tensor on the same device).
        Raises DataError if a value lies outside the lookup table (negative or too large).
        """
        table = self.label_map(step, split, overlap)
        if isinstance(labels, torch.Tensor):
            dtype = labels.dtype
            if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
                raise TypeError(f"labels must have an integer dtype, got {dtype}")
            index = labels.long()
            if index.numel():
                low, high = (int(v) for v in torch.aminmax(index))
                self._check_range(low, high, len(table))
            return torch.from_numpy(table).to(index.device)[index]
        array = np.asarray(labels)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"labels must have an integer dtype, got {array.dtype}")
        if array.size:
            self._check_range(int(array.min()), int(array.max()), len(table))
        return table[array.reshape(-1)].reshape(array.shape)

    def _check_range(self, low: int, high: int, size: int) -> None:
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise DataError(
                f"label value {bad} cannot be mapped for {self.dataset!r} (task {self.name!r}): "
                f"labels must lie in 0..{size - 1}; check that the label files hold class ids "
                f"(not colours or instance ids)"
            )

    def select(self, presence: Any, step: int, split: str, overlap: bool = True) -> np.ndarray:
        """Indices (ascending) of the images/blocks of ``split`` that ``step`` uses.

        The one selection rule of both modalities (docs/tasks.md#selection). ``presence[i, l]``
        says whether image/block i shows dataset label l (column index = label; labels beyond the
        last column are absent). What counts as "shows" is the modality's business: any pixel for
        images, a share of the block for point clouds (css.tasks.index.presence_any and presence_share).

        train, overlap: it shows at least one current class (docs/tasks.md#selection).
        train, disjoint: additionally every label it shows is old, current, background, ignored
        or void, so no future class appears.
        test: it shows at least one seen foreground class (docs/tasks.md#selection).
        """
        _check_split(split)
        presence = np.asarray(presence, dtype=bool)
        if presence.ndim != 2:
            raise ValueError(f"presence must be a 2-D (items, labels) matrix, got shape {presence.shape}")
        num_labels = presence.shape[1]

        def columns(labels: Iterable[int]) -> list[int]:
            return [label for label in labels if 0 <= label < num_labels]

        wanted = self.current_labels(step) if split == "train" else self.seen_labels(step)
        keep = presence[:, columns(wanted)].any(axis=1)
        if split == "train" and not overlap:
            allowed = {*self.seen_labels(step), self.ignore_index, *self.void_labels}
            if self.background is not None:
                allowed.add(self.background)
            forbidden = [label for label in range(num_labels) if label not in allowed]
            keep &= ~presence[:, forbidden].any(axis=1)
        return np.flatnonzero(keep).astype(np.int64)

    def keep(self, present: Iterable[int], step: int, split: str, overlap: bool = True) -> bool:
        """Whether one image/block whose labels are ``present`` belongs to the step's split:
        ``select`` on a one-row presence matrix."""
        labels = sorted({int(label) for label in present})
        if any(label < 0 for label in labels):
            raise ValueError(f"labels must be non-negative, got {labels}")
        row = np.zeros((1, (labels[-1] + 1) if labels else 1), dtype=bool)
        row[0, labels] = True
        return bool(self.select(row, step, split, overlap).size)

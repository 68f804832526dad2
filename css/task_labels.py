"""The label maps and the selection rule of a task: what each step's labels become and which
images/blocks it uses (mixed into ``css.tasks.Task``).

Label maps (docs/tasks.md#label-maps): at train time only the current step's classes keep their
channel and everything else is background; at test time every seen class keeps its channel and
future classes are background. The channel of a label is its position in the task order, so
permuted orders (VOC 15-5s_b ... 15-5s_w) remap the original ids.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from css.errors import DataError

SPLITS = ("train", "test")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


class TaskLabelMaps:
    """``Task``'s label maps and selection; they read the task's steps, order and labels."""

    def _table_size(self) -> int:
        largest = max(label for group in self.steps for label in group)
        return max(256, largest + 1, self.ignore_index + 1, *(v + 1 for v in self.void_labels))

    def label_map(self, step: int, split: str, overlap: bool = True) -> np.ndarray:
        """Lookup table (int64, index = dataset label) from dataset labels to model labels.

        train: current labels -> their channel; every other label -> 0 (background); ignore_index
        stays ignored, except for datasets whose training has no ignore label (ADE,
        docs/protocol-2d.md#label-maps-and-filters).
        test: seen labels -> their channel; future labels -> 0 (docs/tasks.md#label-maps).
        Void labels (ScanNet unannotated) -> ignore_index in both splits (docs/tasks.md#label-maps).
        The channel of a label is its position in ``order(step)`` (docs/tasks.md#channels).
        ``overlap`` is accepted for symmetry with ``keep``: the masking is the same in the overlap
        and disjoint settings, which differ only in the images they keep (docs/tasks.md#steps).
        """
        _check_split(split)
        channel = {label: index for index, label in enumerate(self.order(step)) if label >= 0}
        mapped = self.current_labels(step) if split == "train" else self.seen_labels(step)
        table = np.zeros(self._table_size(), dtype=np.int64)  # unlisted labels -> background
        for label in mapped:
            table[label] = channel[label]
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
        images, a share of the block for point clouds (css.index.presence_any and presence_share).

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

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
permuted orders (VOC 15-5s_b ... 15-5s_w) remap the original ids.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from css.errors import DataError, TaskError

SPLITS = ("train", "test")

# --- class names (indexed by dataset label) --------------------------------------------------

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# ADE20k SceneParsing-150 names in label order 1..150; label 0 ("void/other") is trained and
# evaluated as background (docs/protocol-2d.md#label-maps-and-filters).
ADE_CLASSES = ("background",) + (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)

# 3DPC-CISS class ids (id = line index of s3dis_classnames.txt / scannet_classnames.txt),
# docs/pointcloud-data.md#s3dis and #scannet
S3DIS_CLASSES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)
SCANNET_CLASSES = (
    "unannotated", "wall", "floor", "chair", "table", "desk", "bed", "bookshelf", "sofa", "sink",
    "bathtub", "toilet", "curtain", "counter", "door", "window", "shower curtain", "refrigerator",
    "picture", "cabinet", "otherfurniture",
)


@dataclass(frozen=True)
class _Dataset:
    """What a dataset's labels mean for tasks (which ids a task may list, background, quirks)."""

    class_names: tuple[str, ...]
    labels: range  # dataset labels a task may list
    background: int | None  # dataset label that is channel 0; None: synthetic background channel
    void_labels: tuple[int, ...] = ()  # always mapped to ignore_index (ScanNet unannotated)
    # ADE: no ignore label in training (docs/protocol-2d.md#label-maps-and-filters)
    train_ignore_as_background: bool = False


_DATASETS: dict[str, _Dataset] = {
    "voc": _Dataset(VOC_CLASSES, range(0, 21), background=0),
    "ade": _Dataset(ADE_CLASSES, range(0, 151), background=0, train_ignore_as_background=True),
    "s3dis": _Dataset(S3DIS_CLASSES, range(0, 13), background=None),
    # unannotated points are a void label, ignored rather than background (docs/tasks.md#label-maps;
    # the reference's handling: docs/pointcloud-datasets.md#unannotated)
    "scannet": _Dataset(SCANNET_CLASSES, range(1, 21), background=None, void_labels=(0,)),
}


# --- reference task tables --------------------------------------------------------------------

def _one_per_step(base: Sequence[int], novel: Sequence[int]) -> list[list[int]]:
    """[base, [n_1], [n_2], ...]: the base group followed by one step per novel class."""
    return [list(base)] + [[label] for label in novel]


# Random-order "15-1" variants: (step 0, the classes of steps 1..5, one per step)
# (docs/protocol-2d.md#task-tables)
_VOC_RANDOM_ORDERS: dict[str, tuple[list[int], list[int]]] = {
    "15-5s_b": ([0, 12, 9, 20, 7, 15, 8, 14, 16, 5, 19, 4, 1, 13, 2, 11], [17, 3, 6, 18, 10]),
    "15-5s_c": ([0, 13, 19, 15, 17, 9, 8, 5, 20, 4, 3, 10, 11, 18, 16, 7], [12, 14, 6, 1, 2]),
    "15-5s_d": ([0, 15, 3, 2, 12, 14, 18, 20, 16, 11, 1, 19, 8, 10, 7, 17], [6, 5, 13, 9, 4]),
    "15-5s_e": ([0, 7, 5, 3, 9, 13, 12, 14, 19, 10, 2, 1, 4, 16, 8, 17], [15, 18, 6, 11, 20]),
    "15-5s_f": ([0, 7, 13, 5, 11, 9, 2, 15, 12, 14, 3, 20, 1, 16, 4, 18], [8, 6, 10, 19, 17]),
    "15-5s_g": ([0, 7, 5, 9, 1, 15, 18, 14, 3, 20, 10, 4, 19, 11, 17, 16], [12, 8, 6, 2, 13]),
    "15-5s_h": ([0, 12, 9, 19, 6, 4, 10, 5, 18, 14, 15, 16, 3, 8, 7, 11], [13, 2, 20, 17, 1]),
    "15-5s_i": ([0, 13, 10, 15, 8, 7, 19, 4, 3, 16, 12, 14, 11, 5, 20, 6], [2, 18, 9, 17, 1]),
    "15-5s_j": ([0, 1, 14, 9, 5, 2, 15, 8, 20, 6, 16, 18, 7, 11, 10, 19], [3, 4, 17, 12, 13]),
    "15-5s_k": ([0, 16, 13, 1, 11, 12, 18, 6, 14, 5, 3, 7, 9, 20, 19, 15], [4, 2, 10, 8, 17]),
    "15-5s_l": ([0, 10, 7, 6, 19, 16, 8, 17, 1, 14, 4, 9, 3, 15, 11, 12], [2, 18, 20, 13, 5]),
    "15-5s_m": ([0, 18, 4, 14, 17, 12, 10, 7, 3, 9, 1, 8, 15, 6, 13, 2], [5, 11, 20, 16, 19]),
    "15-5s_n": ([0, 5, 4, 13, 18, 14, 10, 19, 15, 7, 9, 3, 2, 8, 16, 20], [1, 12, 11, 6, 17]),
    "15-5s_o": ([0, 9, 12, 13, 18, 7, 1, 15, 17, 10, 8, 4, 5, 20, 16, 6], [14, 19, 11, 2, 3]),
    "15-5s_p": ([0, 9, 12, 13, 18, 2, 11, 15, 17, 10, 8, 4, 5, 20, 16, 6], [14, 19, 1, 7, 3]),
    "15-5s_q": ([0, 3, 14, 13, 18, 2, 11, 15, 17, 10, 8, 4, 5, 20, 16, 6], [12, 19, 1, 7, 9]),
    "15-5s_r": ([0, 3, 14, 13, 1, 2, 11, 15, 17, 7, 8, 4, 5, 9, 16, 19], [12, 6, 18, 10, 20]),
    "15-5s_s": ([0, 3, 14, 6, 1, 2, 11, 12, 17, 7, 20, 4, 5, 9, 16, 19], [15, 13, 18, 10, 8]),
    "15-5s_t": ([0, 3, 15, 13, 1, 2, 11, 18, 17, 7, 20, 8, 5, 9, 16, 19], [14, 6, 12, 10, 4]),
    "15-5s_u": ([0, 3, 15, 13, 14, 6, 11, 18, 17, 7, 20, 8, 4, 9, 16, 10], [1, 2, 12, 19, 5]),
    "15-5s_v": ([0, 1, 2, 12, 14, 6, 19, 18, 17, 5, 20, 8, 4, 9, 16, 10], [3, 15, 13, 11, 7]),
    "15-5s_w": ([0, 1, 2, 12, 14, 13, 19, 18, 7, 11, 20, 8, 4, 9, 16, 10], [3, 15, 6, 5, 17]),
}


def _voc_tables() -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """VOC reference tasks and aliases (docs/protocol-2d.md#task-tables)."""
    tables = {
        "offline": [list(range(21))],
        "19-1": [list(range(20)), [20]],
        "15-5": [list(range(16)), list(range(16, 21))],
        "15-5s": _one_per_step(range(16), range(16, 21)),
        "10-1": _one_per_step(range(11), range(11, 21)),
    }
    aliases = {"15-1": "15-5s"}  # 15-5s is the setting the papers call "15-1"
    for name, (base, novel) in _VOC_RANDOM_ORDERS.items():
        tables[name] = _one_per_step(base, novel)
        aliases["15-1" + name[len("15-5s"):]] = name
    return tables, aliases


def _ade_tables() -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """ADE20k reference tasks and aliases (docs/protocol-2d.md#task-tables)."""

    def chunks(start: int, stop: int, size: int) -> list[list[int]]:
        return [list(range(i, min(i + size, stop))) for i in range(start, stop, size)]

    tables = {
        "offline": [list(range(151))],
        "100-50": [list(range(101)), list(range(101, 151))],
        "100-10": [list(range(101))] + chunks(101, 151, 10),
        "100-5": [list(range(101))] + chunks(101, 151, 5),
        "50": [list(range(51)), list(range(51, 101)), list(range(101, 151))],
    }
    return tables, {"50-50": "50"}


# docs/tasks.md#tasks: "m-n" = first m classes of the order are base, then steps of n novel classes
# (12-1, 10-3, 8-5 and 19-1, 17-3, 15-5 have one incremental step; 8-1 and 15-1 learn the same
# novel classes as 8-5 and 15-5, one class per step).
_SPLITS_3D = {
    "s3dis": {"12-1": (12, 1), "10-3": (10, 3), "8-5": (8, 5), "8-1": (8, 1)},
    "scannet": {"19-1": (19, 1), "17-3": (17, 3), "15-5": (15, 5), "15-1": (15, 1)},
}


def _class_orders_3d(dataset: str) -> dict[str, list[int]]:
    """S0 = dataset id order, S1 = alphabetical order of class names (docs/tasks.md#tasks)."""
    info = _DATASETS[dataset]
    ids = list(info.labels)
    return {"s0": ids, "s1": sorted(ids, key=lambda label: info.class_names[label])}


def _pointcloud_tables(dataset: str) -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """S3DIS / ScanNet tasks for both class orders; the plain name means order S0."""
    orders = _class_orders_3d(dataset)
    tables = {"offline": [orders["s0"]]}
    aliases = {}
    for split, (base, step_size) in _SPLITS_3D[dataset].items():
        for order_name, order in orders.items():
            novel = order[base:]
            tables[f"{split}_{order_name}"] = [order[:base]] + [
                novel[i:i + step_size] for i in range(0, len(novel), step_size)
            ]
        aliases[split] = f"{split}_s0"
    return tables, aliases


def _build_registry() -> dict[str, tuple[dict[str, list[list[int]]], dict[str, str]]]:
    return {
        "voc": _voc_tables(),
        "ade": _ade_tables(),
        "s3dis": _pointcloud_tables("s3dis"),
        "scannet": _pointcloud_tables("scannet"),
    }


_REGISTRY = _build_registry()


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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


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

    # -- label maps --------------------------------------------------------------------------

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

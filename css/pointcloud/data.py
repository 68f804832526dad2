"""Point-cloud datasets (S3DIS, ScanNet, a prepared folder, the synthetic rooms) for a task step.

docs/pointcloud-datasets.md. Every dataset is read from prepared split files
``<root>/train.h5`` and ``<root>/test.h5`` (css.pointcloud.store; ``python -m
css.pointcloud.prepare`` writes them, css.pointcloud.synthetic generates them for "synthetic").

A step's datasets (docs/pointcloud-datasets.md#selection):
- train: the blocks of the train file that show a current class, by ``Task.select`` on the
  5 % / 100-point presence rule (css.tasks.index.presence_share) computed from the stored counts;
- test: every block of the test file, labels of all seen classes (future classes -> 0).

Labels are ``Task.remap``-ed; ScanNet's "unannotated" label 0 (a void label of the task) is
handled by the protocol (docs/pointcloud-datasets.md#unannotated):
- fixed: label set "fixed", unannotated ignored (255) everywhere;
- reference: label set "reference", unannotated ignored at step 0 training only and background
  (0) at later training steps and in every test set, as the reference code does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from css.errors import ConfigError, DataError, TaskError
from css.tasks.index import presence_share, shown_labels
from css.pointcloud import synthetic
from css.pointcloud.store import BlockStore, scene_file
from css.pointcloud.transforms import block_features, sample_indices
from css.tasks.task import SPLITS
from css.tasks.task import Task
from css.tasks.registry import load_task

DATASETS = ("s3dis", "scannet", "folder", "synthetic")
PROTOCOLS = ("reference", "fixed")
PREPARE_HINT = ("prepare it with python -m css.pointcloud.prepare (docs/pointcloud-data.md#prepare) from the raw "
                "release: S3DIS (Stanford3dDataset_v1.2_Aligned_Version) at "
                "http://buildingparser.stanford.edu/dataset.html, ScanNet v2 at http://www.scan-net.org/, "
                "or your own scans")


# --- names and files ------------------------------------------------------------------------

def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown point-cloud dataset {name!r} (data.dataset); valid: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")


def prepared_root(name: str, root: str | os.PathLike | None, options: dict[str, Any] | None = None) -> Path:
    """The folder that holds ``train.h5`` / ``test.h5``.

    synthetic: the cached generated folder (generated on first use); ``root``, when given, is the
    cache folder it lives in (default $CSS_CACHE_DIR or ~/.cache/css). Others: ``root`` itself.
    """
    _check_name(name)
    if name == "synthetic":
        return synthetic.ensure(options, cache_dir=root)
    if options:
        raise ConfigError(f"data.options {sorted(options)} are only read by the synthetic dataset; the {name} "
                          f"dataset takes its settings from the prepared files, remove data.options")
    if root is None:
        raise ConfigError(f"the {name} dataset needs data.root (the folder with train.h5 and test.h5); "
                          f"{PREPARE_HINT}")
    return Path(root).expanduser().absolute()


UNITS = ("block", "scene")


def open_split(name: str, root: str | os.PathLike | None, split: str, *,
               options: dict[str, Any] | None = None, unit: str = "block") -> BlockStore:
    """The prepared blocks of one split, or with ``unit="scene"`` its whole scenes
    (docs/pointcloud-data.md#whole-scenes), checked against the dataset name."""
    _check_split(split)
    folder = prepared_root(name, root, options)
    path = folder / (f"{split}.h5" if unit == "block" else scene_file(split))
    if not path.is_file():
        hint = "" if folder.is_dir() else f" (the folder {folder} does not exist either; check data.root)"
        if unit == "scene" and (folder / f"{split}.h5").is_file():
            hint = (f" ({folder} holds the blocks only: it was prepared by an older css, before whole scenes "
                    f"were kept; prepare it again)")
        raise DataError(f"{name} {split} {'split' if unit == 'block' else 'whole scenes'} {path} not found{hint}; "
                        f"{PREPARE_HINT}")
    store = BlockStore(path)
    if store.attrs.get("unit", "block") != unit:
        raise DataError(f"{path} holds {store.attrs.get('unit', 'block')}s, not {unit}s; prepare the data again "
                        f"with python -m css.pointcloud.prepare")
    stored = store.attrs.get("dataset")
    if name in ("s3dis", "scannet", "synthetic") and stored != name:
        raise DataError(f"{path} holds prepared {stored!r} data, not {name!r}; point data.root at the {name} "
                        f"prepared folder or set data.dataset to the dataset it holds")
    if store.attrs.get("split") != split:
        raise DataError(f"{path} holds the {store.attrs.get('split')!r} split, not {split!r}; prepare the data again")
    return store


def _background_attr(store: BlockStore) -> int | None:
    """The folder dataset's background label (attr ``background``; -1 or absent: none)."""
    value = store.attrs.get("background", -1)
    try:
        value = int(value)
    except (TypeError, ValueError):
        value = None
    if value is None or not -1 <= value < len(store.class_names):
        raise DataError(f"{store.path}: attribute background={store.attrs.get('background')!r} must be a label id "
                        f"0..{len(store.class_names) - 1} or -1 (no background label); prepare the data again")
    return None if value < 0 else value


# --- tasks ----------------------------------------------------------------------------------

def load_dataset_task(name: str, spec: Any, *, root: str | os.PathLike | None = None,
                      options: dict[str, Any] | None = None) -> Task:
    """The task ``spec`` for a point-cloud dataset.

    s3dis/scannet: ``css.tasks.load_task`` (reference names such as "12-1", "8-1", "15-1_s1", or
    class groups). folder/synthetic: class groups, "offline" or "m-n" (docs/pointcloud-datasets.md#tasks):
    without a background label m classes first, then n per step; with one (folder attr
    ``background``) it goes first in step 0 and m counts the other classes, as for images.
    """
    _check_name(name)
    if name in ("s3dis", "scannet"):
        return load_task(name, spec)
    if name == "synthetic":
        names, background = synthetic.class_names(options), None
    else:
        store = open_split(name, root, "train", options=options)
        names, background = store.class_names, _background_attr(store)
    if isinstance(spec, str):
        steps, task_name = _named_steps(spec, len(names), background, name), spec
    elif isinstance(spec, Sequence):
        steps, task_name = spec, "custom"
    else:
        raise TaskError(f"task for the {name} dataset must be 'offline', a name like '4-2' or a list of class "
                        f"groups, got {spec!r}")
    task = Task(dataset=name, name=task_name, steps=steps, background=background, class_names=tuple(names))
    _check_task_fits(task, len(names), name)
    return task


def _named_steps(spec: str, count: int, background: int | None, name: str) -> list[list[int]]:
    order = list(range(count))
    if background is not None:
        order = [background] + [label for label in order if label != background]
    lead = 0 if background is None else 1  # the background label rides along in step 0
    foreground = count - lead
    if spec == "offline":
        return [order]
    parts = spec.split("-")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        base, size = int(parts[0]), int(parts[1])
        if 1 <= base < foreground and size >= 1:
            rest = order[lead + base:]
            return [order[:lead + base]] + [rest[i:i + size] for i in range(0, len(rest), size)]
    bg = "" if background is None else f", background label {background} first"
    raise TaskError(f"unknown task {spec!r} for the {name} dataset ({foreground} classes{bg}); use 'offline', "
                    f"'m-n' with 1 <= m < {foreground} (m classes first, then n per step) or a list of class groups")


def _check_task_fits(task: Task, num_labels: int, name: str) -> None:
    outside = sorted(label for group in task.steps for label in group if label >= num_labels)
    if outside:
        raise TaskError(f"task {task.name!r} lists labels {outside[:10]} but the {name} dataset has labels "
                        f"0..{num_labels - 1}; choose a task of this dataset")


# --- labels ---------------------------------------------------------------------------------

def label_set(store: BlockStore, protocol: str) -> str:
    """Which stored labels a run reads: "fixed" under protocol fixed when the file has them
    (ScanNet), else "reference" (the only set of the other datasets)."""
    _check_protocol(protocol)
    if protocol == "fixed" and (store.attrs.get("dataset") == "scannet" or "fixed" in store.label_sets):
        return "fixed"  # BlockStore raises a DataError if a ScanNet file lacks it
    return "reference"


def void_as_background(task: Task, step: int, split: str, protocol: str) -> bool:
    """Whether void labels (ScanNet unannotated) are background instead of ignored: under the
    reference protocol everywhere except step 0 training (docs/pointcloud-datasets.md#unannotated)."""
    return bool(task.void_labels) and protocol == "reference" and (split == "test" or step > 0)


def label_table(task: Task, step: int, split: str, *, protocol: str = "reference", overlap: bool = True) -> np.ndarray:
    """``Task.label_map`` with the protocol's handling of void labels."""
    table = task.label_map(step, split, overlap).copy()
    if void_as_background(task, step, split, protocol):
        table[list(task.void_labels)] = 0
    return table


def remap_labels(task: Task, labels: np.ndarray, step: int, split: str, *, protocol: str = "reference",
                 overlap: bool = True) -> np.ndarray:
    """Dataset labels -> model labels: ``Task.remap`` (range-checked), then the void handling."""
    out = task.remap(labels, step, split, overlap)
    if void_as_background(task, step, split, protocol):
        out[np.isin(labels, task.void_labels)] = 0
    return out


def check_fits_store(task: Task, store: BlockStore) -> None:
    outside = sorted(label for group in task.steps for label in group if label >= len(store.class_names))
    if outside:
        raise TaskError(f"task {task.name!r} lists labels {outside[:10]} but {store.path} has "
                        f"{len(store.class_names)} classes (0..{len(store.class_names) - 1}); choose a task of "
                        f"this dataset")


def select_blocks(store: BlockStore, task: Task, step: int, split: str, *, protocol: str = "reference",
                  overlap: bool = True, presence: tuple[float, int] = (0.05, 100)) -> np.ndarray:
    """Store indices of the blocks a step uses: train = ``Task.select`` on the presence rule,
    test = every block (docs/pointcloud-datasets.md#selection)."""
    _check_split(split)
    if split == "test":
        return np.arange(len(store), dtype=np.int64)
    fraction, min_count = presence
    shown = presence_share(store.counts(label_set(store, protocol)), store.sizes, fraction=fraction,
                           min_count=min_count)
    return task.select(shown, step, "train", overlap)


# --- the dataset ----------------------------------------------------------------------------

def sample_features(block: dict[str, np.ndarray], points: np.ndarray, *, height_feature: bool,
                    augment: bool = False, rng: Any = np.random) -> torch.Tensor:
    """The model input (C, len(points)) float32 of the points ``points`` of a block (coord in scene
    coordinates, color uint8): the feature step of ``BlockDataset.sample``.

    A function of its own so that css.pointcloud.predict, whose scan tiles are no dataset, feeds the
    model exactly what training and the test metric feed it (one place for the height rule too)."""
    # the height channel counts from the whole block's lowest point, not the sample's
    base = float(block["coord"][:, 2].min()) if height_feature else None
    return torch.from_numpy(block_features(block["coord"][points], block["color"][points], augment=augment,
                                           rng=rng, height_base=base))


class BlockDataset(Dataset):
    """The blocks of one task step and split: ``dataset[i] -> (features (C, N) float32, labels (N,) int64)``,
    C = 9, or 10 with ``height_feature`` (docs/pointcloud-datasets.md#height-feature).

    ``ids`` are the block ids, ``indices`` their positions in ``store``. ``num_points`` points
    are drawn per access (None: all points in file order). ``seed=None`` draws from numpy's
    global RNG, an int seed from ``default_rng([seed, i])`` so that every access of item i
    returns the same sample.
    """

    def __init__(self, store: BlockStore, indices: np.ndarray, task: Task, step: int, split: str, *,
                 num_points: int | None, augment: bool, seed: int | None, protocol: str, overlap: bool,
                 height_feature: bool = False) -> None:
        self.store, self.indices = store, np.asarray(indices, dtype=np.int64)
        self.height_feature = bool(height_feature)
        self.ids = [store.ids[i] for i in self.indices]
        self.task, self.step, self.split = task, step, split
        self.num_points, self.augment, self.seed = num_points, augment, seed
        self.protocol, self.overlap = protocol, overlap
        self.label_set = label_set(store, protocol)
        self.presence: np.ndarray | None = None  # presence[k, l]: block k shows label l (the block rule)

    def shown_labels(self) -> set[int]:
        """The dataset labels some block shows under the presence rule (css.controller.preflight)."""
        return shown_labels(self.presence)

    def __len__(self) -> int:
        return len(self.indices)

    def rng(self, i: int) -> Any:
        return np.random if self.seed is None else np.random.default_rng([int(self.seed), int(i)])

    def load(self, i: int) -> dict[str, np.ndarray]:
        """All points of item i: coord (n, 3) scene coords, color (n, 3) uint8, label (n,) model labels."""
        block = self.store.block(int(self.indices[i]), self.label_set)
        block["label"] = remap_labels(self.task, block["label"], self.step, self.split, protocol=self.protocol,
                                      overlap=self.overlap)
        return block

    def sample(self, block: dict[str, np.ndarray], points: np.ndarray, rng: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of the points ``points`` of a loaded block (the one code path of every
        access, so a full-coverage evaluation can pass its own index sets)."""
        features = sample_features(block, points, height_feature=self.height_feature, augment=self.augment, rng=rng)
        return features, torch.from_numpy(np.ascontiguousarray(block["label"][points]))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(i)
        block = self.load(i)
        return self.sample(block, sample_indices(len(block["label"]), self.num_points, rng), rng)


def build_dataset(name: str, root: str | os.PathLike | None, *, task: Task, step: int, split: str,
                  num_points: int | None = 2048, augment: bool = False, seed: int | None = None,
                  protocol: str = "reference", overlap: bool = True, presence: tuple[float, int] = (0.05, 100),
                  store: BlockStore | None = None, options: dict[str, Any] | None = None,
                  height_feature: bool = False) -> BlockDataset:
    """The blocks of ``task`` step ``step`` and ``split`` (see the module docstring).

    ``store`` reuses an opened split (``open_split``) instead of opening ``root`` again.
    ``height_feature`` adds the 10th input channel (docs/pointcloud-datasets.md#height-feature).
    """
    _check_name(name)
    _check_split(split)
    _check_protocol(protocol)
    if num_points is not None and (not isinstance(num_points, int) or num_points <= 0):
        raise ConfigError(f"num_points must be a positive integer or null (every point), got {num_points!r}")
    if store is None:
        store = open_split(name, root, split, options=options)
    elif store.attrs.get("split") != split:
        raise ValueError(f"store {store.path} holds the {store.attrs.get('split')!r} split, not {split!r}")
    check_fits_store(task, store)
    indices = select_blocks(store, task, step, split, protocol=protocol, overlap=overlap, presence=presence)
    dataset = BlockDataset(store, indices, task, step, split, num_points=num_points, augment=augment, seed=seed,
                           protocol=protocol, overlap=overlap, height_feature=height_feature)
    fraction, min_count = presence
    dataset.presence = presence_share(store.counts(label_set(store, protocol))[indices], store.sizes[indices],
                                      fraction=fraction, min_count=min_count)
    return dataset


# --- summary for ``python -m css.data inspect`` ----------------------------------------------

@dataclass(frozen=True)
class StepSummary:
    """One step: block counts and points per model channel after masking (ignored points excluded)."""

    step: int
    channels: list[str]
    train_blocks: int
    test_blocks: int
    train_points: list[int]
    test_points: list[int]


def _channel_points(store: BlockStore, indices: np.ndarray, table: np.ndarray, num_channels: int,
                    protocol: str) -> list[int]:
    counts = store.counts(label_set(store, protocol))[indices].sum(axis=0)
    points = np.zeros(num_channels, dtype=np.int64)
    for label, count in enumerate(counts):
        if table[label] != 255:
            points[table[label]] += count
    return points.tolist()


def dataset_summary(name: str, root: str | os.PathLike | None, *, task: Task, protocol: str = "reference",
                    overlap: bool = True, presence: tuple[float, int] = (0.05, 100),
                    options: dict[str, Any] | None = None,
                    stores: dict[str, BlockStore] | None = None) -> list[StepSummary]:
    """Per step: train and test blocks and the points of every model channel, from the stored
    counts alone (no point is read)."""
    _check_protocol(protocol)
    stores = dict(stores or {})
    for split in SPLITS:
        if split not in stores:
            stores[split] = open_split(name, root, split, options=options)
        check_fits_store(task, stores[split])
    rows = []
    for step in range(task.num_steps):
        n = task.num_classes(step)
        picked = {split: select_blocks(stores[split], task, step, split, protocol=protocol, overlap=overlap,
                                       presence=presence) for split in SPLITS}
        points = {split: _channel_points(stores[split], picked[split],
                                         label_table(task, step, split, protocol=protocol, overlap=overlap), n,
                                         protocol) for split in SPLITS}
        rows.append(StepSummary(step, task.channel_names(step), len(picked["train"]), len(picked["test"]),
                                points["train"], points["test"]))
    return rows


def format_summary(rows: list[StepSummary], unit: str = "block") -> str:
    """Human-readable lines of ``dataset_summary`` (``unit``: what the stores hold, block or scene)."""
    lines = []
    for row in rows:
        lines.append(f"step {row.step}: {row.train_blocks} train {unit}s, {row.test_blocks} test {unit}s")
        for channel, (name, train, test) in enumerate(zip(row.channels, row.train_points, row.test_points)):
            lines.append(f"  {channel:3d} {name:<20s} train points {train:>12,d}  test points {test:>12,d}")
    return "\n".join(lines)

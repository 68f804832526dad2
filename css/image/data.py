"""Image segmentation datasets: one task step and split of VOC, ADE20k, a user folder or the
synthetic benchmark.

``load_split`` checks one split's files and reads the label histogram of every image once
(css.image.labels; cached on disk by css.tasks.index). ``build_dataset`` then keeps the images
``Task.select`` picks for a step -- an image shows a label when any pixel has it
(docs/tasks.md#selection) -- in the dataset's own order, and remaps targets with ``Task.remap``
after the spatial transform (docs/protocol-2d.md#transforms).

Where things live: the datasets and their layouts in css.image.datasets (voc.py, ade.py,
folder.py, synthetic.py), label files in css.image.labels, the count cache in css.tasks.index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from css.errors import ConfigError, DataError, TaskError
from css.image import labels as label_files
from css.image.datasets import check_name, class_names, list_split, synthetic
from css.image.datasets.checks import damaged, verified_images
from css.image.datasets.listing import IGNORE_LABEL, Listing, check_split
from css.image.datasets.synthetic import SyntheticSource
from css.tasks.index import ClassIndex, presence_any, shown_labels
from css.tasks.registry import load_task
from css.tasks.task import Task

# --- where items come from --------------------------------------------------------------------

def _load_image(path: str) -> tv_tensors.Image:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - damage the indexing check cannot see (css/image/datasets/checks.py)
        raise damaged(path, "image", exc) from exc
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


class FileSource:
    """Reads image i and its label map from disk."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing

    def load(self, index: int) -> tuple[tv_tensors.Image, np.ndarray]:
        image = _load_image(self.listing.images[index])
        labels = label_files.read_label(self.listing.labels[index])
        if self.listing.label_table is not None:
            labels = label_files.lookup(labels, self.listing.label_table, self.listing.labels[index])
        if labels.shape != tuple(image.shape[-2:]):
            raise DataError(
                f"label file {self.listing.labels[index]} is {labels.shape[1]}x{labels.shape[0]} "
                f"but its image {self.listing.images[index]} is "
                f"{image.shape[-1]}x{image.shape[-2]}; a mask must have its image's size"
            )
        if self.listing.ignore_value != IGNORE_LABEL:
            labels = np.where(labels == self.listing.ignore_value, IGNORE_LABEL, labels)
        return image, labels.astype(np.uint8)


Transform = Callable[[Any, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]


class SegmentationDataset(Dataset):
    """The images of one task step and split: ``dataset[i] -> (image, target)``.

    ``ids`` are the kept images' ids in the dataset's order. The target holds model labels: the
    dataset labels remapped by ``task.remap(labels, step, split, overlap)`` after the transform.
    Without a transform the image is float32 (3, H, W) in [0, 1] and the target int64 (H, W).
    """

    def __init__(
        self,
        source: FileSource | SyntheticSource,
        ids: list[str],
        indices: np.ndarray,
        task: Task,
        step: int,
        split: str,
        overlap: bool,
        transform: Transform | None,
    ) -> None:
        self.source = source
        self.indices = indices
        self.ids = [ids[i] for i in indices]
        self.task, self.step, self.split, self.overlap = task, step, split, overlap
        self.transform = transform
        self.presence: np.ndarray | None = None  # presence[k, l]: kept image k shows dataset label l

    def shown_labels(self) -> set[int]:
        """The dataset labels some kept image shows (at least one pixel; css.controller.preflight)."""
        return shown_labels(self.presence)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.source.load(int(self.indices[i]))
        mask = tv_tensors.Mask(torch.from_numpy(labels))
        if self.transform is None:
            out_image, out_mask = image.as_subclass(torch.Tensor).float() / 255.0, mask
        else:
            out_image, out_mask = self.transform(image, mask)
        # docs/protocol-2d.md#transforms: labels are remapped after the spatial transforms
        labels_out = torch.as_tensor(out_mask).as_subclass(torch.Tensor)
        target = self.task.remap(labels_out, self.step, self.split, self.overlap)
        return torch.as_tensor(out_image).as_subclass(torch.Tensor), target


# --- one split, indexed once ------------------------------------------------------------------

@dataclass(frozen=True)
class SplitIndex:
    """One split, checked and indexed once: its image source, ids and per-image label histograms
    (hist[i, l] = pixels of label l in image i for l < num_labels; the last column counts ignore
    pixels).

    ``build_dataset(..., index=...)`` derives any task's step subset from it in memory, without
    touching the disk again, so a run builds all 2 x (T + 1) datasets of a task from one look at
    each split (the reference rescanned every label PNG for every step)."""

    name: str
    split: str
    source: Any
    ids: list[str]
    hist: np.ndarray
    domains: np.ndarray | None = None  # a domain-incremental dataset: every image's domain id

    @property
    def num_labels(self) -> int:
        return self.hist.shape[1] - 1

    def class_index(self) -> ClassIndex:
        """The split as the modality-agnostic css.tasks.index.ClassIndex (sizes include ignore)."""
        return ClassIndex(self.ids, self.hist[:, :-1], self.hist.sum(axis=1))

    def presence(self) -> np.ndarray:
        """presence[i, l]: image i shows label l, i.e. has at least one pixel of it. For a domain-
        incremental dataset, whose tasks list domains: presence[i, d] says image i is of domain d
        (css.tasks.domain.DomainTask.select)."""
        if self.domains is not None:
            return np.eye(int(self.domains.max()) + 1 if len(self.domains) else 0, dtype=bool)[self.domains]
        return presence_any(self.hist[:, :-1])


def _prepare(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    cache_dir: str | os.PathLike | None,
    options: dict[str, Any] | None,
) -> SplitIndex:
    check_name(name)
    check_split(split)
    if name == "synthetic":
        scenes = synthetic.scenes(options, split)
        return SplitIndex(name, split, SyntheticSource(scenes), synthetic.ids(scenes),
                          synthetic.histograms(scenes))
    if options:
        raise ConfigError(f"the {name} dataset takes no data.options, got {sorted(options)}")
    if root is None:
        raise ConfigError(f"the {name} dataset needs data.root")
    listing = list_split(name, root, split)
    hist = label_files.histograms(listing, root, cache_dir)
    verified_images(listing, root, cache_dir)  # docs/faults.md#data-files
    domains = None if listing.domains is None else np.asarray(listing.domains, dtype=np.int64)
    return SplitIndex(name, split, FileSource(listing), listing.ids, hist, domains)


def load_split(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
) -> SplitIndex:
    """Check one split's files and read its label histograms (from the cache when the label
    files are unchanged, else scanned in parallel and cached)."""
    return _prepare(name, root, split, cache_dir, options)


def label_histograms(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[list[str], np.ndarray]:
    """(ids, hist): hist[i, l] = pixels of label l in image i for l < num_labels; the last
    column counts ignore pixels. Read from the cache when the label files are unchanged."""
    index = _prepare(name, root, split, cache_dir, options)
    return index.ids, index.hist


def class_presence(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[list[str], np.ndarray]:
    """(ids, presence): presence[i, l] is True when image i holds label l (0..num_labels-1)."""
    index = _prepare(name, root, split, cache_dir, options)
    return index.ids, index.presence()


def subset_indices(
    presence: np.ndarray, task: Task, step: int, split: str, overlap: bool = True
) -> np.ndarray:
    """Indices (ascending) of the images a step uses: ``task.select`` (docs/tasks.md#selection),
    with a bad ``split`` reported as a ConfigError."""
    check_split(split)
    return task.select(presence, step, split, overlap)


# --- a step's dataset -------------------------------------------------------------------------

def _check_task_fits(task: Task, num_labels: int, name: str) -> None:
    outside = sorted(label for group in task.steps for label in group if label >= num_labels)
    if outside:
        raise TaskError(
            f"task {task.name!r} lists labels {outside[:10]} but the {name} dataset has labels "
            f"0..{num_labels - 1}; choose a task of this dataset"
        )


def build_dataset(
    name: str,
    root: str | os.PathLike | None,
    *,
    task: Task,
    step: int,
    split: str,
    overlap: bool = True,
    transform: Transform | None = None,
    cache_dir: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
    index: SplitIndex | None = None,
) -> SegmentationDataset:
    """The dataset of ``task`` at ``step`` for ``split`` ("train" or "test").

    name: "voc", "ade", "folder" (layouts in VOC_LAYOUT, ADE_LAYOUT, FOLDER_LAYOUT) or
    "synthetic" (root unused; ``options``: num_images (int or {train, test}), size, num_classes,
    seed, borders). Images are those ``task.select`` picks, in the dataset's order
    (docs/tasks.md#selection); ``overlap=False`` is the disjoint setting. ``transform(image,
    mask)`` receives a uint8 ``tv_tensors.Image`` and a ``tv_tensors.Mask`` of dataset labels.
    ``index``: the split's ``load_split`` result, to skip checking the files again (root,
    cache_dir and options are then unused).
    """
    if index is None:
        index = load_split(name, root, split, cache_dir=cache_dir, options=options)
    elif (index.name, index.split) != (name, split):
        raise ConfigError(f"build_dataset({name!r}, split={split!r}) was given the index of "
                          f"{index.name!r} split {index.split!r}; pass load_split({name!r}, ..., {split!r})")
    if (task.adds == "domains") != (index.domains is not None):
        raise TaskError(f"task {task.name!r} adds {task.adds} but the {name} dataset "
                        f"{'has domains' if index.domains is not None else 'has no domains'}; "
                        f"choose a task of this dataset (css.tasks.registry.list_tasks)")
    presence = index.presence()
    if task.adds == "classes":
        _check_task_fits(task, presence.shape[1], name)
    indices = subset_indices(presence, task, step, split, overlap)
    dataset = SegmentationDataset(index.source, index.ids, indices, task, step, split, overlap, transform)
    dataset.presence = presence[indices]
    return dataset


def load_dataset_task(
    name: str,
    spec: Any,
    *,
    root: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
) -> Task:
    """The task ``spec`` (a name or a list of class groups) for an image dataset.

    voc/ade: ``css.tasks.load_task``. folder/synthetic: a list of class groups (background 0
    first in step 0), "offline" (all labels in one step) or "m-n" (labels 0..m in step 0, then
    n labels per step).
    """
    check_name(name)
    if name in ("voc", "ade", "cityscapes_domain"):
        return load_task(name, spec)
    names = class_names(name, root, options)
    count = len(names)
    if isinstance(spec, str):
        steps = _named_steps(spec, count, name)
        task_name = spec
    elif isinstance(spec, Sequence):
        steps, task_name = spec, "custom"
    else:
        raise TaskError(
            f"task for the {name} dataset must be a name like '4-2' or a list of class groups, "
            f"got {spec!r}"
        )
    task = Task(dataset=name, name=task_name, steps=steps, background=0, class_names=names)
    _check_task_fits(task, count, name)
    return task


def _named_steps(spec: str, count: int, name: str) -> list[list[int]]:
    if spec == "offline":
        return [list(range(count))]
    parts = spec.split("-")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        base, size = int(parts[0]), int(parts[1])
        if 1 <= base < count - 1 and size >= 1:
            rest = list(range(base + 1, count))
            return [list(range(base + 1))] + [rest[i:i + size] for i in range(0, len(rest), size)]
    raise TaskError(
        f"unknown task {spec!r} for the {name} dataset (labels 0..{count - 1}); use 'offline', "
        f"'m-n' with 1 <= m < {count - 1} (labels 0..m first, then n per step) or a list of "
        f"class groups"
    )

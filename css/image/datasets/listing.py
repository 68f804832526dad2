"""What every file-based image dataset lists: the ``Listing`` of a split and the layout checks.

A dataset module (voc.py, ade.py, folder.py) turns a root folder into a ``Listing``: the ids,
image files and label files of one split in the dataset's own order. A missing folder, list file,
image or mask is a ``DataError`` naming the path and showing the expected layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from css.errors import ConfigError, DataError

IGNORE_LABEL = 255
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Listing:
    """The files of one split, in the dataset's order, and how to read their labels."""

    name: str
    split: str
    ids: list[str]
    images: list[str]  # absolute paths (str: listing 10k+ files with pathlib is measurably slow)
    labels: list[str]
    num_labels: int
    ignore_value: int  # value that means "ignore" in the label files; read as IGNORE_LABEL
    class_names: tuple[str, ...]
    label_table: np.ndarray | None = None
    """Lookup (index = value in the label files) to the dataset's labels, applied when a file is read
    (Cityscapes: labelIds -> train ids, anything else IGNORE_LABEL); None: the files hold the labels."""
    domains: list[int] | None = None
    """The domain of every image, for a domain-incremental dataset (Cityscapes: its city's id)."""


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")


def require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} is not a folder. Expected layout:\n{layout}")


def require_file(path: Path, what: str, layout: str) -> None:
    if not path.is_file():
        raise DataError(f"{what} not found: {path} does not exist. Expected layout:\n{layout}")


def check_images_exist(images: Sequence[str], listed_in: str) -> None:
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DataError(
            f"{len(missing)} image file(s) listed in {listed_in} are missing, e.g. {shown}; "
            f"restore them or remove their entries"
        )


def check_masks_exist(ids: Sequence[str], labels: Sequence[str], listed_in: str) -> None:
    missing = [(i, p) for i, p in zip(ids, labels) if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(f"image {i!r} -> {p}" for i, p in missing[:5])
        raise DataError(
            f"{len(missing)} image(s) from {listed_in} have no label file: {shown}; every image "
            f"needs a mask (images without one are never skipped silently)"
        )

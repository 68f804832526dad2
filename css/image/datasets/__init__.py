"""The image datasets, one module each: voc, ade, folder (a user's folder) and synthetic.

A file-based dataset module holds its ``LAYOUT`` text (shown in every layout error), its
``list_split(root, split) -> Listing`` and its ``class_names(root)``; the synthetic one generates
its scenes from ``data.options``. This package is the registry ``css.image.data`` dispatches on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from css.errors import ConfigError
from css.image.datasets import ade, cityscapes, folder, synthetic, voc
from css.image.datasets.listing import IGNORE_LABEL, SPLITS, Listing, check_split, require_dir

DATASETS = ("voc", "ade", "cityscapes_domain", "folder", "synthetic")
FILE_DATASETS = {"voc": voc, "ade": ade, "cityscapes_domain": cityscapes, "folder": folder}

VOC_LAYOUT = voc.LAYOUT
ADE_LAYOUT = ade.LAYOUT
FOLDER_LAYOUT = folder.LAYOUT
CITYSCAPES_LAYOUT = cityscapes.LAYOUT


def check_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(
            f"unknown image dataset {name!r} (data.dataset); valid: {', '.join(DATASETS)}"
        )


def list_split(name: str, root: str | os.PathLike, split: str) -> Listing:
    """Check the on-disk layout of a file-based dataset and list one split's files."""
    check_name(name)
    check_split(split)
    if name == "synthetic":
        raise ConfigError("the synthetic dataset has no files to list")
    root = Path(root).expanduser().absolute()
    module = FILE_DATASETS[name]
    require_dir(root, f"{name} dataset root (data.root)", module.LAYOUT)
    return module.list_split(root, split)


def class_names(
    name: str, root: str | os.PathLike | None = None, options: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """Name of every dataset label, indexed by label id."""
    check_name(name)
    if name == "synthetic":
        return synthetic.class_names(options)
    return FILE_DATASETS[name].class_names(
        Path(root).expanduser().absolute() if root is not None else None
    )


def dataset_num_labels(
    name: str, root: str | os.PathLike | None = None, options: dict[str, Any] | None = None
) -> int:
    """Number of dataset labels (ids 0..n-1; 255 is ignore): voc 21, ade 151.

    folder: the length of root/classes.yaml's class list; synthetic: options num_classes + 1.
    """
    return len(class_names(name, root, options))


synthetic_options = synthetic.synthetic_options

__all__ = [
    "ADE_LAYOUT", "CITYSCAPES_LAYOUT", "DATASETS", "FILE_DATASETS", "FOLDER_LAYOUT", "IGNORE_LABEL", "Listing", "SPLITS",
    "VOC_LAYOUT", "check_name", "check_split", "class_names", "dataset_num_labels", "list_split",
    "synthetic_options",
]

"""A user's own dataset in a folder: ``images/``, ``masks/`` and ``classes.yaml``.

Labels are 0..len(classes)-1 (0 is background); the ``ignore_index`` of classes.yaml (default
255) is read as 255. Splits come from ``classes.yaml`` (``splits:``) or ``train.txt``/``test.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from css.errors import ConfigError, DataError
from css.image.datasets.listing import IGNORE_LABEL, Listing, check_masks_exist, require_dir, require_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

LAYOUT = """\
<root>/
    images/<id>.jpg|.jpeg|.png
    masks/<id>.png                    (single-channel class ids, same size as the image)
    classes.yaml                      classes: [background, name1, name2, ...]
                                      ignore_index: 255            (optional)
                                      splits: {train: [ids], test: [ids]}   (optional)
    train.txt, test.txt               (one id per line; used when classes.yaml has no splits)"""


def read_classes(root: Path) -> tuple[tuple[str, ...], int, dict[str, Any] | None]:
    """(class names, ignore value, splits or None) from ``root/classes.yaml``."""
    path = root / "classes.yaml"
    require_file(path, "folder dataset class list", LAYOUT)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML ({exc}). Expected:\n{LAYOUT}") from exc
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not classes:
        raise DataError(
            f"{path} must hold 'classes: [background, name1, ...]' (label 0 first). "
            f"Expected:\n{LAYOUT}"
        )
    unknown = sorted(set(data) - {"classes", "ignore_index", "splits"})
    if unknown:
        raise DataError(
            f"{path}: unknown key(s) {unknown}; valid keys: classes, ignore_index, splits"
        )
    names = tuple(str(c) for c in classes)
    ignore = data.get("ignore_index", IGNORE_LABEL)
    if not isinstance(ignore, int) or not len(names) <= ignore <= 255:
        raise DataError(
            f"{path}: ignore_index must be an integer in {len(names)}..255 (above every class "
            f"id, within 8 bits), got {ignore!r}"
        )
    splits = data.get("splits")
    if splits is not None and not isinstance(splits, dict):
        raise DataError(
            f"{path}: 'splits' must map train/test to lists of image ids, got {splits!r}"
        )
    return names, ignore, splits


def split_ids(root: Path, split: str, splits: dict[str, Any] | None) -> tuple[list[str], str]:
    """Image ids of ``split`` and where they were listed."""
    if splits is not None:
        ids = splits.get(split)
        where = f"{root / 'classes.yaml'} (splits.{split})"
        if not isinstance(ids, list):
            raise DataError(f"{where} must be a list of image ids, got {ids!r}")
        return [str(i) for i in ids], where
    list_file = root / f"{split}.txt"
    if not list_file.is_file():
        raise DataError(
            f"folder dataset {root} has no {split} split: add 'splits: {{{split}: [...]}}' to "
            f"classes.yaml or write {list_file} with one image id per line. Expected layout:\n"
            f"{LAYOUT}"
        )
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    return ids, str(list_file)


def list_split(root: Path, split: str) -> Listing:
    images_dir, masks_dir = root / "images", root / "masks"
    require_dir(images_dir, "folder dataset images", LAYOUT)
    require_dir(masks_dir, "folder dataset masks", LAYOUT)
    classes, ignore, splits = read_classes(root)
    by_stem: dict[str, Path] = {}
    for name in sorted(os.listdir(images_dir)):
        path = images_dir / name
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in by_stem:
                raise DataError(
                    f"two images share the id {path.stem!r}: {by_stem[path.stem]} and {path}; "
                    f"rename one"
                )
            by_stem[path.stem] = path
    ids, where = split_ids(root, split, splits)
    unknown = [i for i in ids if i not in by_stem]
    if unknown:
        raise DataError(
            f"{where} lists {len(unknown)} id(s) with no image in {images_dir}, e.g. "
            f"{unknown[:5]}; images must be named <id>{'|'.join(IMAGE_SUFFIXES)}"
        )
    labels = [os.path.join(masks_dir, f"{i}.png") for i in ids]
    check_masks_exist(ids, labels, where)
    images = [str(by_stem[i]) for i in ids]
    return Listing("folder", split, ids, images, labels, len(classes), ignore, classes)


def class_names(root: Path | None) -> tuple[str, ...]:
    if root is None:
        raise ConfigError("the folder dataset needs data.root to read its classes.yaml")
    return read_classes(root)[0]

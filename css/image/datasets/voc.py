"""Pascal VOC 2012 with SegmentationClassAug: labels 0 background, 1..20 classes, 255 ignore.

Train is ``list/train_aug.txt``, test ``list/val.txt``, in list order.
"""

from __future__ import annotations

import os
from pathlib import Path

from css.errors import DataError
from css.image.datasets.listing import (IGNORE_LABEL, Listing, check_images_exist, check_masks_exist, require_dir,
                                        require_file)
from css.tasks.tables import VOC_CLASSES

CLASS_NAMES = VOC_CLASSES

LAYOUT = """\
<root>/PascalVOC2012/                 (or pass the PascalVOC2012 folder itself as root)
    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    SegmentationClassAug/<id>.png     (labels 0..20, 255 = ignore)
    list/train_aug.txt                (train split)
    list/val.txt                      (test split)
  each list line: "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"
  scripts/data/prepare_voc.sh <root> downloads and prepares this layout: Pascal VOC 2012 from
  http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and the SegmentationClassAug labels (VOC 2012
  completed with SBD, http://home.bharathh.info/pubs/codes/SBD/download.html)."""


def voc_root(root: Path) -> Path:
    """The PascalVOC2012 folder: root/PascalVOC2012, or root itself when it has that layout."""
    nested = root / "PascalVOC2012"
    if nested.is_dir():
        return nested
    if (root / "list").is_dir() and (root / "SegmentationClassAug").is_dir():
        return root
    raise DataError(f"no Pascal VOC 2012 data under {root}. Expected layout:\n{LAYOUT}")


def parse_list(path: Path) -> list[tuple[str, str]]:
    """(image, label) relative paths of a VOC list file.

    The reference drops the last character of every line (assuming a newline,
    docs/protocol-2d.md#datasets-on-disk); stripping whitespace gives the same pairs for well-formed
    files and also accepts a last line without a newline or Windows line endings.
    """
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split()
        if len(parts) != 2:
            raise DataError(
                f"{path}, line {number}: expected '<image path> <label path>', e.g. "
                f"'/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png', got {line!r}"
            )
        pairs.append((parts[0].lstrip("/"), parts[1].lstrip("/")))
    return pairs


def list_split(root: Path, split: str) -> Listing:
    voc = voc_root(root)
    list_file = voc / "list" / ("train_aug.txt" if split == "train" else "val.txt")
    require_file(list_file, f"VOC {split} list", LAYOUT)
    images_dir = voc / "VOCdevkit" / "VOC2012"
    pairs = parse_list(list_file)
    images = [os.path.join(images_dir, image) for image, _ in pairs]
    labels = [os.path.join(voc, label) for _, label in pairs]
    ids = [os.path.splitext(os.path.basename(image))[0] for image, _ in pairs]
    require_dir(images_dir / "JPEGImages", "VOC image folder", LAYOUT)
    require_dir(voc / "SegmentationClassAug", "VOC label folder", LAYOUT)
    check_images_exist(images, str(list_file))
    check_masks_exist(ids, labels, str(list_file))
    return Listing("voc", split, ids, images, labels, len(CLASS_NAMES), IGNORE_LABEL, CLASS_NAMES)


def class_names(root: Path | None = None) -> tuple[str, ...]:
    return CLASS_NAMES

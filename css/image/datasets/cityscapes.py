"""Cityscapes as a domain-incremental dataset (docs/datasets.md#cityscapes-domains): every image's
domain is its city, and the train and val cities are pooled into one list that the task cuts into
train and test items (css.tasks.domain). Label files are the ``gtFine`` labelIds, read as the 19 train
ids (every other id ignored, 255).

Both splits list the same images: train cities first, then val cities, each in sorted path order
(the published listing), so that the published shuffle picks the same images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from css.errors import DataError
from css.image.datasets.listing import IGNORE_LABEL, Listing, check_masks_exist, require_dir
from css.tasks.tables import CITYSCAPES_CITIES, CITYSCAPES_CLASSES

CLASS_NAMES = CITYSCAPES_CLASSES

LAYOUT = """\
<root>/
    leftImg8bit/train/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    leftImg8bit/val/<city>/...
    gtFine/train/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    gtFine/val/<city>/...
  the 21 cities of the train and val splits (test cities have no labels); both splits are pooled
  and cut per step by the task. Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip
  from https://www.cityscapes-dataset.com/ (an account is needed) and unzip both into <root>."""

# Cityscapes labelId -> train id (the 19 evaluated classes; every other id is ignored)
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
IMAGE_SUFFIX = "leftImg8bit.png"
LABEL_SUFFIX = "gtFine_labelIds.png"


def label_table() -> np.ndarray:
    table = np.full(256, IGNORE_LABEL, dtype=np.int64)
    for label_id, train_id in TRAIN_IDS.items():
        table[label_id] = train_id
    return table


def list_split(root: Path, split: str) -> Listing:
    """Every labelled image, train cities then val cities (``split`` does not change the list)."""
    images, labels, ids, domains = [], [], [], []
    for sub in ("train", "val"):
        image_dir = root / "leftImg8bit" / sub
        require_dir(image_dir, f"Cityscapes {sub} images", LAYOUT)
        require_dir(root / "gtFine" / sub, f"Cityscapes {sub} labels", LAYOUT)
        found = sorted(str(p) for p in image_dir.glob("*/*.png"))
        for path in found:
            city = Path(path).parent.name
            if city not in CITYSCAPES_CITIES:
                raise DataError(f"{Path(path).parent} is not one of the 21 Cityscapes train/val cities "
                                f"({', '.join(CITYSCAPES_CITIES)}): remove it, or the test-city images (they have no "
                                f"labels)")
            name = os.path.basename(path)
            if not name.endswith(IMAGE_SUFFIX):
                raise DataError(f"{path}: Cityscapes image names end in '{IMAGE_SUFFIX}'. Expected layout:\n{LAYOUT}")
            stem = name[: -len(IMAGE_SUFFIX)]
            images.append(path)
            labels.append(str(root / "gtFine" / sub / city / f"{stem}{LABEL_SUFFIX}"))
            ids.append(f"{sub}/{city}/{stem.rstrip('_')}")
            domains.append(CITYSCAPES_CITIES.index(city))
    if not images:
        raise DataError(f"no Cityscapes images under {root / 'leftImg8bit'}. Expected layout:\n{LAYOUT}")
    check_masks_exist(ids, labels, str(root / "leftImg8bit"))
    return Listing("cityscapes_domain", split, ids, images, labels, len(CLASS_NAMES), IGNORE_LABEL, CLASS_NAMES,
                   label_table=label_table(), domains=domains)


def class_names(root: Path | None = None) -> tuple[str, ...]:
    return CLASS_NAMES

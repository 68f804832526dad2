"""ADE20k SceneParsing (ADEChallengeData2016): labels 0 void/other (trained as background),
1..150 classes, no shift. A 255 pixel is accepted as ignore (the task maps it to background at
train time). Train is ``training``, test ``validation``, in sorted file order, as the reference
lists them.
"""

from __future__ import annotations

import os
from pathlib import Path

from css.image.datasets.listing import IGNORE_LABEL, Listing, check_masks_exist, require_dir
from css.tasks.tables import ADE_CLASSES

CLASS_NAMES = ADE_CLASSES

LAYOUT = """\
<root>/ADEChallengeData2016/
    images/training/<id>.jpg          annotations/training/<id>.png     (train split)
    images/validation/<id>.jpg        annotations/validation/<id>.png   (test split)
  labels 0..150 (0 = void/other); scripts/data/prepare_ade20k.sh <root> downloads it (ADE20k,
  the SceneParsing release of MIT CSAIL, http://sceneparsing.csail.mit.edu/)."""


def list_split(root: Path, split: str) -> Listing:
    ade = root / "ADEChallengeData2016"
    if not ade.is_dir() and (root / "images").is_dir() and (root / "annotations").is_dir():
        ade = root  # the ADEChallengeData2016 folder itself
    sub = "training" if split == "train" else "validation"
    images_dir, labels_dir = ade / "images" / sub, ade / "annotations" / sub
    require_dir(images_dir, f"ADE20k {split} images", LAYOUT)
    require_dir(labels_dir, f"ADE20k {split} annotations", LAYOUT)
    # sorted(os.listdir) order; images and labels are paired by file stem
    # (docs/protocol-2d.md#datasets-on-disk).
    names = sorted(n for n in os.listdir(images_dir) if n.lower().endswith(".jpg"))
    ids = [os.path.splitext(n)[0] for n in names]
    labels = [os.path.join(labels_dir, f"{i}.png") for i in ids]
    check_masks_exist(ids, labels, str(images_dir))
    return Listing(
        "ade", split, ids, [os.path.join(images_dir, n) for n in names], labels, len(CLASS_NAMES),
        IGNORE_LABEL, CLASS_NAMES,
    )


def class_names(root: Path | None = None) -> tuple[str, ...]:
    return CLASS_NAMES

"""Tiny image datasets written in the real on-disk layouts (docs/protocol-2d.md#datasets-on-disk), for
the data tests.

Label maps are random class rectangles on background, each outlined by a 1-pixel 255 border as in
VOC's SegmentationClassAug. Every generator returns the label maps it wrote, keyed by image id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def random_label_map(
    rng: np.random.Generator,
    height: int,
    width: int,
    labels: Sequence[int],
    *,
    max_objects: int = 3,
    border: int | None = 255,
    first: int | None = None,
) -> np.ndarray:
    """A uint8 label map: background 0 and 1..max_objects rectangles of labels drawn from ``labels``
    (the first rectangle, drawn underneath the others, has label ``first`` when given)."""
    out = np.zeros((height, width), dtype=np.uint8)
    for n in range(rng.integers(1, max_objects + 1)):
        h, w = rng.integers(4, height // 2 + 1), rng.integers(4, width // 2 + 1)
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        if border is not None:
            out[top:top + h, left:left + w] = border
        label = first if (n == 0 and first is not None) else rng.choice(labels)
        out[top + 1:top + h - 1, left + 1:left + w - 1] = label
    return out


def write_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def write_jpg(path: Path, rng: np.random.Generator, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)


def make_voc(
    root: Path,
    *,
    num_train: int = 30,
    num_val: int = 20,
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """root/PascalVOC2012 with list/train_aug.txt and list/val.txt in the reference line format.

    Image n shows class (n mod 20) + 1 (so with 20+ images per split every class appears) plus
    random classes from 1..15, 16..20 or 1..20, so that steps have images with and without
    old and future classes.
    """
    rng = np.random.default_rng(seed)
    voc = root / "PascalVOC2012"
    masks: dict[str, np.ndarray] = {}
    groups = [list(range(1, 16)), list(range(16, 21)), list(range(1, 21))]
    for split, count, list_name in (("train", num_train, "train_aug.txt"), ("val", num_val, "val.txt")):
        lines = []
        for n in range(count):
            image_id = f"2007_{split}{n:04d}"
            labels = random_label_map(rng, *size, groups[n % 3], first=n % 20 + 1)
            write_jpg(voc / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{image_id}.jpg", rng, *size)
            write_png(voc / "SegmentationClassAug" / f"{image_id}.png", labels)
            lines.append(f"/JPEGImages/{image_id}.jpg /SegmentationClassAug/{image_id}.png\n")
            masks[image_id] = labels
        (voc / "list").mkdir(parents=True, exist_ok=True)
        (voc / "list" / list_name).write_text("".join(lines))
    return masks


def make_ade(
    root: Path,
    *,
    num_train: int = 20,
    num_val: int = 10,
    size: tuple[int, int] = (24, 32),
    seed: int = 1,
) -> dict[str, np.ndarray]:
    """root/ADEChallengeData2016 with images/ and annotations/ (labels 0..150, no 255)."""
    rng = np.random.default_rng(seed)
    ade = root / "ADEChallengeData2016"
    masks: dict[str, np.ndarray] = {}
    groups = [[1, 7, 50, 100], [101, 120, 150], [3, 100, 101, 140]]
    for split, count in (("training", num_train), ("validation", num_val)):
        # written in reverse so that the listing order (sorted names) differs from creation order
        for n in reversed(range(count)):
            image_id = f"ADE_{split}_{n:08d}"
            labels = random_label_map(rng, *size, groups[n % 3], border=None)
            labels[0, :] = 0  # ADE void/other label 0
            write_jpg(ade / "images" / split / f"{image_id}.jpg", rng, *size)
            write_png(ade / "annotations" / split / f"{image_id}.png", labels)
            masks[image_id] = labels
    return masks


def make_folder(
    root: Path,
    *,
    classes: Sequence[str] = ("background", "cat", "dog", "bird"),
    train: int = 8,
    test: int = 4,
    ignore_index: int | None = None,
    split_files: bool = False,
    size: tuple[int, int] = (20, 28),
    seed: int = 2,
) -> dict[str, np.ndarray]:
    """A user folder dataset: images/, masks/, classes.yaml and the splits (in YAML or .txt)."""
    rng = np.random.default_rng(seed)
    masks: dict[str, np.ndarray] = {}
    ids = {"train": [f"tr{n}" for n in range(train)], "test": [f"te{n}" for n in range(test)]}
    border = 255 if ignore_index is None else ignore_index
    for image_id in ids["train"] + ids["test"]:
        labels = random_label_map(rng, *size, range(1, len(classes)), border=border)
        write_jpg(root / "images" / f"{image_id}.jpg", rng, *size)
        write_png(root / "masks" / f"{image_id}.png", labels)
        masks[image_id] = labels
    lines = [f"classes: [{', '.join(classes)}]"]
    if ignore_index is not None:
        lines.append(f"ignore_index: {ignore_index}")
    if split_files:
        for split, names in ids.items():
            (root / f"{split}.txt").write_text("\n".join(names) + "\n")
    else:
        lines.append("splits:")
        lines += [f"  {split}: [{', '.join(names)}]" for split, names in ids.items()]
    (root / "classes.yaml").write_text("\n".join(lines) + "\n")
    return masks


# Cityscapes labelIds the tiny tree draws from: unlabeled 0, road 7, person 24, car 26, bicycle 33
CITYSCAPES_IDS = (0, 7, 24, 26, 33)


def make_cityscapes(root: Path, cities: dict[str, tuple[str, int]], *, size: tuple[int, int] = (24, 48),
                    seed: int = 3) -> dict[str, np.ndarray]:
    """A Cityscapes tree: ``cities`` maps a city to (its split folder, "train" or "val", and its number
    of images). Returns the labelIds map of every image, keyed by its image path."""
    rng = np.random.default_rng(seed)
    masks: dict[str, np.ndarray] = {}
    for city, (split, count) in cities.items():
        # frames written in reverse so that the listing order (sorted paths) differs from creation order
        for n in reversed(range(count)):
            stem = f"{city}_{n:06d}_000019_"
            labels = np.full(size, 7, dtype=np.uint8)  # road everywhere, then objects
            labels[: size[0] // 3] = CITYSCAPES_IDS[n % 2 * 4]  # sky band: unlabeled or bicycle
            labels[size[0] // 2:, : size[1] // 3] = rng.choice(CITYSCAPES_IDS[2:])
            image = root / "leftImg8bit" / split / city / f"{stem}leftImg8bit.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(image)
            write_png(root / "gtFine" / split / city / f"{stem}gtFine_labelIds.png", labels)
            masks[str(image)] = labels
    return masks

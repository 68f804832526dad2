"""Tiny prepared point-cloud splits written with the real writer (css.pointcloud.store.write_split).

Every block is hand-made from a table {label: points}: the labels are repeated, shuffled and given
random coordinates inside a 1 m tile of a scene (full height, min corner not at the origin) and
random colours, so the tests can derive every step's block set and label map by hand from the
tables below. The presence rule (docs/pointcloud-datasets.md#selection): a block shows label l
when count > max(int(0.05 * size), 100).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from css.pointcloud.store import write_split
from css.tasks.tables import S3DIS_CLASSES, SCANNET_CLASSES

# S3DIS-like train blocks (task [[0, 1, 2], [3], [4, 5]] in the tests); 255 = ignored points.
S3DIS_TRAIN = [
    {0: 1899, 3: 101},                 # size 2000, limit 100: 3 shown (101 > 100)
    {1: 1900, 3: 100},                 # 3 exactly at the limit: not shown
    {2: 3500, 4: 201, 12: 299},        # size 4000, limit 200: 4 shown, 12 shown
    {3: 3800, 4: 200},                 # 4 exactly at the limit 200: not shown
    {5: 1100, 7: 300, 255: 100},       # size 1500 (ignored points count in the size)
    {0: 60, 1: 60, 2: 60, 9: 1020},    # step-0 classes below the 100-point floor: only 9 shown
]
S3DIS_TEST = [
    {0: 1000, 4: 500},
    {7: 1000},                         # no class of the task: still a test block
    {3: 50, 5: 1000, 255: 20},
]

# ScanNet-like blocks, two label sets (task [[1, 2], [3, 17]] in the tests). "fixed" relabels
# some unannotated (0) points as 17 (refrigerator), which the reference set leaves empty.
SCANNET_TRAIN = [
    ({0: 300, 1: 1200, 3: 500}, {0: 150, 17: 150}),   # fixed: 150 of the 300 unannotated -> 17
    ({0: 1000, 2: 1000}, {0: 800, 17: 200}),          # 17 shown only under "fixed"
    ({0: 1900, 4: 100}, {}),                          # no task class shown
]
SCANNET_TEST = [
    ({0: 500, 1: 500, 3: 200}, {0: 300, 17: 200}),
]


def block_labels(table: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    labels = np.concatenate([np.full(n, label, dtype=np.int64) for label, n in table.items()])
    return labels[rng.permutation(len(labels))]


def _fixed_labels(reference: np.ndarray, changes: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    """The reference labels with some unannotated points relabelled as in ``changes``
    ({0: unannotated kept, 17: relabelled})."""
    fixed = reference.copy()
    if 17 in changes:
        zeros = np.flatnonzero(reference == 0)
        fixed[rng.choice(zeros, changes[17], replace=False)] = 17
    return fixed


def _geometry(n: int, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    origin = (float(index % 3), float(index // 3))
    coord = np.column_stack([origin[0] + rng.random(n), origin[1] + rng.random(n), 0.2 + 2.5 * rng.random(n)])
    color = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    return coord.astype(np.float32), color, origin


def _write(path: Path, dataset: str, split: str, class_names, blocks: list[dict], label_sets, attrs=None) -> None:
    write_split(path, blocks, dataset=dataset, split=split, class_names=list(class_names), block_size=1.0,
                stride=1.0, min_points=0, label_sets=label_sets, attrs=attrs)


def make_s3dis(root: Path, *, seed: int = 0) -> dict[str, list[dict]]:
    """``root/train.h5`` and ``root/test.h5`` of S3DIS_TRAIN / S3DIS_TEST; returns the written
    blocks per split (coord, color, labels["reference"], ...)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, tables in (("train", S3DIS_TRAIN), ("test", S3DIS_TEST)):
        blocks = []
        for i, table in enumerate(tables):
            labels = block_labels(table, rng)
            coord, color, origin = _geometry(len(labels), i, rng)
            scene = f"Area_{5 if split == 'test' else 1}_room_{i // 3}"
            blocks.append({"coord": coord, "color": color, "labels": {"reference": labels},
                           "block_id": f"{scene}_block_{i % 3}", "scene": scene, "origin": origin})
        _write(root / f"{split}.h5", "s3dis", split, S3DIS_CLASSES, blocks, ("reference",))
        written[split] = blocks
    return written


def make_scannet(root: Path, *, seed: int = 1) -> dict[str, list[dict]]:
    """ScanNet-like splits with label sets "reference" and "fixed"."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, tables in (("train", SCANNET_TRAIN), ("test", SCANNET_TEST)):
        blocks = []
        for i, (table, changes) in enumerate(tables):
            reference = block_labels(table, rng)
            fixed = _fixed_labels(reference, changes, rng)
            coord, color, origin = _geometry(len(reference), i, rng)
            scene = f"scene{i:04d}_00"
            blocks.append({"coord": coord, "color": color, "labels": {"reference": reference, "fixed": fixed},
                           "block_id": f"{scene}_block_0", "scene": scene, "origin": origin})
        _write(root / f"{split}.h5", "scannet", split, SCANNET_CLASSES, blocks, ("reference", "fixed"))
        written[split] = blocks
    return written


FOLDER_CLASSES = ("clutter", "chair", "table", "lamp")


def make_folder(root: Path, *, background: int | None = 0, seed: int = 2) -> dict[str, list[dict]]:
    """A user dataset of 4 classes; ``background`` is stored as the attr (None: -1)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, tables in (("train", [{0: 900, 1: 600, 2: 500}, {0: 1500, 3: 500}]), ("test", [{0: 800, 2: 400}])):
        blocks = []
        for i, table in enumerate(tables):
            labels = block_labels(table, rng)
            coord, color, origin = _geometry(len(labels), i, rng)
            blocks.append({"coord": coord, "color": color, "labels": {"reference": labels},
                           "block_id": f"{split}{i}_block_0", "scene": f"{split}{i}", "origin": origin})
        _write(root / f"{split}.h5", "myrooms", split, FOLDER_CLASSES, blocks, ("reference",),
               attrs={"background": -1 if background is None else background})
        written[split] = blocks
    return written

"""Prepared point-cloud blocks: one HDF5 file per split (docs/pointcloud-data.md#format).

A split file ``<prepared>/<split>.h5`` holds every block of every scene of the split, their
points concatenated, so that a run opens one file instead of tens of thousands of ``.npy`` files:

    attrs   format="css-blocks", version, dataset, split, block_size, stride, min_points,
            class_names (JSON list, index = dataset label), label_sets (JSON list), ignore_label
    coord   (P, 3) float32   scene coordinates in metres, the scene's minimum corner at 0
    color   (P, 3) uint8     RGB 0-255 (0 when the source has no colour)
    label   (P,) int16       dataset label of every point (ignore_label = not annotated)
    label_<set>  (P,) int16  another label set, e.g. label_fixed for ScanNet (optional)
    nyu40   (P,) uint8       extra per-point arrays a source keeps (optional)
    offsets (B + 1,) int64   points of block b are offsets[b]:offsets[b + 1]
    counts  (B, L) int64     points of each dataset label per block (one per label set:
                             counts, counts_<set>)
    block_ids (B,) str       "<scene>_block_<i>", i counting the kept blocks of the scene
    scene   (B,) str         scene (room) name
    origin  (B, 2) float32   the block's (x, y) corner in scene coordinates

Whole scenes (docs/pointcloud-data.md#whole-scenes) are kept in ``<split>_scenes.h5`` in the same
layout, one "block" per scene: block id = scene name, origin 0, every point of the scene once,
attribute ``unit = "scene"`` (block_size, stride and min_points 0).

The reader opens the file lazily in each process (h5py handles do not survive a fork), so a
``BlockStore`` can be handed to DataLoader workers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from css.errors import DataError, require

FORMAT = "css-blocks"
VERSION = 1
IGNORE_LABEL = 255
_CHUNK = 1 << 16
_FLUSH_POINTS = 1 << 20


def scene_file(split: str) -> str:
    """The name of a split's whole-scene file beside its block file."""
    return f"{split}_scenes.h5"


def _h5py():
    return require("h5py", needed_for="prepared point clouds (HDF5)", install="pip install h5py")


def _suffix(label_set: str) -> str:
    return "" if label_set == "reference" else f"_{label_set}"


def write_split(path: str | os.PathLike, blocks: Iterable[dict[str, Any]], *, dataset: str, split: str,
                class_names: list[str], block_size: float, stride: float, min_points: int,
                label_sets: tuple[str, ...] = ("reference",), extra: tuple[str, ...] = (),
                attrs: dict[str, Any] | None = None, num_points: int | None = None) -> int:
    """Write the blocks of one split to ``path`` atomically (a temporary file, then a rename).

    Each block is a dict: ``coord`` (n, 3), ``color`` (n, 3) uint8, ``labels`` {set: (n,) int},
    one entry per name in ``label_sets`` ("reference" is stored as ``label``), optional arrays
    named in ``extra``, ``block_id``, ``scene`` and ``origin`` (x, y). Returns the block count.

    ``num_points``, the total number of points when known in advance, makes the point arrays
    contiguous rather than chunked: a random block is then one read of exactly its bytes, about
    twice as fast as from 64 K-row chunks (benchmarks/bench_pc_data.py). Readers see no difference.
    The files carry no timestamps (h5py's default), so the same blocks give the same bytes.
    """
    h5py = _h5py()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    num_labels = len(class_names)
    if "reference" not in label_sets:
        raise ValueError("label_sets must include 'reference' (stored as 'label')")
    offsets, ids, scenes, origins = [0], [], [], []
    counts: dict[str, list[np.ndarray]] = {s: [] for s in label_sets}
    try:
        with h5py.File(tmp, "w") as f:
            def grow(name: str, shape: tuple[int, ...], dtype) -> Any:
                if num_points is not None:
                    return f.create_dataset(name, shape=(num_points, *shape), dtype=dtype)
                return f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                        chunks=(_CHUNK, *shape))

            names = ["coord", "color", *("label" + _suffix(s) for s in label_sets), *extra]
            datasets = dict(zip(names, [grow("coord", (3,), "f4"), grow("color", (3,), "u1"),
                                        *(grow("label" + _suffix(s), (), "i2") for s in label_sets),
                                        *(grow(name, (), "u1") for name in extra)]))
            pending: dict[str, list[np.ndarray]] = {name: [] for name in names}
            written = 0

            def flush() -> None:
                # Blocks are buffered and written ~1 M points at a time: one resize and one write
                # per dataset instead of one per block (thousands of small HDF5 writes are slow).
                nonlocal written
                if not pending["coord"]:
                    return
                for name, parts in pending.items():
                    values = np.concatenate(parts)
                    ds = datasets[name]
                    if num_points is None:
                        ds.resize(written + len(values), axis=0)
                    elif written + len(values) > num_points:
                        raise ValueError(f"the blocks hold more than num_points={num_points} points")
                    ds[written:written + len(values)] = values
                    parts.clear()
                written = offsets[-1]

            for block in blocks:
                n = len(block["coord"])
                pending["coord"].append(np.asarray(block["coord"], dtype=np.float32).reshape(n, 3))
                pending["color"].append(np.asarray(block["color"], dtype=np.uint8).reshape(n, 3))
                for s in label_sets:
                    lab = np.asarray(block["labels"][s], dtype=np.int64)
                    if len(lab) != n:
                        raise ValueError(f"block {block['block_id']}: {len(lab)} {s} labels for {n} points")
                    pending["label" + _suffix(s)].append(lab.astype(np.int16))
                    valid = lab[(lab >= 0) & (lab < num_labels)]
                    counts[s].append(np.bincount(valid, minlength=num_labels).astype(np.int64))
                for name in extra:
                    values = np.asarray(block[name], dtype=np.uint8)
                    if len(values) != n:
                        raise ValueError(f"block {block['block_id']}: {len(values)} {name} values for {n} points")
                    pending[name].append(values)
                offsets.append(offsets[-1] + n)
                ids.append(block["block_id"])
                scenes.append(block["scene"])
                origins.append(np.asarray(block["origin"], dtype=np.float32)[:2])
                if offsets[-1] - written >= _FLUSH_POINTS:
                    flush()
            flush()
            if num_points is not None and offsets[-1] != num_points:
                raise ValueError(f"the blocks hold {offsets[-1]} points, not num_points={num_points}")
            f["offsets"] = np.asarray(offsets, dtype=np.int64)
            for s in label_sets:
                f["counts" + _suffix(s)] = (np.stack(counts[s]) if counts[s]
                                            else np.zeros((0, num_labels), np.int64))
            text = h5py.string_dtype()
            f.create_dataset("block_ids", data=np.asarray(ids, dtype=object), dtype=text)
            f.create_dataset("scene", data=np.asarray(scenes, dtype=object), dtype=text)
            f["origin"] = np.stack(origins) if origins else np.zeros((0, 2), np.float32)
            meta = dict(format=FORMAT, version=VERSION, dataset=dataset, split=split,
                        class_names=json.dumps(list(class_names)), label_sets=json.dumps(list(label_sets)),
                        block_size=float(block_size), stride=float(stride), min_points=int(min_points),
                        ignore_label=IGNORE_LABEL)
            meta.update(attrs or {})
            for key, value in meta.items():
                f.attrs[key] = value
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(ids)


class BlockStore:
    """Read access to one prepared split file (see the module docstring).

    Metadata (ids, scenes, offsets, counts) is read once; point arrays are read per block.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        h5py = _h5py()
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"prepared split {self.path} does not exist; run python -m css.pointcloud.prepare "
                            f"(docs/pointcloud-data.md) or check data.root")
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise DataError(f"{self.path} is not a css prepared split (attribute format != {FORMAT!r}); "
                                    f"prepare the data with python -m css.pointcloud.prepare")
                if int(f.attrs.get("version", 0)) != VERSION:
                    raise DataError(f"{self.path} has format version {f.attrs.get('version')}, this css reads "
                                    f"{VERSION}; prepare the data again")
                self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
                self.class_names = tuple(json.loads(self.attrs["class_names"]))
                self.label_sets = tuple(json.loads(self.attrs["label_sets"]))
                self.offsets = f["offsets"][()]
                self.ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["block_ids"][()]]
                self.scenes = [s.decode() if isinstance(s, bytes) else str(s) for s in f["scene"][()]]
                self.origin = f["origin"][()]
                self._counts = {s: f["counts" + _suffix(s)][()] for s in self.label_sets}
                self.extra = tuple(k for k in f.keys() if k not in _KNOWN and not k.startswith("label")
                                   and not k.startswith("counts"))
                self._check_index(len(f["coord"]))
        except OSError as exc:  # truncated (a copy cut short, a full disk) or not an HDF5 file
            raise DataError(f"prepared split {self.path} cannot be read ({exc}): it is truncated or corrupt; "
                            f"prepare it again with python -m css.pointcloud.prepare (docs/pointcloud-data.md), "
                            f"or copy it again") from exc
        except (KeyError, ValueError) as exc:  # a dataset or attribute is missing or unreadable
            raise DataError(f"prepared split {self.path} lacks or cannot read {exc}: it is incomplete or was not "
                            f"written by css; prepare it again with python -m css.pointcloud.prepare") from exc
        self._file = None
        self._pid = None
        self._datasets: dict[str, Any] = {}

    def _check_index(self, points: int) -> None:
        """The block index must describe the point arrays: a split whose index and points disagree
        (written by a crashed or foreign tool) would hand out wrong blocks without an error."""
        blocks = len(self.offsets) - 1
        sizes = {"block_ids": len(self.ids), "scene": len(self.scenes), "origin": len(self.origin),
                 **{"counts" + _suffix(s): len(c) for s, c in self._counts.items()}}
        wrong = {k: v for k, v in sizes.items() if v != blocks}
        steps = np.diff(self.offsets)
        if blocks < 0 or wrong or (blocks and (self.offsets[0] != 0 or (steps < 0).any()
                                               or self.offsets[-1] != points)):
            raise DataError(f"prepared split {self.path} has an inconsistent block index ({max(blocks, 0)} blocks "
                            f"by offsets, ending at point {self.offsets[-1] if len(self.offsets) else None} of "
                            f"{points}; other lengths {wrong or 'agree'}); it is damaged: prepare it again with "
                            f"python -m css.pointcloud.prepare")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def counts(self, label_set: str = "reference") -> np.ndarray:
        self._check_set(label_set)
        return self._counts[label_set]

    def _check_set(self, label_set: str) -> None:
        if label_set not in self.label_sets:
            raise DataError(f"{self.path} has no label set {label_set!r} (it has {list(self.label_sets)}); "
                            f"prepare the data again with this css")

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = _h5py().File(self.path, "r")
            self._pid = os.getpid()
            self._datasets = {}
        return self._file

    def _dataset(self, name: str):
        # looking a dataset up by name costs about as much as reading a small block: keep them
        f = self._handle()
        ds = self._datasets.get(name)
        if ds is None:
            ds = self._datasets[name] = f[name]
        return ds

    def block(self, index: int, label_set: str = "reference") -> dict[str, np.ndarray]:
        """coord (n, 3) float32, color (n, 3) uint8, label (n,) int64 of block ``index``."""
        self._check_set(label_set)
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        try:
            return {"coord": self._dataset("coord")[a:b], "color": self._dataset("color")[a:b],
                    "label": self._dataset("label" + _suffix(label_set))[a:b].astype(np.int64)}
        except (OSError, KeyError) as exc:  # the file changed or was damaged after it was opened
            raise DataError(f"prepared split {self.path}: block {index} ({self.ids[index]}) cannot be read ({exc}); "
                            f"the file is damaged: prepare it again with python -m css.pointcloud.prepare") from exc

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"], state["_datasets"] = None, None, {}
        return state


_KNOWN = {"coord", "color", "offsets", "block_ids", "scene", "origin"}

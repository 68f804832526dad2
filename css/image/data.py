"""Image segmentation datasets (VOC, ADE20k, a user folder, synthetic scenes) and their filters.

``build_dataset`` returns the images of one task step and split, in the dataset's own order,
filtered by ``Task.keep`` (spec 2d §6.2-6.3) and with targets remapped by ``Task.remap`` after the
spatial transform (spec 2d §5.2, §10.12).

Filtering needs the labels present in every image. They are computed once per split from the
label files -- a per-image histogram of label values, read in parallel -- and cached on disk in
an ``.npz`` keyed by a hash of the dataset name, the absolute label file paths and each file's
size and mtime. The reference keyed its caches by task/step under a relative path and reused them
whatever data they described (spec 2d §10.11, design.md); here any change to the file list or to
one file gives a new key and a fresh scan. Every step's subset is then derived in memory.

Labels (dataset label ids, what the PNG pixels hold):
- voc: 0 background, 1..20 classes, 255 boundary/void (ignored). 21 labels.
- ade: 0 void/other (trained as background), 1..150 classes, no shift. 151 labels. A 255 pixel
  is accepted and treated as ignore (mapped to background at train time by the task).
- folder: 0..len(classes)-1 from ``classes.yaml``; its ``ignore_index`` value is read as 255.
- synthetic: 0 background, 1..num_classes objects, 255 object borders.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from css.errors import ConfigError, DataError, TaskError
from css.image.synthetic import SyntheticScenes
from css.tasks import ADE_CLASSES, VOC_CLASSES, Task, load_task
from css.utils import atomic_write_bytes

log = logging.getLogger(__name__)

IGNORE_LABEL = 255
DATASETS = ("voc", "ade", "folder", "synthetic")
SPLITS = ("train", "test")
_CACHE_VERSION = "css-label-histograms-v1"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

VOC_LAYOUT = """\
<root>/PascalVOC2012/                 (or pass the PascalVOC2012 folder itself as root)
    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    SegmentationClassAug/<id>.png     (labels 0..20, 255 = ignore)
    list/train_aug.txt                (train split)
    list/val.txt                      (test split)
  each list line: "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"
  scripts/data/prepare_voc.sh <root> downloads and prepares this layout."""

ADE_LAYOUT = """\
<root>/ADEChallengeData2016/
    images/training/<id>.jpg          annotations/training/<id>.png     (train split)
    images/validation/<id>.jpg        annotations/validation/<id>.png   (test split)
  labels 0..150 (0 = void/other); scripts/data/prepare_ade20k.sh <root> downloads it."""

FOLDER_LAYOUT = """\
<root>/
    images/<id>.jpg|.jpeg|.png
    masks/<id>.png                    (single-channel class ids, same size as the image)
    classes.yaml                      classes: [background, name1, name2, ...]
                                      ignore_index: 255            (optional)
                                      splits: {train: [ids], test: [ids]}   (optional)
    train.txt, test.txt               (one id per line; used when classes.yaml has no splits)"""

_SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "num_images": {"train": 600, "test": 200},
    "size": 64,
    "num_classes": 8,
    "seed": 0,
    "borders": True,
}


# --- listings: which image and label files make up a split ------------------------------------

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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} is not a folder. Expected layout:\n{layout}")


def _require_file(path: Path, what: str, layout: str) -> None:
    if not path.is_file():
        raise DataError(f"{what} not found: {path} does not exist. Expected layout:\n{layout}")


def _check_images_exist(images: Sequence[str], listed_in: str) -> None:
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DataError(
            f"{len(missing)} image file(s) listed in {listed_in} are missing, e.g. {shown}; "
            f"restore them or remove their entries"
        )


def _check_masks_exist(ids: Sequence[str], labels: Sequence[str], listed_in: str) -> None:
    missing = [(i, p) for i, p in zip(ids, labels) if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(f"image {i!r} -> {p}" for i, p in missing[:5])
        raise DataError(
            f"{len(missing)} image(s) from {listed_in} have no label file: {shown}; every image "
            f"needs a mask (images without one are never skipped silently)"
        )


def _voc_root(root: Path) -> Path:
    """The PascalVOC2012 folder: root/PascalVOC2012, or root itself when it has that layout."""
    nested = root / "PascalVOC2012"
    if nested.is_dir():
        return nested
    if (root / "list").is_dir() and (root / "SegmentationClassAug").is_dir():
        return root
    raise DataError(f"no Pascal VOC 2012 data under {root}. Expected layout:\n{VOC_LAYOUT}")


def _parse_voc_list(path: Path) -> list[tuple[str, str]]:
    """(image, label) relative paths of a VOC list file.

    The reference drops the last character of every line (assuming a newline, spec 2d §7,
    §10.12); stripping whitespace gives the same pairs for well-formed files and also accepts a
    last line without a newline or Windows line endings.
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


def _list_voc(root: Path, split: str) -> Listing:
    voc = _voc_root(root)
    list_file = voc / "list" / ("train_aug.txt" if split == "train" else "val.txt")
    _require_file(list_file, f"VOC {split} list", VOC_LAYOUT)
    images_dir = voc / "VOCdevkit" / "VOC2012"
    pairs = _parse_voc_list(list_file)
    images = [os.path.join(images_dir, image) for image, _ in pairs]
    labels = [os.path.join(voc, label) for _, label in pairs]
    ids = [os.path.splitext(os.path.basename(image))[0] for image, _ in pairs]
    _require_dir(images_dir / "JPEGImages", "VOC image folder", VOC_LAYOUT)
    _require_dir(voc / "SegmentationClassAug", "VOC label folder", VOC_LAYOUT)
    _check_images_exist(images, str(list_file))
    _check_masks_exist(ids, labels, str(list_file))
    return Listing("voc", split, ids, images, labels, len(VOC_CLASSES), IGNORE_LABEL, VOC_CLASSES)


def _list_ade(root: Path, split: str) -> Listing:
    ade = root / "ADEChallengeData2016"
    if not ade.is_dir() and (root / "images").is_dir() and (root / "annotations").is_dir():
        ade = root  # the ADEChallengeData2016 folder itself
    sub = "training" if split == "train" else "validation"
    images_dir, labels_dir = ade / "images" / sub, ade / "annotations" / sub
    _require_dir(images_dir, f"ADE20k {split} images", ADE_LAYOUT)
    _require_dir(labels_dir, f"ADE20k {split} annotations", ADE_LAYOUT)
    # spec 2d §7: sorted(os.listdir) order; images and labels are paired by file stem.
    names = sorted(n for n in os.listdir(images_dir) if n.lower().endswith(".jpg"))
    ids = [os.path.splitext(n)[0] for n in names]
    labels = [os.path.join(labels_dir, f"{i}.png") for i in ids]
    _check_masks_exist(ids, labels, str(images_dir))
    return Listing(
        "ade", split, ids, [os.path.join(images_dir, n) for n in names], labels, len(ADE_CLASSES),
        IGNORE_LABEL, ADE_CLASSES,
    )


def _read_folder_classes(root: Path) -> tuple[tuple[str, ...], int, dict[str, Any] | None]:
    """(class names, ignore value, splits or None) from ``root/classes.yaml``."""
    path = root / "classes.yaml"
    _require_file(path, "folder dataset class list", FOLDER_LAYOUT)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML ({exc}). Expected:\n{FOLDER_LAYOUT}") from exc
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not classes:
        raise DataError(
            f"{path} must hold 'classes: [background, name1, ...]' (label 0 first). "
            f"Expected:\n{FOLDER_LAYOUT}"
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


def _folder_split_ids(
    root: Path, split: str, splits: dict[str, Any] | None
) -> tuple[list[str], str]:
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
            f"{FOLDER_LAYOUT}"
        )
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    return ids, str(list_file)


def _list_folder(root: Path, split: str) -> Listing:
    images_dir, masks_dir = root / "images", root / "masks"
    _require_dir(images_dir, "folder dataset images", FOLDER_LAYOUT)
    _require_dir(masks_dir, "folder dataset masks", FOLDER_LAYOUT)
    classes, ignore, splits = _read_folder_classes(root)
    by_stem: dict[str, Path] = {}
    for name in sorted(os.listdir(images_dir)):
        path = images_dir / name
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            if path.stem in by_stem:
                raise DataError(
                    f"two images share the id {path.stem!r}: {by_stem[path.stem]} and {path}; "
                    f"rename one"
                )
            by_stem[path.stem] = path
    ids, where = _folder_split_ids(root, split, splits)
    unknown = [i for i in ids if i not in by_stem]
    if unknown:
        raise DataError(
            f"{where} lists {len(unknown)} id(s) with no image in {images_dir}, e.g. "
            f"{unknown[:5]}; images must be named <id>{'|'.join(_IMAGE_SUFFIXES)}"
        )
    labels = [os.path.join(masks_dir, f"{i}.png") for i in ids]
    _check_masks_exist(ids, labels, where)
    images = [str(by_stem[i]) for i in ids]
    return Listing("folder", split, ids, images, labels, len(classes), ignore, classes)


_LISTERS: dict[str, Callable[[Path, str], Listing]] = {
    "voc": _list_voc,
    "ade": _list_ade,
    "folder": _list_folder,
}


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(
            f"unknown image dataset {name!r} (data.dataset); valid: {', '.join(DATASETS)}"
        )


def list_split(name: str, root: str | os.PathLike, split: str) -> Listing:
    """Check the on-disk layout of a file-based dataset and list one split's files."""
    _check_name(name)
    _check_split(split)
    if name == "synthetic":
        raise ConfigError("the synthetic dataset has no files to list")
    root = Path(root).expanduser().absolute()
    layout = {"voc": VOC_LAYOUT, "ade": ADE_LAYOUT}.get(name, FOLDER_LAYOUT)
    _require_dir(root, f"{name} dataset root (data.root)", layout)
    return _LISTERS[name](root, split)


# --- synthetic options ------------------------------------------------------------------------

def synthetic_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Synthetic dataset options with defaults filled in and checked (data.options)."""
    merged = dict(_SYNTHETIC_DEFAULTS)
    for key, value in (options or {}).items():
        if key not in _SYNTHETIC_DEFAULTS:
            raise ConfigError(
                f"unknown synthetic dataset option data.options.{key}; "
                f"valid: {', '.join(_SYNTHETIC_DEFAULTS)}"
            )
        merged[key] = value
    count = merged["num_images"]
    if isinstance(count, int):
        count = {split: count for split in SPLITS}
    if not isinstance(count, dict) or set(count) != set(SPLITS) or not all(
        isinstance(v, int) and v > 0 for v in count.values()
    ):
        raise ConfigError(
            f"data.options.num_images must be a positive int or {{train: N, test: M}}, "
            f"got {merged['num_images']!r}"
        )
    merged["num_images"] = dict(count)
    for key, low, high in (("size", 8, 4096), ("num_classes", 1, 254)):
        if not isinstance(merged[key], int) or not low <= merged[key] <= high:
            raise ConfigError(
                f"data.options.{key} must be an int in {low}..{high}, got {merged[key]!r}"
            )
    if not isinstance(merged["seed"], int):
        raise ConfigError(f"data.options.seed must be an int, got {merged['seed']!r}")
    return merged


def _synthetic_scenes(options: dict[str, Any] | None, split: str) -> SyntheticScenes:
    opts = synthetic_options(options)
    return SyntheticScenes(
        opts["num_images"][split], opts["size"], opts["num_classes"], opts["seed"], split,
        opts["borders"],
    )


# --- label names and counts -------------------------------------------------------------------

def dataset_num_labels(
    name: str, root: str | os.PathLike | None = None, options: dict[str, Any] | None = None
) -> int:
    """Number of dataset labels (ids 0..n-1; 255 is ignore): voc 21, ade 151.

    folder: the length of root/classes.yaml's class list; synthetic: options num_classes + 1.
    """
    return len(class_names(name, root, options))


def class_names(
    name: str, root: str | os.PathLike | None = None, options: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """Name of every dataset label, indexed by label id."""
    _check_name(name)
    if name == "voc":
        return VOC_CLASSES
    if name == "ade":
        return ADE_CLASSES
    if name == "synthetic":
        return _synthetic_scenes(options, "train").class_names
    if root is None:
        raise ConfigError("the folder dataset needs data.root to read its classes.yaml")
    return _read_folder_classes(Path(root).expanduser().absolute())[0]


# --- label files: reading and histograms ------------------------------------------------------

def _read_label(path: str) -> np.ndarray:
    """The label ids of one single-channel label PNG as a 2-D integer array."""
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise DataError(
                f"label file {path} has image mode {image.mode}; label files must be "
                f"single-channel PNGs of class ids (mode L or P), not colour-coded images"
            )
        return np.asarray(image)


def _label_histogram(path: str, num_labels: int, ignore_value: int) -> np.ndarray:
    """Pixel count of every label 0..num_labels-1, then of the ignore value (num_labels+1,)."""
    labels = _read_label(path)
    counts = np.bincount(labels.ravel(), minlength=max(num_labels, ignore_value + 1))
    valid = np.zeros(len(counts), dtype=bool)
    valid[:num_labels] = True
    valid[ignore_value] = True
    if counts[~valid].any():
        bad = np.flatnonzero(counts * ~valid).tolist()
        raise DataError(
            f"label file {path} holds values {bad[:10]} outside the dataset's labels "
            f"0..{num_labels - 1} and {ignore_value} (ignore); fix the file or the class list"
        )
    return np.append(counts[:num_labels], counts[ignore_value]).astype(np.int64)


def _scan(listing: Listing) -> np.ndarray:
    """Histograms of all label files of ``listing``, read in parallel (PIL releases the GIL)."""
    workers = min(8, os.cpu_count() or 1)
    log.info(
        "reading %d %s %s label files with %d threads",
        len(listing.labels), listing.name, listing.split, workers,
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(
            pool.map(
                lambda p: _label_histogram(p, listing.num_labels, listing.ignore_value),
                listing.labels,
            )
        )
    hist = np.zeros((len(rows), listing.num_labels + 1), dtype=np.int64)
    if rows:
        hist[:] = np.stack(rows)
    return hist


def cache_key(listing: Listing) -> str:
    """Hash of what the histograms depend on: dataset, label range and every label file's
    absolute path, size and mtime, in order. Any added, removed or modified file changes it."""
    digest = hashlib.sha256()
    header = f"{_CACHE_VERSION}\n{listing.name}\n{listing.num_labels}\n{listing.ignore_value}\n"
    digest.update(header.encode())
    for path in listing.labels:
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def default_cache_dir(root: str | os.PathLike) -> Path:
    """$CSS_CACHE_DIR, else <root>/.css_cache when writable, else ~/.cache/css."""
    env = os.environ.get("CSS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    local = Path(root).expanduser().absolute() / ".css_cache"
    if (local.is_dir() and os.access(local, os.W_OK)) or (
        not local.exists() and os.access(local.parent, os.W_OK)
    ):
        return local
    return Path.home() / ".cache" / "css"


def _cache_file(cache_dir: Path, listing: Listing, key: str) -> Path:
    return cache_dir / f"{listing.name}-{listing.split}-{key[:24]}.npz"


def _load_cache(path: Path, key: str, ids: list[str]) -> np.ndarray | None:
    """The cached histograms if ``path`` holds them for exactly this key and these ids."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key or data["ids"].tolist() != ids:
                return None
            return data["hist"].astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        # an unreadable cache (e.g. truncated by a full disk) is recomputed and overwritten
        log.warning("ignoring unreadable label cache %s (%s)", path, exc)
        return None


def _save_cache(path: Path, key: str, ids: list[str], hist: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, key=np.array(key), ids=np.array(ids, dtype=str), hist=hist)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a read-only cache location only costs a rescan next time
        log.warning(
            "could not write label cache %s (%s); set CSS_CACHE_DIR to a writable folder",
            path, exc,
        )


_SYNTHETIC_HIST: dict[tuple, np.ndarray] = {}


def _synthetic_histograms(scenes: SyntheticScenes) -> np.ndarray:
    """Label histograms of generated scenes, kept in memory per (options, split)."""
    key = (
        len(scenes), scenes.height, scenes.width, scenes.num_classes, scenes.seed, scenes.split,
        scenes.borders,
    )
    if key not in _SYNTHETIC_HIST:
        num = scenes.num_classes + 1
        hist = np.zeros((len(scenes), num + 1), dtype=np.int64)
        for i in range(len(scenes)):
            counts = np.bincount(scenes[i][1].ravel(), minlength=IGNORE_LABEL + 1)
            hist[i, :num] = counts[:num]
            hist[i, num] = counts[IGNORE_LABEL]
        _SYNTHETIC_HIST[key] = hist
    return _SYNTHETIC_HIST[key]


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
    _, ids, hist = _prepare(name, root, split, cache_dir, options)
    return ids, hist


def _histograms_of(listing: Listing, root: Path, cache_dir: str | os.PathLike | None) -> np.ndarray:
    key = cache_key(listing)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(root)
    path = _cache_file(folder, listing, key)
    hist = _load_cache(path, key, listing.ids)
    if hist is None:
        hist = _scan(listing)
        _save_cache(path, key, listing.ids, hist)
    return hist


def class_presence(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[list[str], np.ndarray]:
    """(ids, presence): presence[i, l] is True when image i holds label l (0..num_labels-1)."""
    ids, hist = label_histograms(name, root, split, cache_dir=cache_dir, options=options)
    return ids, hist[:, :-1] > 0


def subset_indices(
    presence: np.ndarray, task: Task, step: int, split: str, overlap: bool = True
) -> np.ndarray:
    """Indices (ascending, i.e. the dataset's order) of the images ``task.keep`` accepts.

    presence[i, l]: image i shows dataset label l. The filter of spec 2d §6.2-6.3 (the rule
    ``Task.keep`` states per image), evaluated for all images at once with column any/all:
    train keeps images showing a current class and, in the disjoint setting, only background,
    seen, ignored or void labels; test keeps images showing a seen class.
    """
    _check_split(split)
    presence = np.asarray(presence, dtype=bool)
    num_labels = presence.shape[1]

    def columns(labels: Sequence[int]) -> list[int]:
        return [label for label in labels if 0 <= label < num_labels]

    wanted = task.current_labels(step) if split == "train" else task.seen_labels(step)
    keep = presence[:, columns(wanted)].any(axis=1)
    if split == "train" and not overlap:
        allowed = {*task.seen_labels(step), task.ignore_index, *task.void_labels}
        if task.background is not None:
            allowed.add(task.background)
        forbidden = [label for label in range(num_labels) if label not in allowed]
        keep &= ~presence[:, forbidden].any(axis=1)
    return np.flatnonzero(keep).astype(np.int64)


# --- the dataset ------------------------------------------------------------------------------

def _load_image(path: str) -> tv_tensors.Image:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


class _FileSource:
    """Reads image i and its label map from disk."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing

    def load(self, index: int) -> tuple[tv_tensors.Image, np.ndarray]:
        image = _load_image(self.listing.images[index])
        labels = _read_label(self.listing.labels[index])
        if labels.shape != tuple(image.shape[-2:]):
            raise DataError(
                f"label file {self.listing.labels[index]} is {labels.shape[1]}x{labels.shape[0]} "
                f"but its image {self.listing.images[index]} is "
                f"{image.shape[-1]}x{image.shape[-2]}; a mask must have its image's size"
            )
        if self.listing.ignore_value != IGNORE_LABEL:
            labels = np.where(labels == self.listing.ignore_value, IGNORE_LABEL, labels)
        return image, labels.astype(np.uint8)


class _SyntheticSource:
    def __init__(self, scenes: SyntheticScenes) -> None:
        self.scenes = scenes

    def load(self, index: int) -> tuple[tv_tensors.Image, np.ndarray]:
        image, labels = self.scenes[index]
        return tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)), labels


Transform = Callable[[Any, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]


class SegmentationDataset(Dataset):
    """The images of one task step and split: ``dataset[i] -> (image, target)``.

    ``ids`` are the kept images' ids in the dataset's order. The target holds model labels: the
    dataset labels remapped by ``task.remap(labels, step, split, overlap)`` after the transform.
    Without a transform the image is float32 (3, H, W) in [0, 1] and the target int64 (H, W).
    """

    def __init__(
        self,
        source: _FileSource | _SyntheticSource,
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

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.source.load(int(self.indices[i]))
        mask = tv_tensors.Mask(torch.from_numpy(labels))
        if self.transform is None:
            out_image, out_mask = image.as_subclass(torch.Tensor).float() / 255.0, mask
        else:
            out_image, out_mask = self.transform(image, mask)
        # spec 2d §5.2, §10.12: labels are remapped after the spatial transforms
        labels_out = torch.as_tensor(out_mask).as_subclass(torch.Tensor)
        target = self.task.remap(labels_out, self.step, self.split, self.overlap)
        return torch.as_tensor(out_image).as_subclass(torch.Tensor), target


def _prepare(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    cache_dir: str | os.PathLike | None,
    options: dict[str, Any] | None,
) -> tuple[_FileSource | _SyntheticSource, list[str], np.ndarray]:
    """(source of images and labels, ids, label histograms) of one split."""
    _check_name(name)
    _check_split(split)
    if name == "synthetic":
        scenes = _synthetic_scenes(options, split)
        ids = [f"{split}_{i:06d}" for i in range(len(scenes))]
        return _SyntheticSource(scenes), ids, _synthetic_histograms(scenes)
    if options:
        raise ConfigError(f"the {name} dataset takes no data.options, got {sorted(options)}")
    if root is None:
        raise ConfigError(f"the {name} dataset needs data.root")
    listing = list_split(name, root, split)
    return _FileSource(listing), listing.ids, _histograms_of(listing, Path(root), cache_dir)


def _check_task_fits(task: Task, num_labels: int, name: str) -> None:
    outside = sorted(label for group in task.steps for label in group if label >= num_labels)
    if outside:
        raise TaskError(
            f"task {task.name!r} lists labels {outside[:10]} but the {name} dataset has labels "
            f"0..{num_labels - 1}; choose a task of this dataset"
        )


@dataclass(frozen=True)
class SplitIndex:
    """One split, checked and indexed once: its image source, ids and per-image label histograms.

    ``build_dataset(..., index=...)`` derives any task's step subset from it in memory, without
    touching the disk again, so a run builds all 2 x (T + 1) datasets of a task from one look at
    each split (the reference rescanned every label PNG for every step)."""

    name: str
    split: str
    source: Any
    ids: list[str]
    hist: np.ndarray


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
    source, ids, hist = _prepare(name, root, split, cache_dir, options)
    return SplitIndex(name, split, source, ids, hist)


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
    seed, borders). Images are those ``task.keep`` accepts, in the dataset's order (spec 2d
    §6.2-6.3); ``overlap=False`` is the disjoint setting. ``transform(image, mask)`` receives a
    uint8 ``tv_tensors.Image`` and a ``tv_tensors.Mask`` of dataset labels. ``index``: the
    split's ``load_split`` result, to skip checking the files again (root, cache_dir and options
    are then unused).
    """
    if index is None:
        index = load_split(name, root, split, cache_dir=cache_dir, options=options)
    elif (index.name, index.split) != (name, split):
        raise ConfigError(f"build_dataset({name!r}, split={split!r}) was given the index of "
                          f"{index.name!r} split {index.split!r}; pass load_split({name!r}, ..., {split!r})")
    source, ids, hist = index.source, index.ids, index.hist
    num_labels = hist.shape[1] - 1
    _check_task_fits(task, num_labels, name)
    indices = subset_indices(hist[:, :num_labels] > 0, task, step, split, overlap)
    return SegmentationDataset(source, ids, indices, task, step, split, overlap, transform)


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
    _check_name(name)
    if name in ("voc", "ade"):
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

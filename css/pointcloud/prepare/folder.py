"""A user's own scans -> prepared blocks (docs/pointcloud-data.md#folder).

Layout under ``--raw``::

    classes.yaml      classes: [name0, name1, ...]   (label ids in this order)
                      ignore_label: 255              (optional; such points are stored as 255)
                      background: name or id         (optional; the class that is the model's channel 0)
                      asprs: {code: name or id}      (LAS/LAZ: ASPRS classification code -> class)
    train/<scene>.npz, .ply, .las or .laz
    val/<scene>.npz, .ply, .las or .laz              (-> test.h5)

``.npz``: ``coord`` (N, 3) float metres, ``color`` (N, 3) 0-255 (optional: zeros), ``label`` (N,) int.
``.ply``: vertex x, y, z, optional red, green, blue, and a ``label`` or ``class`` property.
``.las`` / ``.laz``: css.pointcloud.prepare.las (docs/pointcloud-data.md#laslaz).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from css.errors import ConfigError, DataError, require
from css.pointcloud.prepare import las
from css.pointcloud.prepare.pipeline import Scene, SceneData, Source
from css.pointcloud.prepare.ply import read_vertices
from css.pointcloud.store import IGNORE_LABEL

FOLDERS = {"train": "train", "test": "val"}
SUFFIXES = (".npz", ".ply")   # and las.SUFFIXES, in any case (.LAS)
_KEYS = ("classes", "ignore_label", "background", "asprs")


def read_classes(path: Path) -> tuple[list[str], int | None, int | None, str]:
    """(class names, the files' ignore label or None, background id or None, the file's text)."""
    yaml = require("yaml", needed_for="classes.yaml", install="pip install pyyaml")
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; write it with 'classes: [name0, name1, ...]' (label-id order), "
                          f"see docs/pointcloud-data.md#folder")
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must be a mapping with the key 'classes' (and optionally ignore_label, "
                          f"background, asprs)")
    unknown = [k for k in doc if k not in _KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid keys are {', '.join(_KEYS)}")
    classes = doc.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c.strip() for c in classes)):
        raise ConfigError(f"{path}: 'classes' must be a non-empty list of class names, e.g. classes: [floor, wall]")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise ConfigError(f"{path}: classes {dup} occur more than once; every class needs a unique name")
    if len(classes) > IGNORE_LABEL:
        raise ConfigError(f"{path}: {len(classes)} classes; at most {IGNORE_LABEL} fit (label {IGNORE_LABEL} "
                          f"marks ignored points)")
    ignore = doc.get("ignore_label")
    if ignore is not None and (not isinstance(ignore, int) or isinstance(ignore, bool)):
        raise ConfigError(f"{path}: ignore_label must be an integer, got {ignore!r}")
    if ignore is not None and 0 <= ignore < len(classes):
        raise ConfigError(f"{path}: ignore_label {ignore} is the id of class {classes[ignore]!r}; use a value "
                          f"outside 0..{len(classes) - 1}")
    background = doc.get("background")
    if background is not None:
        if isinstance(background, str):
            if background not in classes:
                raise ConfigError(f"{path}: background {background!r} is not one of the classes {classes}")
            background = classes.index(background)
        elif isinstance(background, bool) or not isinstance(background, int) or not 0 <= background < len(classes):
            raise ConfigError(f"{path}: background must be a class name or an id in 0..{len(classes) - 1}, "
                              f"got {background!r}")
    return classes, ignore, background, text


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as .npz ({exc})") from exc
    for key in ("coord", "label"):
        if key not in arrays:
            raise DataError(f"{path} has no array {key!r} (it has {sorted(arrays)}); save coord (N, 3), "
                            f"label (N,) and optionally color (N, 3)")
    return arrays["coord"], arrays.get("color"), arrays["label"]


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    vertices = read_vertices(path, wanted=("label", "class"))
    label = vertices.get("label", vertices.get("class"))
    if label is None:
        raise DataError(f"{path} has no vertex property 'label' or 'class'; add one (an integer per vertex)")
    return vertices["coord"], vertices["color"], label


def load_file(path: str, num_classes: int, ignore: int | None, *, repair: bool) -> SceneData:
    path = Path(path)
    coord, color, label = (_read_npz if path.suffix == ".npz" else _read_ply)(path)
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or not np.issubdtype(coord.dtype, np.number):
        raise DataError(f"{path}: coord has shape {coord.shape} ({coord.dtype}); it must be (N, 3) numbers")
    coord = coord.astype(np.float64)
    n = len(coord)
    if not np.isfinite(coord).all():
        rows = np.flatnonzero(~np.isfinite(coord).all(1))
        raise DataError(f"{path}: coord holds NaN or infinite values (points {rows[:10].tolist()}); remove them")
    label = np.asarray(label)
    if label.shape != (n,) or not np.issubdtype(label.dtype, np.integer):
        raise DataError(f"{path}: label has shape {label.shape} ({label.dtype}); it must be (N,) = ({n},) integers")
    if color is None:
        color = np.zeros((n, 3), np.uint8)
    color = np.asarray(color)
    if color.shape != (n, 3) or not np.issubdtype(color.dtype, np.integer):
        raise DataError(f"{path}: color has shape {color.shape} ({color.dtype}); it must be (N, 3) = ({n}, 3) "
                        f"integers 0-255 (uint8)")
    if n and (color.min() < 0 or color.max() > 255):
        raise DataError(f"{path}: color values {int(color.min())}..{int(color.max())} are outside 0-255")
    label = label.astype(np.int64)
    ignored = label == ignore if ignore is not None else np.zeros(n, bool)
    bad = ~ignored & ((label < 0) | (label >= num_classes))
    if bad.any():
        values = np.unique(label[bad])
        hint = f" or the ignore_label {ignore}" if ignore is not None else " (set ignore_label for unlabelled points)"
        raise DataError(f"{path}: labels {values[:10].tolist()}{' ...' if len(values) > 10 else ''} "
                        f"({int(bad.sum())} points) are not class ids 0..{num_classes - 1}{hint}; fix the "
                        f"labels or add the classes to classes.yaml")
    label[ignored] = IGNORE_LABEL
    return SceneData(coord=coord, color=color.astype(np.uint8), labels={"reference": label})


def _scans(directory: Path) -> tuple[list[Path], list[str]]:
    """The scans of a split folder and the names of the other files in it (listed in the summary)."""
    if not directory.is_dir():
        return [], []
    entries = sorted(directory.iterdir())
    scans = [p for p in entries if p.is_file() and (p.suffix in SUFFIXES or las.is_las(p))]
    return scans, [p.name for p in entries if p not in scans]


def source(raw: str | Path) -> Source:
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"--raw {raw} does not exist; pass the folder holding classes.yaml, train/ and val/")
    yaml_path = raw / "classes.yaml"
    classes, ignore, background, text = read_classes(yaml_path)
    asprs = las.read_asprs(yaml_path, text, classes)
    scenes, notes = [], []
    for split, folder in FOLDERS.items():
        directory = raw / folder
        files, others = _scans(directory)
        if not files:
            raise DataError(f"{directory} holds no .npz or .ply scan (nor .las / .laz); put the {split} scans there "
                            f"(docs/pointcloud-data.md#folder)")
        if others:
            notes.append(f"{folder}/: not read (not .npz, .ply, .las or .laz): {', '.join(others[:10])}"
                         + (f" and {len(others) - 10} more" if len(others) > 10 else ""))
        for p in files:
            if las.is_las(p):
                if asprs is None:
                    raise DataError(f"{yaml_path} has no key 'asprs', which the LAS/LAZ file {p} needs: map the "
                                    f"ASPRS classification codes to classes, e.g. asprs: {{2: {classes[0]}}} "
                                    f"(docs/pointcloud-data.md#laslaz)")
                # checked here, before any scene is prepared: a missing laspy/lazrs stops at once
                las.require_readers(p, laz=p.suffix.lower() == ".laz")
                scenes.append(Scene(name=p.stem, split=split, load=las.load_file,
                                    args=(str(p), tuple(int(v) for v in asprs)), files=(yaml_path, p)))
            else:
                scenes.append(Scene(name=p.stem, split=split, load=load_file, args=(str(p), len(classes), ignore),
                                    files=(yaml_path, p)))
    attrs = {"background": -1 if background is None else int(background), "classes_yaml": text}
    if ignore is not None:   # absent rather than a sentinel: any integer may be a file's ignore label
        attrs["source_ignore_label"] = int(ignore)
    described = {"classes": classes, "ignore_label": ignore, "background": background}
    if asprs is not None:
        described["asprs"] = {int(c): classes[v] for c, v in enumerate(asprs) if v != IGNORE_LABEL}
    return Source(dataset="folder", raw=raw, class_names=classes, scenes=scenes, attrs=attrs,
                  notes=[f"classes.yaml: {json.dumps(described)}", *notes])

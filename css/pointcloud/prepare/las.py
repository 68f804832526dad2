"""LAS / LAZ scans of the folder format (docs/pointcloud-data.md#laslaz).

Aerial and mobile LiDAR tiles: ``train/<tile>.las`` or ``.laz`` beside the ``.npz`` / ``.ply``
scans. Their classes come from the ASPRS classification code of every point through the
``asprs`` mapping of ``classes.yaml`` (several codes may map to one class; codes not listed are
ignored, label 255):

    classes: [ground, vegetation, building]
    asprs: {2: ground, 3: vegetation, 4: vegetation, 5: vegetation, 6: building}

* coordinates: the scaled values in float64 (``las.x``, ``las.y``, ``las.z``). The preparation
  shifts every scene to its minimum in float64 and only then stores float32
  (css.pointcloud.prepare.pipeline.cut_scene), so eastings of 500 000 m keep their millimetres;
* colour: the point formats with RGB store 16 bits per channel, scaled to 0-255 as ``value >> 8``
  (65535 -> 255, and both 257 * v and 256 * v -> v). A file whose colour values are all <= 255
  holds 8-bit colour in the 16-bit fields: it is kept as it is, with a note in the summary. Formats
  without RGB give colour 0.

laspy reads the files, lazrs decompresses LAZ: the optional extra ``css[las]``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from css.errors import DataError, require
from css.pointcloud.prepare.pipeline import SceneData
from css.pointcloud.store import IGNORE_LABEL

SUFFIXES = (".las", ".laz")
NUM_CODES = 256  # ASPRS classification codes 0..255 (point formats 6-10; formats 0-5 use 0..31)
INSTALL = "pip install 'css[las]' (or pip install laspy lazrs)"


def is_las(path: Path) -> bool:
    """LiDAR deliveries often spell the suffix in capitals (TILE.LAS): both are read."""
    return path.suffix.lower() in SUFFIXES


def require_readers(path: Path | str, *, laz: bool) -> Any:
    """laspy (and lazrs for LAZ), or a DependencyError naming the extra ``css[las]``."""
    laspy = require("laspy", needed_for=f"reading LAS/LAZ files ({path})", install=INSTALL)
    if laz:
        require("lazrs", needed_for=f"reading LAZ (compressed LAS) files ({path})", install=INSTALL)
    return laspy


def _asprs_keys(text: str) -> list[Any]:
    """The keys of the ``asprs`` mapping as written, repeats included (PyYAML keeps only the last
    value of a repeated key, so repeats are found on the node tree)."""
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return []
    loader = yaml.SafeLoader("")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "asprs" and isinstance(value, yaml.MappingNode):
            return [loader.construct_object(k, deep=True) for k, _ in value.value]
    return []


def _code(key: Any, path: Path) -> int:
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < NUM_CODES:
        raise DataError(f"{path}: asprs key {key!r} is not an ASPRS classification code; codes are integers "
                        f"0..{NUM_CODES - 1} (e.g. 2 ground, 6 building), docs/pointcloud-data.md#laslaz")
    return key


def read_asprs(path: Path, text: str, classes: list[str]) -> np.ndarray | None:
    """The ``asprs`` mapping of classes.yaml as a table code -> label id (255 for codes not listed),
    or None when the file has no ``asprs`` key."""
    import yaml

    doc = yaml.safe_load(text)
    mapping = doc.get("asprs") if isinstance(doc, dict) else None
    if mapping is None:
        return None
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{path}: asprs must be a non-empty mapping of ASPRS classification codes to classes, e.g. "
                        f"asprs: {{2: ground, 6: building}}; got {mapping!r}")
    codes = [_code(k, path) for k in _asprs_keys(text)]
    repeated = sorted(c for c, n in Counter(codes).items() if n > 1)
    if repeated:
        raise DataError(f"{path}: asprs lists the codes {repeated} more than once; give every code one class "
                        f"(several codes may map to the same class)")
    table = np.full(NUM_CODES, IGNORE_LABEL, dtype=np.int64)
    for key, value in mapping.items():
        code = _code(key, path)
        if isinstance(value, str) and value in classes:
            table[code] = classes.index(value)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            table[code] = value
        else:
            raise DataError(f"{path}: asprs.{code}: {value!r} is not a class of {classes}; use a class name or "
                            f"an id 0..{len(classes) - 1} (codes not listed are ignored)")
    return table


def load_file(path: str, table: tuple[int, ...], *, repair: bool) -> SceneData:
    """One LAS/LAZ tile: float64 coordinates, colour 0-255 (or zeros), labels by the ASPRS table."""
    path = Path(path)
    laspy = require_readers(path, laz=path.suffix.lower() == ".laz")
    try:
        las = laspy.read(path)
    except (laspy.errors.LaspyException, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} cannot be read as LAS/LAZ ({exc}); check the file (is it complete?) or "
                        f"export it again") from exc
    # the scaled coordinates (integer * scale + offset) in float64: float32 would round a
    # 500 000 m easting to 3 cm (docs/pointcloud-data.md#laslaz)
    coord = np.stack([np.asarray(las.x, dtype=np.float64), np.asarray(las.y, dtype=np.float64),
                      np.asarray(las.z, dtype=np.float64)], axis=1)
    n = len(coord)
    notes = []
    if {"red", "green", "blue"} <= set(las.point_format.dimension_names):
        rgb = np.stack([np.asarray(las[c], dtype=np.uint16) for c in ("red", "green", "blue")], axis=1)
        if n and int(rgb.max()) <= 255:
            color = rgb.astype(np.uint8)
            notes.append(f"{path.name}: RGB values are all <= 255, read as 8-bit colour (not scaled)")
        else:
            color = (rgb >> 8).astype(np.uint8)   # 16-bit -> 0-255
    else:
        color = np.zeros((n, 3), np.uint8)       # point format without colour
    codes = np.asarray(las.classification, dtype=np.int64)
    label = np.asarray(table, dtype=np.int64)[codes]
    unlisted = np.unique(codes[label == IGNORE_LABEL])
    if len(unlisted):
        count = int((label == IGNORE_LABEL).sum())
        notes.append(f"{path.name}: {count} points of ASPRS codes {unlisted.tolist()} (not in classes.yaml asprs) "
                     f"are ignored (label {IGNORE_LABEL})")
    return SceneData(coord=coord, color=color, labels={"reference": label}, notes=notes)

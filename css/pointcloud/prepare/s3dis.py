"""S3DIS (Stanford3dDataset_v1.2_Aligned_Version) -> prepared blocks (docs/pointcloud-data.md#s3dis).

Layout: ``Area_<a>/<room>/Annotations/<class>_<i>.txt``, six columns ``X Y Z R G B`` per row.
A room is the concatenation of its annotation files (sorted by file name); a file's class is the
name before the first ``_``, and a name that is not one of the 13 classes becomes clutter
(``stairs_1.txt``). The rooms of the test area go to test.h5, the other areas to train.h5.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from css.errors import DataError
from css.pointcloud.prepare.pipeline import Scene, SceneData, Source
from css.pointcloud.prepare.text import check_row, parse_lines, parse_plain
from css.tasks.tables import S3DIS_CLASSES

RELEASE = "Stanford3dDataset_v1.2_Aligned_Version"
CLUTTER = S3DIS_CLASSES.index("clutter")
_AREA = re.compile(r"^Area_(\d+)$")


def find_root(raw: Path) -> Path:
    """The folder holding ``Area_<a>``: ``raw`` itself or ``raw/Stanford3dDataset_v1.2_Aligned_Version``."""
    for candidate in (raw, raw / RELEASE):
        if candidate.is_dir() and any(_AREA.match(p.name) and p.is_dir() for p in candidate.iterdir()):
            return candidate
    if not raw.is_dir():
        raise DataError(f"--raw {raw} does not exist; pass the folder holding Area_1 .. Area_6 "
                        f"(or its parent holding {RELEASE}/, the S3DIS release published at "
                        f"http://buildingparser.stanford.edu/dataset.html)")
    raise DataError(f"--raw {raw} holds no Area_<a> folder (nor {RELEASE}/Area_<a>); pass the folder "
                    f"holding Area_1 .. Area_6 of the S3DIS release ({RELEASE}, published at "
                    f"http://buildingparser.stanford.edu/dataset.html)")


def class_of(path: Path) -> int:
    """Label of an annotation file: its name before the first '_', clutter when not a class."""
    prefix = path.stem.split("_", 1)[0]
    return S3DIS_CLASSES.index(prefix) if prefix in S3DIS_CLASSES else CLUTTER


def _check_colour(row: list[float]) -> str | None:
    bad = [v for v in row[3:] if not 0 <= v <= 255]
    return f"colour value {bad[0]:g} outside 0-255" if bad else None


def parse_annotation(path: Path, rel: str, *, repair: bool) -> tuple[np.ndarray, list[dict]]:
    """(n, 6) float64 rows of one annotation file and the repairs made to it.

    Without ``repair`` a bad row raises a DataError naming the file and line. With it, NUL bytes
    are removed from a bad row, and a row that still does not hold six valid numbers is dropped;
    every such repair is returned (file, line, action) for the summary.
    """
    data = path.read_bytes()
    values = parse_plain(data, 6)
    if values is not None and (values[:, 3:] >= 0).all() and (values[:, 3:] <= 255).all():
        return values, []
    repairs: list[dict] = []

    def on_bad(number: int, line: bytes, reason: str) -> bytes | None:
        shown = line[:80].decode("latin-1")
        if not repair:
            raise DataError(f"{path}: line {number} {reason}: {shown!r}. The S3DIS release has such corrupt "
                            f"rows (a NUL byte in Area_5/hallway_6/Annotations/ceiling_1.txt); fix the file "
                            f"by hand or rerun with --repair, which removes NUL bytes and drops rows that "
                            f"still do not hold 6 numbers, and lists every repair in summary.json")
        cleaned = line.replace(b"\x00", b"")
        if cleaned != line and check_row(cleaned.split(), 6, _check_colour) is None:
            nul = line.count(b"\x00")
            repairs.append({"file": rel, "line": number,
                            "action": f"removed {nul} NUL byte(s): {shown!r} -> "
                                      f"{cleaned[:80].decode('latin-1')!r}"})
            return cleaned
        repairs.append({"file": rel, "line": number, "action": f"dropped the row ({reason}): {shown!r}"})
        return None

    return parse_lines(data, 6, check=_check_colour, on_bad=on_bad), repairs


def load_room(root: str, area: str, room: str, files: tuple[str, ...], *, repair: bool) -> SceneData:
    """The points of one room: its annotation files concatenated in sorted order."""
    coords, colours, labels, repairs = [], [], [], []
    for name in files:
        path = Path(root) / area / room / "Annotations" / name
        rel = f"{area}/{room}/Annotations/{name}"
        try:
            rows, fixed = parse_annotation(path, rel, repair=repair)
        except OSError as exc:
            raise DataError(f"{path} cannot be read ({exc}); check the S3DIS download") from exc
        coords.append(rows[:, :3])
        colours.append(np.rint(rows[:, 3:]).astype(np.uint8))
        labels.append(np.full(len(rows), class_of(path), np.int64))
        repairs.extend(fixed)
    coord = np.concatenate(coords)
    if len(coord) == 0:
        raise DataError(f"{Path(root) / area / room / 'Annotations'}: the annotation files hold no points; "
                        f"check the S3DIS download (or remove the room folder)")
    return SceneData(coord=coord, color=np.concatenate(colours), labels={"reference": np.concatenate(labels)},
                     repairs=repairs)


def source(raw: str | Path, *, test_area: int = 5) -> Source:
    """Every room of every area, the rooms of ``test_area`` in the test split."""
    root = find_root(Path(raw))
    areas = sorted((p for p in root.iterdir() if p.is_dir() and _AREA.match(p.name)),
                   key=lambda p: int(_AREA.match(p.name).group(1)))
    numbers = [int(_AREA.match(p.name).group(1)) for p in areas]
    if test_area not in numbers:
        raise DataError(f"{root} has no Area_{test_area} (it has {', '.join(p.name for p in areas)}); pass "
                        f"--test-area with one of {numbers}")
    scenes, problems = [], []
    for area in areas:
        for room in sorted(p for p in area.iterdir() if p.is_dir()):
            ann = room / "Annotations"
            files = sorted(p.name for p in ann.glob("*.txt")) if ann.is_dir() else []
            if not files:
                problems.append(str(ann))
                continue
            split = "test" if int(_AREA.match(area.name).group(1)) == test_area else "train"
            scenes.append(Scene(name=f"{area.name}_{room.name}", split=split, load=load_room,
                                args=(str(root), area.name, room.name, tuple(files)),
                                files=tuple(ann / f for f in files)))
    if problems:
        raise DataError(f"{len(problems)} room folder(s) have no Annotations/*.txt: "
                        f"{', '.join(problems[:10])}{' ...' if len(problems) > 10 else ''}; every folder "
                        f"inside Area_<a> must be a room of the S3DIS release (remove other folders)")
    if not scenes:
        raise DataError(f"{root}: no rooms found under Area_<a>/<room>/Annotations/")
    return Source(dataset="s3dis", raw=root, class_names=list(S3DIS_CLASSES), scenes=scenes,
                  attrs={"test_area": int(test_area)})

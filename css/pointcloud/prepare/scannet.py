"""ScanNet v2 -> prepared blocks (docs/pointcloud-data.md#scannet).

Layout under ``--raw``::

    scans/<scene>/<scene>_vh_clean_2.ply                  vertices x y z red green blue
    scans/<scene>/<scene>_vh_clean_2.0.010000.segs.json   segIndices: vertex -> segment
    scans/<scene>/<scene>.aggregation.json                segGroups: segments + raw label
    scannetv2-labels.combined.tsv                         (or meta/scannetv2-labels.combined.tsv)
    scannetv2_train.txt, scannetv2_val.txt                (or under meta/)

Only vertices of some segGroup are kept (a vertex in two groups appears twice). Two label sets:
"reference" maps the raw category through the TSV's nyu40class *name* to the 21 class names, as
the reference pipeline does (the TSV spells nyu40 class 24 "refridgerator", so no point gets
refrigerator); "fixed" maps the TSV's nyu40id through the classes' nyu40 ids. The raw nyu40 id of
every point is kept as the extra array ``nyu40``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from css.errors import DataError
from css.pointcloud.prepare.pipeline import Scene, SceneData, Source
from css.pointcloud.prepare.ply import read_vertices
from css.tasks.tables import SCANNET_CLASSES

TSV = "scannetv2-labels.combined.tsv"
LISTS = {"train": "scannetv2_train.txt", "test": "scannetv2_val.txt"}
# nyu40 id of every class 1..20, in SCANNET_CLASSES order (0 = unannotated has none)
NYU40_IDS = (1, 2, 5, 7, 14, 4, 10, 6, 34, 36, 33, 16, 12, 8, 9, 28, 24, 11, 3, 39)


def scene_files(scene: str) -> tuple[str, str, str]:
    return (f"{scene}_vh_clean_2.ply", f"{scene}_vh_clean_2.0.010000.segs.json", f"{scene}.aggregation.json")


def _find(raw: Path, name: str) -> Path:
    for candidate in (raw / name, raw / "meta" / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{raw} has no {name} (looked in {raw} and {raw / 'meta'}); the label TSV comes with the "
                    f"ScanNet v2 release (http://www.scan-net.org/), the split lists scannetv2_train.txt and "
                    f"scannetv2_val.txt with the ScanNet repository (https://github.com/ScanNet/ScanNet, "
                    f"Tasks/Benchmark/)")


def read_label_map(path: Path) -> dict[str, tuple[int, int, int]]:
    """raw_category -> (reference label, fixed label, nyu40 id)."""
    by_nyu = {nyu: k + 1 for k, nyu in enumerate(NYU40_IDS)}
    table: dict[str, tuple[int, int, int]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, [])
        needed = ("raw_category", "nyu40id", "nyu40class")
        if any(c not in header for c in needed):
            raise DataError(f"{path}: line 1 must name the columns {', '.join(needed)} (it has {header[:8]}); "
                            f"use the scannetv2-labels.combined.tsv of the ScanNet v2 release")
        col = {c: header.index(c) for c in needed}
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                raw, nyu_text, name = (row[col[c]] for c in needed)
                nyu = int(nyu_text) if nyu_text.strip() else 0
            except (IndexError, ValueError):
                raise DataError(f"{path}: line {line} has no raw_category / integer nyu40id / nyu40class "
                                f"({row[:8]}); use the release's TSV") from None
            ref = SCANNET_CLASSES.index(name) if name in SCANNET_CLASSES else 0
            entry = (ref, by_nyu.get(nyu, 0), nyu if 0 <= nyu <= 255 else 0)
            if raw in table and table[raw] != entry:
                raise DataError(f"{path}: line {line}: raw category {raw!r} occurs twice with different "
                                f"labels; keep one row per raw category")
            table[raw] = entry
    return table


def _json(path: Path, key: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} cannot be read or has no {key!r} ({exc}); download the scene again") from exc


def load_scene(scans: str, scene: str, labels: dict[str, tuple[int, int, int]], *, repair: bool) -> SceneData:
    folder = Path(scans) / scene
    ply, segs, agg = (folder / name for name in scene_files(scene))
    vertices = read_vertices(ply)
    coord, color = vertices["coord"], vertices["color"]
    if color is None:
        raise DataError(f"{ply} has no vertex colours (red, green, blue); use the _vh_clean_2.ply of the release")
    seg_of = np.asarray(_json(segs, "segIndices"), dtype=np.int64)
    if len(seg_of) != len(coord):
        raise DataError(f"{segs}: segIndices has {len(seg_of)} entries but {ply} has {len(coord)} vertices; "
                        f"the two files are from different scans, download the scene again")
    order = np.argsort(seg_of, kind="stable")
    sorted_segs = seg_of[order]
    picks, ref, fixed, nyu = [], [], [], []
    unknown: set[str] = set()
    for group in _json(agg, "segGroups"):
        try:
            segments = np.unique(np.asarray(group["segments"], dtype=np.int64))
            raw = str(group["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{agg}: a segGroup has no 'segments' list or 'label' ({exc}); download the "
                            f"scene again") from exc
        # the group's vertices in ascending vertex order
        lo = np.searchsorted(sorted_segs, segments, side="left")
        hi = np.searchsorted(sorted_segs, segments, side="right")
        index = np.sort(np.concatenate([order[a:b] for a, b in zip(lo, hi)] or [np.zeros(0, np.int64)]))
        entry = labels.get(raw)
        if entry is None:
            unknown.add(raw)
            entry = (0, 0, 0)
        picks.append(index)
        for out, value in zip((ref, fixed, nyu), entry):
            out.append(np.full(len(index), value, np.int64))
    index = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
    notes = [f"{scene}: raw categories not in the TSV, labelled unannotated: {sorted(unknown)}"] if unknown else []
    data = SceneData(coord=coord[index], color=color[index], labels={"reference": cat(ref), "fixed": cat(fixed)},
                     extra={"nyu40": cat(nyu)}, notes=notes)
    if len(index) == 0:
        data.notes.append(f"{scene}: no vertex belongs to a segGroup, the scene has no points")
    return data


def _read_list(path: Path) -> list[str]:
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def source(raw: str | Path) -> Source:
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"--raw {raw} does not exist; pass the folder holding scans/ and {TSV}")
    tsv = _find(raw, TSV)
    labels = read_label_map(tsv)
    split_of: dict[str, str] = {}
    for split, name in LISTS.items():
        path = _find(raw, name)
        for scene in _read_list(path):
            if scene in split_of:
                raise DataError(f"{path}: scene {scene} is listed in both {LISTS['train']} and {LISTS['test']}")
            split_of[scene] = split
    scans = raw / "scans"
    if not scans.is_dir():
        raise DataError(f"{raw} has no scans/ folder; pass the ScanNet v2 folder holding scans/<scene>/")
    missing = [scans / s / f for s in sorted(split_of) for f in scene_files(s) if not (scans / s / f).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {3 * len(split_of)} raw files expected for the "
                        f"{len(split_of)} scenes of {LISTS['train']} and {LISTS['test']} are missing: "
                        + ", ".join(str(p) for p in missing[:10]) + (" ..." if len(missing) > 10 else "")
                        + "; download them with ScanNet's download-scannet.py (http://www.scan-net.org/, e.g. "
                          "--type _vh_clean_2.ply) or remove the scenes from the lists")
    scenes = [Scene(name=s, split=split_of[s], load=load_scene, args=(str(scans), s, labels),
                    files=(tsv, *(scans / s / f for f in scene_files(s)))) for s in sorted(split_of)]
    unlisted = sorted(p.name for p in scans.iterdir() if p.is_dir() and p.name not in split_of)
    notes = [f"{len(unlisted)} folders of scans/ are in neither list and were not prepared: "
             f"{', '.join(unlisted[:10])}{' ...' if len(unlisted) > 10 else ''}"] if unlisted else []
    return Source(dataset="scannet", raw=raw, class_names=list(SCANNET_CLASSES), scenes=scenes,
                  label_sets=("reference", "fixed"), extra=("nyu40",), notes=notes)

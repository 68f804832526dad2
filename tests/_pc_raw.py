"""Tiny raw point-cloud layouts (S3DIS, ScanNet, folder) and independent reference helpers for the
preparation tests. Expectations are computed here without the code under test: text is parsed with
Python's float, tiles with one boolean mask per tile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


# --- reference helpers ---------------------------------------------------------------------------

def naive_tiles(coord: np.ndarray, block_size: float, stride: float, min_points: int):
    """[(point indices, (x0, y0))] of the kept tiles, i (x) outer, j (y) inner; coord already shifted."""
    coord = np.asarray(coord, dtype=np.float64)
    ext = coord.max(0)
    nx = max(1, math.ceil((ext[0] - block_size) / stride) + 1)
    ny = max(1, math.ceil((ext[1] - block_size) / stride) + 1)
    out = []
    for i in range(nx):
        for j in range(ny):
            x0, y0 = i * stride, j * stride
            keep = ((coord[:, 0] >= x0) & (coord[:, 0] <= x0 + block_size)
                    & (coord[:, 1] >= y0) & (coord[:, 1] <= y0 + block_size))
            idx = np.nonzero(keep)[0]
            if len(idx) >= max(min_points, 1):
                out.append((idx, (x0, y0)))
    return out


def expected_blocks(scene: str, coord, color, labels: dict, block_size=1.0, stride=1.0, min_points=1):
    """The blocks a preparation should store for one scene (the room shifted to its minimum)."""
    coord = np.asarray(coord, dtype=np.float64)
    coord = coord - coord.min(0)
    return [{"id": f"{scene}_block_{k}", "scene": scene, "origin": o, "coord": coord[idx].astype(np.float32),
             "color": np.asarray(color)[idx], "labels": {s: np.asarray(v)[idx] for s, v in labels.items()}}
            for k, (idx, o) in enumerate(naive_tiles(coord, block_size, stride, min_points))]


def read_store(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, for comparisons."""
    import h5py

    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f.keys()}
        attrs = {k: f.attrs[k] for k in f.attrs.keys()}
    return {"data": data, "attrs": attrs}


def assert_same_store(a: Path, b: Path) -> None:
    ra, rb = read_store(a), read_store(b)
    assert sorted(ra["data"]) == sorted(rb["data"])
    for key in ra["data"]:
        np.testing.assert_array_equal(ra["data"][key], rb["data"][key], err_msg=key)
        assert ra["data"][key].dtype == rb["data"][key].dtype, key
    assert ra["attrs"].keys() == rb["attrs"].keys()
    for key in ra["attrs"]:
        assert np.all(ra["attrs"][key] == rb["attrs"][key]), key


def check_store_blocks(store, expected: list[dict], label_sets=("reference",)) -> None:
    assert store.ids == [e["id"] for e in expected]
    assert store.scenes == [e["scene"] for e in expected]
    np.testing.assert_array_equal(store.origin, np.asarray([e["origin"] for e in expected], np.float32).reshape(-1, 2))
    for k, e in enumerate(expected):
        for s in label_sets:
            got = store.block(k, s)
            np.testing.assert_array_equal(got["coord"], e["coord"])
            np.testing.assert_array_equal(got["color"], e["color"])
            np.testing.assert_array_equal(got["label"], e["labels"][s])


# --- S3DIS ---------------------------------------------------------------------------------------

def room_rows(rng: np.random.Generator, n: int, box, offset=(0.0, 0.0, 0.0)) -> list[str]:
    """n rows 'X Y Z R G B' with 3-decimal coordinates inside box, shifted by offset."""
    xyz = rng.uniform(0, 1, (n, 3)) * np.asarray(box) + np.asarray(offset)
    rgb = rng.integers(0, 256, (n, 3))
    return [f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(xyz, rgb)]


def write_s3dis(root: Path, rooms: dict[str, dict[str, list[str]]]) -> Path:
    """rooms: 'Area_1/office_1' -> {file name: rows}. Returns the release folder."""
    for room, files in rooms.items():
        ann = root / room / "Annotations"
        ann.mkdir(parents=True, exist_ok=True)
        (root / room / f"{room.split('/')[1]}.txt").write_text("not read\n")   # the room file of the release
        for name, rows in files.items():
            (ann / name).write_bytes(rows if isinstance(rows, bytes) else ("\n".join(rows) + "\n").encode())
    return root


def small_s3dis(root: Path, seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """Three areas, four rooms of 2.5 m x 1.5 m (a 3 x 2 tile grid), ~600 points each."""
    rng = np.random.default_rng(seed)
    rooms = {}
    for k, room in enumerate(["Area_1/office_1", "Area_1/hallway_2", "Area_2/WC_1", "Area_5/office_3"]):
        off = (10.0 * k - 3.0, -2.0 + k, 0.5)
        rooms[room] = {
            "ceiling_1.txt": room_rows(rng, 150, (2.5, 1.5, 0.1), (off[0], off[1], off[2] + 2.9)),
            "floor_1.txt": room_rows(rng, 150, (2.5, 1.5, 0.1), off),
            "chair_2.txt": room_rows(rng, 120, (1.0, 0.6, 0.8), (off[0] + 0.2, off[1] + 0.3, off[2])),
            "chair_10.txt": room_rows(rng, 80, (0.5, 0.5, 0.8), (off[0] + 1.7, off[1] + 0.2, off[2])),
            "stairs_1.txt": room_rows(rng, 100, (0.6, 1.4, 1.0), (off[0] + 1.9, off[1], off[2])),
        }
    write_s3dis(root, rooms)
    return rooms


def parse_rows(rows) -> np.ndarray:
    return np.asarray([[float(t) for t in r.split()] for r in rows], dtype=np.float64).reshape(-1, 6)


# --- ScanNet -------------------------------------------------------------------------------------

TSV_HEADER = "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyu40class\tmpcat40index\tmpcat40"
TSV_ROWS = [  # raw_category, nyu40id, nyu40class (as in the release's TSV)
    ("wall", 1, "wall"), ("chair", 5, "chair"), ("refrigerator", 24, "refridgerator"),
    ("kitchen cabinets", 3, "cabinet"), ("towel", 35, "towel"), ("office chair", 5, "chair"),
]


def write_scannet(root: Path, scenes: dict[str, dict], *, train=("scene0000_00",), val=("scene0001_00",),
                  tsv_in_meta=False) -> None:
    """scenes: name -> {coord (n, 3), color (n, 3) uint8, seg (n,), groups [(label, [segments])]}."""
    import open3d as o3d

    tsv = root / "meta" if tsv_in_meta else root
    tsv.mkdir(parents=True, exist_ok=True)
    lines = [TSV_HEADER] + [f"{k + 1}\t{raw}\t{raw}\t1\t{nyu}\t0\t{name}\t0\tx" for k, (raw, nyu, name) in
                            enumerate(TSV_ROWS)]
    (tsv / "scannetv2-labels.combined.tsv").write_text("\n".join(lines) + "\n")
    (root / "scannetv2_train.txt").write_text("".join(s + "\n" for s in train))
    (root / "scannetv2_val.txt").write_text("".join(s + "\n" for s in val))
    for name, scene in scenes.items():
        folder = root / "scans" / name
        folder.mkdir(parents=True, exist_ok=True)
        mesh = o3d.geometry.TriangleMesh()
        mesh.vertices = o3d.utility.Vector3dVector(np.asarray(scene["coord"], np.float64))
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.asarray(scene["color"], np.float64) / 255.0)
        n = len(scene["coord"])
        mesh.triangles = o3d.utility.Vector3iVector(np.stack([np.arange(n - 2), np.arange(1, n - 1),
                                                              np.arange(2, n)], 1).astype(np.int32))
        assert o3d.io.write_triangle_mesh(str(folder / f"{name}_vh_clean_2.ply"), mesh)
        (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(
            json.dumps({"sceneId": name, "segIndices": [int(s) for s in scene["seg"]]}))
        groups = [{"id": k, "objectId": k, "segments": list(map(int, segs)), "label": label}
                  for k, (label, segs) in enumerate(scene["groups"])]
        (folder / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": name, "segGroups": groups}))


def random_scannet_scene(seed: int, n: int = 300) -> dict:
    rng = np.random.default_rng(seed)
    coord = rng.uniform(0, 1, (n, 3)) * [2.4, 1.6, 2.0] + [5.0, -3.0, 0.0]
    color = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    seg = rng.integers(0, 12, n) * 7 + 3          # segment ids 3, 10, ..., 80
    groups = [("wall", [3, 10]), ("refrigerator", [17]), ("chair", [24, 31]), ("kitchen cabinets", [38]),
              ("towel", [45]), ("not in the tsv", [52]), ("office chair", [59, 24])]   # 24 in two groups
    return {"coord": coord, "color": color, "seg": seg, "groups": groups}   # 66, 73, 80: in no group


# --- folder --------------------------------------------------------------------------------------

def write_ply_binary(path: Path, coord, color, label, label_name="class", label_type="ushort") -> None:
    """A binary little-endian PLY written by hand (open3d would not write a ushort property)."""
    types = {"ushort": "<u2", "short": "<i2", "int": "<i4", "uchar": "u1"}
    n = len(coord)
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
              "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
              "property %s %s\nend_header\n" % (n, label_type, label_name))
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"),
                             ("l", types[label_type])])
    rec["x"], rec["y"], rec["z"] = np.asarray(coord, np.float32).T
    rec["r"], rec["g"], rec["b"] = np.asarray(color, np.uint8).T
    rec["l"] = label
    path.write_bytes(header.encode() + rec.tobytes())


def write_ply_ascii(path: Path, coord, label, label_name="label") -> None:
    n = len(coord)
    lines = ["ply", "format ascii 1.0", f"element vertex {n}", "property float x", "property float y",
             "property float z", f"property ushort {label_name}", "end_header"]
    lines += [f"{x:.3f} {y:.3f} {z:.3f} {int(l)}" for (x, y, z), l in zip(coord, label)]
    path.write_text("\n".join(lines) + "\n")

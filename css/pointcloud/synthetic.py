"""A built-in synthetic point-cloud benchmark: procedural indoor rooms, docs/pointcloud-datasets.md#synthetic.

A room is a box of random size (floor, four walls, ceiling) furnished with objects of several
classes (tables, chairs, sofas, bookcases, lamps, ...), every surface sampled as points with a
class-typical but noisy colour. Each room holds a random mix of every enabled object class, so
objects of classes learnt later also stand in the rooms of earlier steps, where they are
background (as in S3DIS). Rooms are cut into blocks by the same sweep as real data and written in
the prepared format (``train.h5``, ``test.h5``), so the synthetic benchmark exercises the whole
point-cloud pipeline. Every room is a deterministic function of (seed, split, room index).

Labels: 0 floor, 1 wall, 2 ceiling, 3.. the object classes; every label is a real class and the
model's background channel is synthetic (no dataset label maps to it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from css.errors import ConfigError
from css.pointcloud.prepare.blocks import shift_to_origin, sweep_with_origins
from css.pointcloud.store import scene_file, write_split

# bump when the rooms or the files change, so old caches are not reused (v2: the whole-scene files)
GENERATOR_VERSION = "css-synthetic-pc-v2"
STRUCTURE_CLASSES = ("floor", "wall", "ceiling")
OBJECT_CLASSES = ("table", "chair", "sofa", "bookcase", "lamp", "cabinet", "bed", "board")
SPLIT_CODES = {"train": 0, "test": 1}

DEFAULTS: dict[str, Any] = {
    "num_rooms": {"train": 16, "test": 4},
    "room_size": [3.0, 5.0],       # side lengths (m), uniform in this range
    "room_height": [2.6, 3.2],     # m
    "points_per_m2": 400,          # surface sampling density of floor, walls and ceiling
    "object_density": 1.5,         # objects are sampled this many times denser (scanned furniture is)
    "objects_per_m2": 0.5,         # objects tried per m2 of floor (placement may reject some)
    "num_classes": 5,              # object classes: the first n of OBJECT_CLASSES
    "block_size": 1.0,
    "stride": 1.0,
    "min_points": 500,             # the reference keeps 1000; the rooms are sparser
    "seed": 0,
}

# Class-typical RGB (0..1); each object draws its colour around it, each point adds noise.
_COLOURS = {
    "floor": (0.55, 0.47, 0.38), "wall": (0.86, 0.83, 0.74), "ceiling": (0.93, 0.93, 0.95),
    "table": (0.50, 0.30, 0.15), "chair": (0.75, 0.18, 0.15), "sofa": (0.15, 0.35, 0.65),
    "bookcase": (0.35, 0.22, 0.12), "lamp": (0.95, 0.85, 0.35), "cabinet": (0.55, 0.70, 0.55),
    "bed": (0.75, 0.65, 0.85), "board": (0.20, 0.45, 0.30),
}
_OBJECT_JITTER, _POINT_NOISE, _POSITION_NOISE = 0.06, 0.04, 0.005


# --- options and cache ------------------------------------------------------------------------

def _fail(key: str, what: str, value: Any) -> None:
    raise ConfigError(f"data.options.{key} must be {what}, got {value!r}")


def _range(merged: dict[str, Any], key: str, low: float, high: float) -> None:
    value = merged[key]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not low <= value[0] <= value[1] <= high):
        _fail(key, f"[min, max] with {low} <= min <= max <= {high}", value)
    merged[key] = [float(v) for v in value]


def synthetic_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The generator's options (data.options) with defaults filled in and checked."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for key, value in (options or {}).items():
        if key not in DEFAULTS:
            raise ConfigError(f"unknown synthetic point-cloud option data.options.{key}; valid: {', '.join(DEFAULTS)}")
        merged[key] = value
    rooms = merged["num_rooms"]
    if isinstance(rooms, int) and not isinstance(rooms, bool):
        rooms = {"train": rooms, "test": rooms}
    if (not isinstance(rooms, dict) or set(rooms) != set(SPLIT_CODES)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rooms.values())):
        _fail("num_rooms", "a positive int or {train: N, test: M}", merged["num_rooms"])
    merged["num_rooms"] = {split: int(rooms[split]) for split in SPLIT_CODES}
    _range(merged, "room_size", 1.0, 50.0)
    _range(merged, "room_height", 1.5, 10.0)
    for key, low, high in (("points_per_m2", 1, 100000), ("object_density", 0.1, 100), ("objects_per_m2", 0, 10),
                           ("block_size", 0.1, 100), ("stride", 0.1, 100)):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            _fail(key, f"a number in {low}..{high}", value)
        merged[key] = float(value)
    for key, low, high in (("num_classes", 1, len(OBJECT_CLASSES)), ("min_points", 0, 10**7), ("seed", 0, 2**63 - 1)):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            _fail(key, f"an int in {low}..{high}", value)
    return merged


def class_names(options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Name of every label: floor, wall, ceiling, then the enabled object classes."""
    return STRUCTURE_CLASSES + OBJECT_CLASSES[: synthetic_options(options)["num_classes"]]


def default_cache_dir() -> Path:
    """$CSS_CACHE_DIR, else ~/.cache/css."""
    env = os.environ.get("CSS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "css"


def options_key(options: dict[str, Any] | None) -> str:
    """Hash of the generator version and the resolved options: the cache folder's name."""
    text = json.dumps([GENERATOR_VERSION, synthetic_options(options)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure(options: dict[str, Any] | None = None, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding this benchmark's ``train.h5`` and ``test.h5``, generated when absent.

    ``<cache_dir>/css-synthetic-pc-<hash of the options>/``. It is written under a temporary name
    and renamed when complete, so a folder that exists is whole, and processes generating it at
    once (DDP ranks) keep the first one that lands.
    """
    opts = synthetic_options(options)
    parent = Path(cache_dir).expanduser().absolute() if cache_dir is not None else default_cache_dir()
    final = parent / f"css-synthetic-pc-{options_key(opts)}"
    if final.is_dir():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        generate(tmp, options=opts)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --- surfaces ---------------------------------------------------------------------------------

class _Room:
    """Points, colours and labels of one room, collected part by part."""

    def __init__(self, rng: np.random.Generator, density: float) -> None:
        self.rng, self.density = rng, density
        self.parts: list[tuple[np.ndarray, np.ndarray, int]] = []

    def count(self, area: float, factor: float = 1.0) -> int:
        return int(self.rng.poisson(area * self.density * factor))

    def colour(self, name: str, jitter: float = _OBJECT_JITTER) -> np.ndarray:
        return np.clip(np.asarray(_COLOURS[name]) + self.rng.normal(0, jitter, 3), 0, 1)

    def add(self, points: np.ndarray, colour: np.ndarray, label: int) -> None:
        rgb = np.clip(colour + self.rng.normal(0, _POINT_NOISE, (len(points), 3)), 0, 1)
        self.parts.append((points, rgb, label))

    def rect(self, origin, u, v, factor: float = 1.0) -> np.ndarray:
        """Points on the parallelogram origin + a u + b v, a, b in [0, 1]."""
        u, v = np.asarray(u, float), np.asarray(v, float)
        n = self.count(float(np.linalg.norm(np.cross(u, v))), factor)
        ab = self.rng.random((n, 2))
        return np.asarray(origin, float) + ab[:, :1] * u + ab[:, 1:] * v

    def box(self, low, size, factor: float, bottom: bool = False) -> np.ndarray:
        """Points on the faces of an axis-aligned box (object coordinates)."""
        (x, y, z), (sx, sy, sz) = low, size
        faces = [((x, y, z + sz), (sx, 0, 0), (0, sy, 0)),                     # top
                 ((x, y, z), (sx, 0, 0), (0, 0, sz)), ((x, y + sy, z), (sx, 0, 0), (0, 0, sz)),
                 ((x, y, z), (0, sy, 0), (0, 0, sz)), ((x + sx, y, z), (0, sy, 0), (0, 0, sz))]
        if bottom:
            faces.append(((x, y, z), (sx, 0, 0), (0, sy, 0)))
        return np.concatenate([self.rect(o, u, v, factor) for o, u, v in faces])

    def cylinder(self, radius: float, z0: float, height: float, factor: float, caps: bool = False) -> np.ndarray:
        n = self.count(2 * math.pi * radius * height, factor)
        angle, z = self.rng.uniform(0, 2 * math.pi, n), z0 + self.rng.uniform(0, height, n)
        points = [np.stack([radius * np.cos(angle), radius * np.sin(angle), z], 1)]
        if caps:
            m = self.count(math.pi * radius**2, factor)
            r, a = radius * np.sqrt(self.rng.random(m)), self.rng.uniform(0, 2 * math.pi, m)
            points.append(np.stack([r * np.cos(a), r * np.sin(a), np.full(m, z0 + height)], 1))
        return np.concatenate(points)


def _place(points: np.ndarray, x: float, y: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    out = points.copy()
    out[:, 0], out[:, 1] = c * points[:, 0] - s * points[:, 1] + x, s * points[:, 0] + c * points[:, 1] + y
    return out


# --- furniture: each returns (parts [(points, own colour or None)], footprint (length, depth)) --
# Object coordinates: the footprint is centred on the origin, x along the length, y the depth
# (-y is the front, +y the back, which wall-standing objects turn to the wall), z up from the floor.

def _legs(room: _Room, length: float, depth: float, height: float, f: float, inset: float = 0.05) -> list[np.ndarray]:
    t = 0.05
    return [room.box((sx * (length / 2 - inset) - t / 2, sy * (depth / 2 - inset) - t / 2, 0), (t, t, height), f)
            for sx in (-1, 1) for sy in (-1, 1)]


def _table(room: _Room, f: float):
    length, depth, height = room.rng.uniform(1.0, 1.6), room.rng.uniform(0.6, 0.9), room.rng.uniform(0.70, 0.78)
    top = room.box((-length / 2, -depth / 2, height - 0.04), (length, depth, 0.04), f, bottom=True)
    return [(np.concatenate([top, *_legs(room, length, depth, height - 0.04, f)]), None)], (length, depth)


def _chair(room: _Room, f: float):
    w, seat = room.rng.uniform(0.42, 0.5), room.rng.uniform(0.42, 0.48)
    parts = [room.box((-w / 2, -w / 2, seat - 0.05), (w, w, 0.05), f, bottom=True),
             room.box((-w / 2, w / 2 - 0.05, seat), (w, 0.05, room.rng.uniform(0.4, 0.5)), f),
             *_legs(room, w, w, seat - 0.05, f, inset=0.03)]
    return [(np.concatenate(parts), None)], (w, w)


def _sofa(room: _Room, f: float):
    length, depth = room.rng.uniform(1.6, 2.2), room.rng.uniform(0.8, 0.95)
    back_h, arm = room.rng.uniform(0.75, 0.9), 0.2
    parts = [room.box((-length / 2, -depth / 2, 0), (length, depth, 0.42), f),
             room.box((-length / 2, depth / 2 - 0.2, 0.42), (length, 0.2, back_h - 0.42), f),
             room.box((-length / 2, -depth / 2, 0.42), (arm, depth - 0.2, 0.18), f),
             room.box((length / 2 - arm, -depth / 2, 0.42), (arm, depth - 0.2, 0.18), f)]
    return [(np.concatenate(parts), None)], (length, depth)


def _bookcase(room: _Room, f: float):
    length, depth, height = room.rng.uniform(0.8, 1.2), room.rng.uniform(0.3, 0.4), room.rng.uniform(1.8, 2.2)
    frame = room.box((-length / 2, -depth / 2, 0), (length, depth, height), f)
    # books just in front of the frame: a random colour per (shelf, 6 cm slot), like real shelves
    books = room.rect((-length / 2, -depth / 2 - 0.01, 0.1), (length, 0, 0), (0, 0, height - 0.2), f)
    slot = ((books[:, 0] + length / 2) // 0.06).astype(int) + 101 * ((books[:, 2] - 0.1) // 0.4).astype(int)
    palette = 0.15 + 0.7 * room.rng.random((101 * 8, 3))
    return [(frame, None), (books, palette[slot % len(palette)])], (length, depth)


def _lamp(room: _Room, f: float):
    height, shade_r = room.rng.uniform(1.4, 1.7), room.rng.uniform(0.2, 0.28)
    pole = np.concatenate([room.cylinder(0.025, 0, height, f), room.cylinder(0.16, 0, 0.03, f, caps=True)])
    shade = room.cylinder(shade_r, height - 0.1, 0.4, 2 * f, caps=True)  # denser: the shade is the lamp's face
    return [(pole, 0.5 + 0.2 * room.rng.random(3)), (shade, None)], (2 * shade_r, 2 * shade_r)


def _cabinet(room: _Room, f: float):
    length, depth, height = room.rng.uniform(0.6, 1.0), room.rng.uniform(0.45, 0.6), room.rng.uniform(0.8, 1.0)
    return [(room.box((-length / 2, -depth / 2, 0), (length, depth, height), f), None)], (length, depth)


def _bed(room: _Room, f: float):
    length, depth = room.rng.uniform(1.4, 1.8), room.rng.uniform(1.9, 2.1)
    mattress = room.box((-length / 2, -depth / 2, 0), (length, depth, 0.55), f)
    head = room.box((-length / 2, depth / 2 - 0.08, 0.55), (length, 0.08, 0.5), f)
    return [(np.concatenate([mattress, head]), None)], (length, depth)


def _board(room: _Room, f: float):
    length, height, z0 = room.rng.uniform(1.0, 2.0), room.rng.uniform(0.8, 1.2), room.rng.uniform(0.8, 1.0)
    # a thin panel 2 cm in front of the wall (its back, at +y, touches the wall)
    face = room.rect((-length / 2, 0.0, z0), (length, 0, 0), (0, 0, height), 1.5 * f)
    return [(face, None)], (length, 0.04)


_BUILDERS: dict[str, tuple[Callable, bool]] = {  # builder, stands against a wall
    "table": (_table, False), "chair": (_chair, False), "sofa": (_sofa, False), "bookcase": (_bookcase, True),
    "lamp": (_lamp, False), "cabinet": (_cabinet, True), "bed": (_bed, True), "board": (_board, True),
}


def _free_spot(room_w, room_d, footprint, against_wall, rng, placed) -> tuple[float, float, float] | None:
    """(x, y, yaw) of an object whose footprint overlaps no placed one (bounding
    discs of the footprints), or None after 30 tries (the room is full)."""
    length, depth = footprint
    radius = math.hypot(length, depth) / 2
    for _ in range(30):
        if against_wall:
            wall = int(rng.integers(4))
            yaw = (0.0, math.pi / 2, math.pi, -math.pi / 2)[wall]  # back (+y) turned to the wall
            span = (room_w if wall in (0, 2) else room_d) - length - 0.1
            if span <= 0:
                continue
            t, off = rng.uniform(0.05 + length / 2, 0.05 + length / 2 + span), depth / 2 + 0.01
            x, y = {0: (t, room_d - off), 1: (off, t), 2: (t, off), 3: (room_w - off, t)}[wall]
            r = max(length, depth) / 2
        else:
            yaw, r = rng.uniform(0, 2 * math.pi), radius
            if room_w < 2 * r + 0.2 or room_d < 2 * r + 0.2:
                continue
            x, y = rng.uniform(r + 0.1, room_w - r - 0.1), rng.uniform(r + 0.1, room_d - r - 0.1)
        if all(math.hypot(x - px, y - py) > 0.9 * (r + pr) for px, py, pr in placed):
            placed.append((x, y, r))
            return x, y, yaw
    return None


def make_room(rng: np.random.Generator, opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One room: coord (n, 3) float64 shifted to min 0, color (n, 3) uint8, label (n,) int64."""
    room = _Room(rng, opts["points_per_m2"])
    w, d = (rng.uniform(*opts["room_size"]) for _ in range(2))
    h = rng.uniform(*opts["room_height"])
    for label, name in enumerate(STRUCTURE_CLASSES):
        colour = room.colour(name, jitter=0.04)
        if name == "wall":
            for origin, u in (((0, 0, 0), (w, 0, 0)), ((0, d, 0), (w, 0, 0)), ((0, 0, 0), (0, d, 0)),
                              ((w, 0, 0), (0, d, 0))):
                room.add(room.rect(origin, u, (0, 0, h)), colour, label)
        else:
            room.add(room.rect((0, 0, 0 if name == "floor" else h), (w, 0, 0), (0, d, 0)), colour, label)
    enabled = OBJECT_CLASSES[: opts["num_classes"]]
    placed: list[tuple[float, float, float]] = []
    # one object of every enabled class first (in random order), so that nearly every room, and
    # hence every split and step, shows every class; then random extras up to the object density
    extra = max(0, int(rng.poisson(opts["objects_per_m2"] * w * d)) - len(enabled))
    picks = np.concatenate([rng.permutation(len(enabled)), rng.integers(len(enabled), size=extra)])
    names = [enabled[int(i)] for i in picks]
    for name in names:
        builder, against_wall = _BUILDERS[name]
        parts, footprint = builder(room, opts["object_density"])
        spot = _free_spot(w, d, footprint, against_wall, rng, placed)
        if spot is None:
            continue  # the room is full: the object is simply not built
        colour = room.colour(name)
        for points, own in parts:  # own: a part's colour differing from the class colour (lamp pole, books)
            label = len(STRUCTURE_CLASSES) + enabled.index(name)
            room.add(_place(points, *spot), colour if own is None else own, label)
    coord = np.concatenate([p for p, _, _ in room.parts])
    coord = shift_to_origin(coord + rng.normal(0, _POSITION_NOISE, coord.shape))
    color = np.round(255 * np.concatenate([c for _, c, _ in room.parts])).astype(np.uint8)
    label = np.concatenate([np.full(len(p), lab, dtype=np.int64) for p, _, lab in room.parts])
    return coord, color, label


def _rooms(split: str, opts: dict[str, Any]):
    for index in range(opts["num_rooms"][split]):
        rng = np.random.default_rng([opts["seed"], SPLIT_CODES[split], index])
        yield f"{split}_room_{index:03d}", *make_room(rng, opts)


def _blocks(split: str, opts: dict[str, Any], stats: dict[str, int]):
    for scene, coord, color, label in _rooms(split, opts):
        tiles = sweep_with_origins(coord, block_size=opts["block_size"], stride=opts["stride"],
                                   min_points=opts["min_points"])
        for k, (idx, origin) in enumerate(tiles):
            stats["points"] += len(idx)
            yield {"coord": coord[idx].astype(np.float32), "color": color[idx], "labels": {"reference": label[idx]},
                   "block_id": f"{scene}_block_{k}", "scene": scene, "origin": origin}


def generate(root_dir: str | os.PathLike, *, options: dict[str, Any] | None = None) -> dict[str, dict[str, int]]:
    """Write ``train.h5`` and ``test.h5`` of the benchmark into ``root_dir``, and the rooms whole in
    ``train_scenes.h5`` and ``test_scenes.h5``; returns the blocks
    and points of each split."""
    opts = synthetic_options(options)
    root = Path(root_dir)
    summary = {}
    for split in SPLIT_CODES:
        stats = {"points": 0}
        blocks = write_split(root / f"{split}.h5", _blocks(split, opts, stats), dataset="synthetic", split=split,
                             class_names=list(class_names(opts)), block_size=opts["block_size"],
                             stride=opts["stride"], min_points=opts["min_points"],
                             attrs={"background": -1, "generator": GENERATOR_VERSION,
                                    "options": json.dumps(opts, sort_keys=True)})
        # the rooms whole, for data.unit: scene (docs/pointcloud-scenes.md#data)
        rooms = ({"coord": coord.astype(np.float32), "color": color, "labels": {"reference": label}, "block_id": scene,
                  "scene": scene, "origin": np.zeros(2, np.float32)} for scene, coord, color, label in _rooms(split, opts))
        write_split(root / scene_file(split), rooms, dataset="synthetic", split=split,
                    class_names=list(class_names(opts)), block_size=0.0, stride=0.0, min_points=0,
                    attrs={"background": -1, "generator": GENERATOR_VERSION, "unit": "scene",
                           "options": json.dumps(opts, sort_keys=True)})
        summary[split] = {"rooms": opts["num_rooms"][split], "blocks": blocks, "points": stats["points"]}
    return summary

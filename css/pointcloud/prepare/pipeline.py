"""The dataset-independent part of a preparation: scenes -> partial files -> split files.

A source (s3dis, scannet, folder) lists its scenes; each scene has a module-level loader that
returns its points (:class:`SceneData`). Every scene is cut into blocks and written to its own
partial file ``OUT/.partial/<split>/<scene>.npz`` (atomically), together with the whole scene.
Only when every scene is done are the split files assembled from the partials, in sorted scene
order: ``<split>.h5`` with the blocks and ``<split>_scenes.h5`` with every scene whole (each point
once; docs/pointcloud-data.md#whole-scenes); then ``.partial`` is removed.
An interrupted run therefore resumes where it stopped, and a resumed run writes the same files
as an uninterrupted one: both assemble from the same partials (docs/pointcloud-data.md#resume).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from css.errors import DataError
from css.pointcloud import store
from css.pointcloud.prepare.blocks import shift_to_origin, sweep_with_origins
from css.utils import atomic_write_bytes, atomic_write_text

SPLITS = ("train", "test")
PARTIAL_VERSION = 2  # 2: the partial keeps the whole scene too


@dataclass
class Options:
    block_size: float = 1.0
    stride: float = 1.0
    min_points: int = 1000
    repair: bool = False
    workers: int = 1


@dataclass
class SceneData:
    """One scene's points: coord (n, 3) float64 metres, color (n, 3) uint8, labels per label set."""

    coord: np.ndarray
    color: np.ndarray
    labels: dict[str, np.ndarray]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    repairs: list[dict[str, Any]] = field(default_factory=list)   # {file, line, action}
    notes: list[str] = field(default_factory=list)                 # facts for the summary


@dataclass
class Scene:
    """A scene to prepare: ``load(*args, repair=...)`` returns its :class:`SceneData`.

    ``load`` must be a module-level function (it is sent to worker processes). ``files`` are the raw
    files the scene is read from: their sizes enter the partial file's fingerprint, so a partial
    made from different raw data is redone.
    """

    name: str
    split: str
    load: Callable[..., SceneData]
    args: tuple
    files: tuple[Path, ...]


@dataclass
class Source:
    dataset: str
    raw: Path
    class_names: list[str]
    scenes: list[Scene]
    label_sets: tuple[str, ...] = ("reference",)
    extra: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)   # facts the summary reports (e.g. unlisted scenes)


# --- one scene --------------------------------------------------------------------------------

def _fingerprint(source: Source, scene: Scene, options: Options) -> str:
    """What a partial file depends on. ``repair`` is left out on purpose: a scene without defects
    gives the same blocks either way, and a scene with defects never got a partial without it, so
    a rerun with ``--repair`` after a failure keeps the scenes already done."""
    sizes = []
    for path in scene.files:
        try:
            sizes.append([str(path), path.stat().st_size])
        except OSError:
            sizes.append([str(path), -1])
    key = dict(version=PARTIAL_VERSION, dataset=source.dataset, scene=scene.name, split=scene.split,
               block_size=options.block_size, stride=options.stride, min_points=options.min_points,
               class_names=source.class_names, label_sets=list(source.label_sets),
               extra=list(source.extra), files=sizes)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def partial_path(out: Path, scene: Scene) -> Path:
    return out / ".partial" / scene.split / f"{scene.name}.npz"


def cut_scene(data: SceneData, source: Source, scene: Scene, options: Options) -> dict[str, np.ndarray]:
    """The blocks of one scene as the arrays of its partial file."""
    n = len(data.coord)
    coord = shift_to_origin(np.asarray(data.coord, dtype=np.float64))
    blocks = sweep_with_origins(coord, block_size=options.block_size, stride=options.stride,
                                min_points=options.min_points)
    index = np.concatenate([b for b, _ in blocks]) if blocks else np.zeros(0, np.int64)
    arrays: dict[str, np.ndarray] = {
        "coord": coord[index].astype(np.float32),
        "color": np.asarray(data.color, dtype=np.uint8)[index],
        "offsets": np.cumsum([0] + [len(b) for b, _ in blocks]).astype(np.int64),
        "origin": np.asarray([o for _, o in blocks], dtype=np.float32).reshape(-1, 2),
    }
    num = len(source.class_names)
    raw_counts = {}
    for s in source.label_sets:
        lab = np.asarray(data.labels[s], dtype=np.int64)
        if len(lab) != n:
            raise ValueError(f"scene {scene.name}: {len(lab)} {s} labels for {n} points")
        arrays["label_" + s] = lab[index].astype(np.int16)
        raw_counts[s] = np.bincount(lab[(lab >= 0) & (lab < num)], minlength=num).tolist()
    for name in source.extra:
        arrays["extra_" + name] = np.asarray(data.extra[name], dtype=np.uint8)[index]
    # the whole scene, each point once and in its order (docs/pointcloud-data.md#whole-scenes)
    arrays["scene_coord"] = coord.astype(np.float32)
    arrays["scene_color"] = np.asarray(data.color, dtype=np.uint8)
    for s in source.label_sets:
        arrays["scene_label_" + s] = np.asarray(data.labels[s]).astype(np.int16)
    for name in source.extra:
        arrays["scene_extra_" + name] = np.asarray(data.extra[name], dtype=np.uint8)
    meta = dict(scene=scene.name, split=scene.split, raw_points=n, raw_counts=raw_counts,
                repairs=data.repairs, notes=data.notes)
    arrays["meta"] = np.asarray(json.dumps(meta))
    return arrays


def process_scene(source: Source, scene: Scene, options: Options, out: Path) -> None:
    """Load, cut and write one scene's partial file (runs in a worker process when workers > 1)."""
    data = scene.load(*scene.args, repair=options.repair)
    arrays = cut_scene(data, source, scene, options)
    arrays["fingerprint"] = np.asarray(_fingerprint(source, scene, options))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(partial_path(out, scene), buffer.getvalue())


def read_partial(path: Path, source: Source, scene: Scene, options: Options) -> dict[str, Any] | None:
    """The partial file's arrays, or None when it is missing, unreadable, inconsistent or was made
    with other options or raw files (such a partial is redone)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if str(arrays["fingerprint"]) != _fingerprint(source, scene, options):
            return None
        meta = json.loads(str(arrays["meta"]))
        offsets, coord = arrays["offsets"], arrays["coord"]
        n = len(coord)
        ok = (meta.get("scene") == scene.name and coord.ndim == 2 and coord.shape[1] == 3
              and arrays["color"].shape == (n, 3) and len(offsets) == len(arrays["origin"]) + 1
              and offsets[0] == 0 and offsets[-1] == n and bool(np.all(np.diff(offsets) > 0))
              and all(arrays["label_" + s].shape == (n,) for s in source.label_sets)
              and all(arrays["extra_" + e].shape == (n,) for e in source.extra)
              and _whole_scene_ok(arrays, source, int(meta.get("raw_points", -1))))
        if not ok:
            return None
        arrays["meta"] = meta
        return arrays
    except Exception:  # noqa: BLE001 - any damage (truncated zip, missing key) means: redo it
        return None


def _whole_scene_ok(arrays: dict[str, Any], source: Source, n: int) -> bool:
    return (arrays["scene_coord"].shape == (n, 3) and arrays["scene_color"].shape == (n, 3)
            and all(arrays["scene_label_" + s].shape == (n,) for s in source.label_sets)
            and all(arrays["scene_extra_" + e].shape == (n,) for e in source.extra))


# --- the whole preparation ---------------------------------------------------------------------

def _progress(total: int, desc: str):
    """tqdm on a terminal only: a log file should not fill with progress bars."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="scene", disable=not sys.stderr.isatty(), file=sys.stderr)


def _points_in(path: Path) -> int:
    """Points of a partial file, reading only its offsets (lets the split file be contiguous)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["offsets"][-1])
    except Exception as exc:  # noqa: BLE001 - a partial damaged since it was checked
        raise DataError(f"partial file {path} cannot be read back ({exc}); check the free disk space and "
                        f"that no other preparation writes to {path.parents[2]}") from exc


def _read_back(source: Source, scene: Scene, options: Options, out: Path) -> dict[str, Any]:
    part = read_partial(partial_path(out, scene), source, scene, options)
    if part is None:  # written a moment ago: only a full disk or a concurrent run gets here
        raise DataError(f"partial file {partial_path(out, scene)} cannot be read back; check the free "
                        f"disk space and that no other preparation writes to {out}")
    return part


def _whole_scenes(source: Source, scenes: list[Scene], options: Options, out: Path) -> Iterator[dict[str, Any]]:
    """Every scene of ``scenes`` whole, as one "block" of the scene file (id = scene name, origin 0)."""
    for scene in scenes:
        part = _read_back(source, scene, options, out)
        whole = {"coord": part["scene_coord"], "color": part["scene_color"],
                 "labels": {s: part["scene_label_" + s] for s in source.label_sets},
                 "block_id": scene.name, "scene": scene.name, "origin": np.zeros(2, np.float32)}
        for name in source.extra:
            whole[name] = part["scene_extra_" + name]
        yield whole


def _blocks(source: Source, scenes: list[Scene], options: Options, out: Path,
            metas: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every block of ``scenes`` in order, reading one partial file at a time (a split of the real
    data holds a few GB of points, more than should sit in memory at once)."""
    for scene in scenes:
        part = _read_back(source, scene, options, out)
        metas.append(part["meta"])
        offsets = part["offsets"]
        for k in range(len(offsets) - 1):
            a, b = int(offsets[k]), int(offsets[k + 1])
            block = {"coord": part["coord"][a:b], "color": part["color"][a:b],
                     "labels": {s: part["label_" + s][a:b] for s in source.label_sets},
                     "block_id": f"{scene.name}_block_{k}", "scene": scene.name, "origin": part["origin"][k]}
            for name in source.extra:
                block[name] = part["extra_" + name][a:b]
            yield block


def prepare(source: Source, out: str | os.PathLike, options: Options, *,
            after_scene: Callable[[Scene], None] | None = None) -> dict[str, Any]:
    """Prepare every scene of ``source`` into ``out`` and return the summary (also written to
    ``out/summary.json``). ``after_scene`` is called after each newly processed scene (tests use it
    to interrupt a run)."""
    from css.pointcloud.prepare.summary import build_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenes = sorted(source.scenes, key=lambda s: (SPLITS.index(s.split), s.name))
    names = [(s.split, s.name) for s in scenes]
    if len(set(names)) != len(names):
        dup = sorted({f"{n} ({split})" for split, n in names if names.count((split, n)) > 1})
        raise DataError(f"{source.raw}: scene names {dup[:10]} occur more than once in a split; every scene "
                        f"of a split needs a unique name (rename the files or folders)")
    todo, redone = [], []
    for scene in scenes:
        path = partial_path(out, scene)
        if read_partial(path, source, scene, options) is None:
            todo.append(scene)
            if path.exists():
                redone.append(scene.name)
    resumed = len(scenes) - len(todo)
    with _progress(len(scenes), f"{source.dataset} scenes") as bar:
        bar.update(resumed)
        if options.workers > 1 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(options.workers)
            try:
                futures = [(s, pool.submit(process_scene, source, s, options, out)) for s in todo]
                for scene, future in futures:
                    future.result()
                    bar.update(1)
                    if after_scene:
                        after_scene(scene)
            finally:
                # on an error, scenes not yet started are dropped rather than run to no purpose
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for scene in todo:
                process_scene(source, scene, options, out)
                bar.update(1)
                if after_scene:
                    after_scene(scene)
    metas: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        members = [s for s in scenes if s.split == split]
        store.write_split(out / f"{split}.h5", _blocks(source, members, options, out, metas[split]),
                          dataset=source.dataset, split=split, class_names=source.class_names,
                          block_size=options.block_size, stride=options.stride, min_points=options.min_points,
                          label_sets=source.label_sets, extra=source.extra, attrs=source.attrs,
                          num_points=sum(_points_in(partial_path(out, s)) for s in members))
        store.write_split(out / store.scene_file(split), _whole_scenes(source, members, options, out),
                          dataset=source.dataset, split=split, class_names=source.class_names, block_size=0.0,
                          stride=0.0, min_points=0, label_sets=source.label_sets, extra=source.extra,
                          attrs={**source.attrs, "unit": "scene"},
                          num_points=sum(m["raw_points"] for m in metas[split]))
    summary = build_summary(source, options, out, metas, resumed=resumed, redone=redone)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(out / ".partial", ignore_errors=True)
    return summary

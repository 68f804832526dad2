"""``python -m css.predict --checkpoint RUN/stepT/model.pt --clouds FILES_OR_FOLDERS --out DIR``: point clouds.

docs/pointcloud-evaluation.md#predictions. Inputs (``--clouds``, or ``--split test`` for the prepared
split the checkpoint's config names):

- a prepared split file (``.h5``, python -m css.pointcloud.prepare): every block is a cloud, or the
  blocks ``--blocks ID,...``, or whole scenes ``--scenes NAME,...`` (the union of their blocks: a
  point stored in two blocks, on a border, is one point whose votes from both blocks are summed);
- a scan in a folder format (``.npz``, ``.ply``, ``.las``, ``.laz``; docs/pointcloud-data.md#folder),
  cut into ``--block-size`` tiles as prepare cuts them; labels, when the file has them, are the
  ground truth (LAS/LAZ through the ``asprs`` table of a classes.yaml beside the file or one
  folder up);
- a folder: every such file in it and below it.

Every point is predicted with full coverage (css.pointcloud.coverage); blocks of a prepared test
split get the permutation the full-coverage metric uses, so the colours show that metric's points.
A checkpoint trained on whole scenes (``data.unit: scene``) predicts every cloud whole, as its test
metric does (css.pointcloud.scenes.evaluation); ``--split`` then reads the split's scene file.
Per cloud: ``<name>_pred.ply``, with labels ``<name>_gt.ply`` and ``<name>_error.ply``, with
``--png`` ``<name>.png`` (GT | prediction | errors); ``legend.json`` / ``legend.txt`` give every
channel's dataset label, name and colour.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from css.colours import CORRECT_RGB, IGNORED_RGB, WRONG_RGB, error_colours, label_colours
from css.errors import CSSError, DataError
from css.pointcloud import render
from css.pointcloud.coverage import FULL_SEED_SALT, Item, predict_items
from css.pointcloud.data import sample_features
from css.pointcloud.prepare.las import SUFFIXES as LAS_SUFFIXES
from css.pointcloud.store import IGNORE_LABEL

SCAN_SUFFIXES = (".npz", ".ply") + LAS_SUFFIXES
PREPARED_SUFFIX = ".h5"


@dataclass
class Cloud:
    """One output: points in scene coordinates, dataset labels (None: no ground truth) and the
    blocks (index arrays into the points, each predicted on its own; their votes are summed)."""

    name: str
    source: Path
    coord: np.ndarray
    color: np.ndarray
    label: np.ndarray | None
    blocks: list[np.ndarray]
    seeds: list[int | None]
    """Permutation seed key of every block: the store index for prepared blocks, else None (file order)."""


def add_arguments(p) -> None:
    p.add_argument("--blocks", help="prepared files: predict these block ids (comma-separated)")
    p.add_argument("--scenes", help="prepared files: predict these whole scenes (comma-separated names)")
    p.add_argument("--block-size", type=float, default=1.0,
                   help="scans: tile size in metres (default 1.0, as python -m css.pointcloud.prepare)")
    p.add_argument("--png", action="store_true", help="also render <name>.png: GT | prediction | errors")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def collect_inputs(paths: list[str]) -> list[Path]:
    """The files named or found in the folders named, in order; clean errors for anything else."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in
                           SCAN_SUFFIXES + (PREPARED_SUFFIX,))
            if not found:
                raise CSSError(f"folder {p} holds no point clouds ({', '.join(SCAN_SUFFIXES + (PREPARED_SUFFIX,))})")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in SCAN_SUFFIXES + (PREPARED_SUFFIX,):
                raise CSSError(f"{p}: unknown point-cloud format {p.suffix!r}; give a prepared split (.h5) or a "
                               f"scan ({', '.join(SCAN_SUFFIXES)})")
            files.append(p)
        else:
            raise CSSError(f"point cloud {p} does not exist")
    return files


# --------------------------------------------------------------------------- prepared splits
def prepared_clouds(path: Path, *, blocks: list[str] | None, scenes: list[str] | None,
                    label_set: str) -> Iterator[Cloud]:
    from css.pointcloud.store import BlockStore

    store = BlockStore(path)
    if blocks is not None:
        index = {b: i for i, b in enumerate(store.ids)}
        unknown = [b for b in blocks if b not in index]
        if unknown:
            raise DataError(f"{path} has no block {unknown[0]!r} (it has {len(store)} blocks, e.g. "
                            f"{', '.join(store.ids[:3])}); check --blocks")
        for b in blocks:
            yield store_cloud(store, b, [index[b]], label_set)
        return
    if scenes is not None:
        unknown = [s for s in scenes if s not in store.scenes]
        if unknown:
            names = list(dict.fromkeys(store.scenes))
            raise DataError(f"{path} has no scene {unknown[0]!r} (it has {len(names)} scenes, e.g. "
                            f"{', '.join(names[:3])}); check --scenes")
        for s in scenes:
            yield store_cloud(store, s, [i for i, name in enumerate(store.scenes) if name == s], label_set)
        return
    for i, b in enumerate(store.ids):
        yield store_cloud(store, b, [i], label_set)


def store_cloud(store, name: str, indices: list[int], label_set: str) -> Cloud:
    parts = [store.block(i, label_set) for i in indices]
    coord = np.concatenate([p["coord"] for p in parts]).astype(np.float64)
    color = np.concatenate([p["color"] for p in parts])
    label = np.concatenate([p["label"] for p in parts])
    sizes = [len(p["label"]) for p in parts]
    owner = np.arange(len(coord), dtype=np.int64)
    if len(parts) > 1:
        # The store keeps no scene index per point: a point on a block border is stored once per
        # block, with the same float32 coordinates and colour. Identical rows are one scene point.
        rows = np.concatenate([coord, color.astype(np.float64)], axis=1)
        _, first, owner = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        owner = owner.reshape(-1)
        coord, color, label = coord[first], color[first], label[first]
    blocks = np.split(owner, np.cumsum(sizes)[:-1])
    return Cloud(name, store.path, coord, color, label, list(blocks), list(indices))


# --------------------------------------------------------------------------- scans
def scan_cloud(path: Path, *, block_size: float) -> Cloud:
    from css.pointcloud.prepare.blocks import sweep

    coord, color, label = read_scan(path)
    if len(coord) == 0:
        raise DataError(f"{path} holds no points")
    # every point in some tile (min_points=1), tiles as prepare lays them on the shifted scene
    shifted = coord - coord.min(0)
    blocks = sweep(shifted, block_size=block_size, stride=block_size, min_points=1)
    return Cloud(path.stem, path, coord, color, label, blocks, [None] * len(blocks))


def read_scan(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """coord (n, 3) float64, color (n, 3) uint8, labels (n,) int64 or None."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} cannot be read as .npz ({exc})") from exc
        if "coord" not in arrays:
            raise DataError(f"{path} has no array 'coord' (it has {sorted(arrays)}); save coord (N, 3), "
                            f"optionally color (N, 3) and label (N,)")
        coord, color, label = arrays["coord"], arrays.get("color"), arrays.get("label")
    elif suffix == ".ply":
        from css.pointcloud.prepare.ply import read_vertices

        v = read_vertices(path, wanted=("label", "class"))
        coord, color, label = v["coord"], v["color"], v.get("label", v.get("class"))
    else:
        coord, color, label = _read_las(path)
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or not np.issubdtype(coord.dtype, np.number):
        raise DataError(f"{path}: coord has shape {coord.shape} ({coord.dtype}); it must be (N, 3) numbers")
    coord = coord.astype(np.float64)
    if not np.isfinite(coord).all():
        raise DataError(f"{path}: coord holds NaN or infinite values; remove those points")
    n = len(coord)
    color = np.zeros((n, 3), np.uint8) if color is None else np.asarray(color)
    if color.shape != (n, 3) or (n and (color.min() < 0 or color.max() > 255)):
        raise DataError(f"{path}: color must be (N, 3) = ({n}, 3) values 0-255, got shape {color.shape}")
    if label is not None:
        label = np.asarray(label)
        if label.shape != (n,) or not np.issubdtype(label.dtype, np.integer):
            raise DataError(f"{path}: label has shape {label.shape} ({label.dtype}); it must be (N,) integers")
        label = label.astype(np.int64)
    return coord, color.astype(np.uint8), label


def _read_las(path: Path):
    from css.pointcloud.prepare import las
    from css.pointcloud.prepare.folder import read_classes

    classes_file = next((d / "classes.yaml" for d in (path.parent, path.parent.parent)
                         if (d / "classes.yaml").is_file()), None)
    table, has_labels = np.full(las.NUM_CODES, IGNORE_LABEL, dtype=np.int64), False
    if classes_file is not None:
        classes, _, _, text = read_classes(classes_file)
        mapping = las.read_asprs(classes_file, text, classes)
        if mapping is not None:
            table, has_labels = mapping, True
    scene = las.load_file(str(path), tuple(int(v) for v in table), repair=False)
    return scene.coord, scene.color, scene.labels["reference"] if has_labels else None


# --------------------------------------------------------------------------- prediction
def predict_clouds(model: torch.nn.Module, clouds: Iterator[Cloud], *, cfg, task, step: int, env,
                   predict) -> Iterator[tuple[Cloud, np.ndarray]]:
    """(cloud, predicted channel per point) for every cloud, with full coverage."""
    from css.config.schema import step_value

    # the dataset's own feature step (no augmentation, as at test), for prepared blocks and scan tiles
    features = partial(sample_features, height_feature=bool(cfg.data.height_feature))
    kept: dict[str, Cloud] = {}

    def items():
        for cloud in clouds:
            kept[cloud.name] = cloud
            parts = []
            for idx, key in zip(cloud.blocks, cloud.seeds):
                rng = None if key is None else np.random.default_rng([int(cfg.data.eval_seed), FULL_SEED_SALT, key])
                parts.append(({"coord": cloud.coord[idx].astype(np.float32), "color": cloud.color[idx]}, idx, rng))
            yield Item(cloud.name, len(cloud.coord), parts)

    batch = cfg.train.eval_batch_size or step_value(cfg, "batch_size", step)
    for name, scores, votes in predict_items(model, items(), num_points=cfg.data.num_points, batch_size=batch,
                                             features=features, num_classes=task.num_classes(step),
                                             device=env.device, precision=cfg.train.precision):
        cloud = kept.pop(name)
        if bool((votes == 0).any()):
            raise RuntimeError(f"{cloud.source}: {int((votes == 0).sum())} points of {name} got no prediction")
        yield cloud, predict(scores).numpy()


def predict_scenes(model: torch.nn.Module, clouds: Iterator[Cloud], *, cfg, task, step: int, env,
                   predict) -> Iterator[tuple[Cloud, np.ndarray]]:
    """(cloud, predicted channel per point) for every cloud, each predicted whole (a scene model)."""
    from css.config.schema import step_value
    from css.pointcloud.scenes.evaluation import CloudFragments, scene_probabilities

    batch = cfg.train.eval_batch_size or step_value(cfg, "batch_size", step)
    for cloud in clouds:
        _, probs, _ = scene_probabilities(model, CloudFragments([(cloud.coord, cloud.color)], cfg.data.voxel_size), 0,
                                          num_classes=task.num_classes(step), device=env.device, batch_size=batch,
                                          precision=cfg.train.precision, rotations=cfg.data.tta_rotations)
        yield cloud, predict(probs.t().unsqueeze(0))[0].cpu().numpy()


def write_outputs(out: Path, cloud: Cloud, pred: np.ndarray, target: np.ndarray | None, colours: np.ndarray,
                  legend_entries, *, png: bool) -> list[str]:
    base = out / _safe(cloud.name)
    written = [f"{base.name}_pred.ply"]
    render.write_ply(f"{base}_pred.ply", cloud.coord, colours[pred])
    panels = [("prediction", colours[pred])]
    if target is not None:
        gt, err = label_colours(target, colours), error_colours(pred, target, len(colours))
        render.write_ply(f"{base}_gt.ply", cloud.coord, gt)
        render.write_ply(f"{base}_error.ply", cloud.coord, err)
        written += [f"{base.name}_gt.ply", f"{base.name}_error.ply"]
        panels = [("ground truth", gt), panels[0], ("errors (red)", err)]
    if png:
        render.render_png(f"{base}.png", cloud.coord, panels, legend=legend_entries, title=cloud.name)
        written.append(f"{base.name}.png")
    return written


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) or "cloud"


def legend(task, step: int, colours: np.ndarray, checkpoint: str) -> dict:
    order, names = task.order(step), task.channel_names(step)
    return {"checkpoint": str(checkpoint), "step": step, "task": task.name, "dataset": task.dataset,
            "classes": [{"channel": c, "label": int(order[c]), "name": names[c], "rgb": colours[c].tolist()}
                        for c in range(len(order))],
            "ignored_rgb": list(IGNORED_RGB),
            "error": {"correct": list(CORRECT_RGB), "wrong": list(WRONG_RGB),
                      "ignored": list(IGNORED_RGB)},
            "note": "colours are per model channel; ground truth shows the classes learnt by this step "
                    "(later classes are background), as the test metric counts them"}


def run(args, cfg, load) -> int:
    """The point-cloud half of ``python -m css.predict`` (css/predict.py parses the arguments;
    ``load()`` gives the checkpoint's (env, task, step, model))."""
    from css.pointcloud.channels import class_predictor
    from css.pointcloud.data import label_set, open_split, remap_labels
    from css.utils import atomic_write_text

    if args.blocks is not None and args.scenes is not None:
        raise CSSError("give --blocks or --scenes, not both")
    if args.block_size <= 0:
        raise CSSError(f"--block-size must be positive, got {args.block_size}")
    env, task, step, model = load()
    if args.split:
        files = [open_split(cfg.data.dataset, cfg.data.root, args.split, options=cfg.data.options or None,
                            unit=cfg.data.unit).path]
    else:
        files = collect_inputs(args.clouds)
    if (args.blocks or args.scenes) and not any(f.suffix == PREPARED_SUFFIX for f in files):
        raise CSSError("--blocks / --scenes select blocks of prepared split files (.h5); none was given")

    def clouds() -> Iterator[Cloud]:
        from css.pointcloud.store import BlockStore

        for f in files:
            if f.suffix == PREPARED_SUFFIX:
                ls = label_set(BlockStore(f), cfg.protocol)
                yield from prepared_clouds(f, blocks=_names(args.blocks), scenes=_names(args.scenes), label_set=ls)
            else:
                yield scan_cloud(f, block_size=args.block_size)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    colours = render.class_colours(task.num_classes(step))
    doc = legend(task, step, colours, args.checkpoint)
    entries = [(f"{c['channel']} {c['name']}", c["rgb"]) for c in doc["classes"]]
    count, seen = 0, set()
    predicted = predict_scenes if cfg.data.unit == "scene" else predict_clouds
    for cloud, pred in predicted(model, clouds(), cfg=cfg, task=task, step=step, env=env,
                                 predict=class_predictor(task, step)):
        if _safe(cloud.name) in seen:
            raise CSSError(f"two inputs are both named {cloud.name!r} ({cloud.source}); predict them into "
                           f"different --out folders")
        seen.add(_safe(cloud.name))
        target = None
        if cloud.label is not None:
            try:
                target = remap_labels(task, cloud.label, step, "test", protocol=cfg.protocol,
                                      overlap=cfg.data.overlap)
            except DataError as exc:
                raise DataError(f"{cloud.source} ({cloud.name}): {exc}") from exc
        written = write_outputs(out, cloud, pred, target, colours, entries, png=args.png)
        line = f"{cloud.name}: {len(pred)} points"
        if target is not None:
            valid = target != IGNORE_LABEL
            line += f", {100.0 * float((pred[valid] == target[valid]).mean()) if valid.any() else float('nan'):.2f} % correct"
        print(f"{line} -> {', '.join(written)}")
        count += 1
    atomic_write_text(out / "legend.json", json.dumps(doc, indent=2) + "\n")
    lines = [f"step {step} of task {task.name} ({task.dataset}); channel, dataset label, name, RGB"]
    lines += [f"{c['channel']:3d} {c['label']:4d} {c['name']:<20s} {tuple(c['rgb'])}" for c in doc["classes"]]
    lines += [f"ignored (ground truth): {IGNORED_RGB}",
              f"errors: correct {CORRECT_RGB}, wrong {WRONG_RGB}, ignored {IGNORED_RGB}"]
    atomic_write_text(out / "legend.txt", "\n".join(lines) + "\n")
    print(f"wrote {count} point cloud(s) and legend.json / legend.txt to {out}")
    return 0

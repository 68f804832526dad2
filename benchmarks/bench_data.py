"""Image data pipeline: decode + train augmentation throughput, label cache and step filters.

1. Throughput (images/s) of ``build_dataset("voc", ...)`` with ``train_transform(512)`` through a
   DataLoader with 0 and 2 workers, on generated VOC-like 500x375 JPEG/PNG pairs (procedural
   scenes from css.image.synthetic, so the files compress like natural images rather than noise).
   Decode alone (no transform) is timed too.
2. The label-histogram scan of the split (cold) against reading the cache (warm).
3. Building every step's subset of VOC-15-1 and ADE-100-10 sized presence matrices (10,582 x 21,
   20,210 x 151, random), with ``subset_indices`` and with a per-image ``Task.keep`` loop.
4. ``build_dataset`` for every VOC 15-1 step, split and setting from a warm cache, on a list of
   10,582 tiny files (the cost is listing, stat-ing the files for the cache key and filtering).

Usage: python benchmarks/bench_data.py [--quick]
Writes benchmarks/results/data.json and benchmarks/results/data.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from css.image.data import build_dataset, label_histograms, load_split, subset_indices  # noqa: E402
from css.image.synthetic import SyntheticScenes  # noqa: E402
from css.image.transforms import train_transform  # noqa: E402
from css.tasks.registry import get_task
from css.utils import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def write_voc_like(root: Path, count: int) -> None:
    """``count`` 500x375 JPEG/PNG pairs in the VOC layout, train list only
    (docs/protocol-2d.md#datasets-on-disk)."""
    voc = root / "PascalVOC2012"
    images = voc / "VOCdevkit" / "VOC2012" / "JPEGImages"
    labels = voc / "SegmentationClassAug"
    for folder in (images, labels, voc / "list"):
        folder.mkdir(parents=True, exist_ok=True)
    scenes = SyntheticScenes(count, (375, 500), num_classes=20, seed=0)
    lines = []
    for i in range(count):
        image, mask = scenes[i]
        stem = f"2010_{i:06d}"
        Image.fromarray(image).save(images / f"{stem}.jpg", quality=90)
        Image.fromarray(mask, mode="L").save(labels / f"{stem}.png")
        lines.append(f"/JPEGImages/{stem}.jpg /SegmentationClassAug/{stem}.png\n")
    (voc / "list" / "train_aug.txt").write_text("".join(lines))


def write_tiny_voc(root: Path, count: int) -> None:
    """``count`` 16x16 pairs in the VOC layout, each showing one or two random classes."""
    voc = root / "PascalVOC2012"
    images = voc / "VOCdevkit" / "VOC2012" / "JPEGImages"
    labels = voc / "SegmentationClassAug"
    for folder in (images, labels, voc / "list"):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = Image.new("RGB", (16, 16))
    lines = []
    for i in range(count):
        stem = f"2008_{i:06d}"
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[2:8, 2:8], mask[9:14, 9:14] = rng.integers(1, 21, size=2)
        pixels.save(images / f"{stem}.jpg")
        Image.fromarray(mask, mode="L").save(labels / f"{stem}.png")
        lines.append(f"/JPEGImages/{stem}.jpg /SegmentationClassAug/{stem}.png\n")
    (voc / "list" / "train_aug.txt").write_text("".join(lines))
    (voc / "list" / "val.txt").write_text("".join(lines[: count // 7]))


def time_cached_builds(root: Path, count: int) -> dict[str, float]:
    """Seconds for the first build (scan) and for all VOC 15-1 builds from the warm cache."""
    write_tiny_voc(root, count)
    task = get_task("voc", "15-1")
    start = time.perf_counter()
    for split in ("train", "test"):
        build_dataset("voc", root, task=task, step=0, split=split, cache_dir=root / "cache")
    cold = time.perf_counter() - start
    combos = [(s, split, ov) for s in range(task.num_steps) for split in ("train", "test") for ov in (True, False)]
    start = time.perf_counter()
    for step, split, overlap in combos:
        build_dataset("voc", root, task=task, step=step, split=split, overlap=overlap, cache_dir=root / "cache")
    warm = time.perf_counter() - start
    # What a run does (css.image.modality): check and index each split once, derive every subset.
    start = time.perf_counter()
    index = {split: load_split("voc", root, split, cache_dir=root / "cache") for split in ("train", "test")}
    for step, split, overlap in combos:
        build_dataset("voc", root, task=task, step=step, split=split, overlap=overlap, index=index[split])
    indexed = time.perf_counter() - start
    return {"images": count, "builds": len(combos), "first_build_s": cold, "cached_builds_s": warm,
            "indexed_builds_s": indexed}


def time_loader(dataset, workers: int, batch_size: int, epochs: int) -> float:
    """Images per second over ``epochs`` passes (the first batch, i.e. worker start-up, excluded)."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True,
                        persistent_workers=workers > 0, drop_last=False)
    torch.manual_seed(0)
    images, start = 0, None
    for _ in range(epochs):
        for batch, _target in loader:
            if start is None:
                start = time.perf_counter()
                continue
            images += batch.shape[0]
    return images / (time.perf_counter() - start)


def time_subsets(presence: np.ndarray, task) -> dict[str, float]:
    """Seconds to build every (step, split, setting) subset: vectorised and per-image loop."""
    combos = [(s, split, ov) for s in range(task.num_steps) for split in ("train", "test") for ov in (True, False)]
    start = time.perf_counter()
    fast = [subset_indices(presence, task, *combo) for combo in combos]
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    slow = [
        np.array([i for i in range(len(presence)) if task.keep(np.flatnonzero(presence[i]), *combo)])
        for combo in combos
    ]
    loop = time.perf_counter() - start
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow))
    return {"subsets": len(combos), "subset_indices_s": vectorised, "per_image_keep_s": loop}


def random_presence(rng: np.random.Generator, images: int, labels: int, per_image: float) -> np.ndarray:
    presence = rng.random((images, labels)) < per_image / labels
    presence[:, 0] = True
    return presence


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Image data pipeline",
        "",
        f"Machine: {m['machine']}, {m['cpus']} CPUs, {m['platform']}, torch {m['torch']}, "
        f"Python {m['python']}, 1 torch thread per process. {'Quick run.' if report['quick'] else 'Full run.'}",
        "",
        f"## Throughput ({report['images']} generated 500x375 JPEG/PNG pairs, batch {report['batch_size']})",
        "",
        "| pipeline | workers | images/s |",
        "|---|---|---|",
    ]
    lines += [f"| {r['pipeline']} | {r['workers']} | {r['images_per_s']:.1f} |" for r in report["throughput"]]
    scan = report["label_scan"]
    lines += [
        "",
        "## Label histograms of the split",
        "",
        f"Scan of {report['images']} label files (cold): {scan['cold_s'] * 1000:.1f} ms; "
        f"from the cache (warm): {scan['warm_s'] * 1000:.1f} ms.",
        "",
        "## Step filters from a presence matrix",
        "",
        "| matrix | task | subsets | subset_indices (s) | per-image Task.keep loop (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['shape']} | {r['task']} | {r['subsets']} | {r['subset_indices_s']:.3f} | {r['per_image_keep_s']:.3f} |"
        for r in report["subsets"]
    ]
    builds = report["cached_builds"]
    lines += [
        "",
        f"## build_dataset on a {builds['images']}-image VOC list (train + val = 1/7 of it)",
        "",
        f"First builds (train and test, label scan): {builds['first_build_s']:.2f} s; "
        f"all {builds['builds']} VOC 15-1 builds (6 steps x 2 splits x 2 settings) from the cache, each "
        f"re-checking the files: {builds['cached_builds_s']:.2f} s; as a run builds them (each split "
        f"checked and indexed once with load_split, every subset derived from that index): "
        f"{builds['indexed_builds_s']:.2f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and passes")
    args = parser.parse_args(argv)
    # DataLoader workers run torch with one thread each; give the main process (0 workers) the
    # same, so the numbers compare pipelines rather than thread contention.
    torch.set_num_threads(1)
    count, epochs, batch_size = (32, 1, 4) if args.quick else (160, 2, 8)
    task = get_task("voc", "offline")
    report: dict = {
        "quick": args.quick,
        "images": count,
        "batch_size": batch_size,
        "machine": {
            "machine": platform.machine(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, "python": platform.python_version(),
        },
        "throughput": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_voc_like(root, count)
        start = time.perf_counter()
        label_histograms("voc", root, "train", cache_dir=root / "cache")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        label_histograms("voc", root, "train", cache_dir=root / "cache")
        report["label_scan"] = {"cold_s": cold, "warm_s": time.perf_counter() - start}
        pipelines = [("decode only (full image)", None), ("decode + train_transform(512)", train_transform(512))]
        for name, transform in pipelines:
            dataset = build_dataset("voc", root, task=task, step=0, split="train", transform=transform,
                                    cache_dir=root / "cache")
            for workers in (0, 2):
                # decode-only batches need equal image sizes: batch 1
                rate = time_loader(dataset, workers, batch_size if transform else 1, epochs)
                report["throughput"].append({"pipeline": name, "workers": workers, "images_per_s": rate})
                print(f"{name}, {workers} workers: {rate:.1f} images/s", flush=True)
    rng = np.random.default_rng(0)
    report["subsets"] = []
    for shape, (images, labels, per_image), dataset, task_name in (
        ("10582 x 21 (VOC train_aug)", (10582, 21, 1.5), "voc", "15-1"),
        ("20210 x 151 (ADE train)", (20210, 151, 8.0), "ade", "100-10"),
    ):
        row = time_subsets(random_presence(rng, images, labels, per_image), get_task(dataset, task_name))
        report["subsets"].append({"shape": shape, "task": f"{dataset} {task_name}", **row})
        print(shape, row, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report["cached_builds"] = time_cached_builds(Path(tmp), 2000 if args.quick else 10582)
        print(report["cached_builds"], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "data.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(RESULTS / "data.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Cost of the full-coverage metric against the sampled one (docs/pointcloud-evaluation.md#cost).

A prepared test split of random blocks (sizes drawn like S3DIS blocks, a few thousand to ~10 k
points) is evaluated by DGCNN (k = 20, N = 2048, 13 channels, untrained, fp32) twice:

- sampled: css.engine.evaluate on 2048 random points per block (the reference metric);
- full: css.pointcloud.coverage.evaluate_full, every point of every block (ceil(n / 2048) samples).

Reported: seconds, model inputs, points scored and seconds per million points of the test blocks
(the cost of scoring a test set of that size) and per million points scored, wall-clock; the CPU
time of the process (all threads) too, which a machine shared with other jobs inflates less. The device is the
GPU when there is one, else the CPU (with torch's default threads).

Usage: python benchmarks/bench_coverage.py [--quick] [--device cpu|cuda]
Writes benchmarks/results/coverage.json and benchmarks/results/coverage.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from css.distributed import DistEnv  # noqa: E402
from css.engine.trainer import evaluate  # noqa: E402
from css.pointcloud.coverage import evaluate_full  # noqa: E402
from css.pointcloud.data import build_dataset  # noqa: E402
from css.pointcloud.models import build_model  # noqa: E402
from css.pointcloud.store import write_split  # noqa: E402
from css.tasks.tables import S3DIS_CLASSES
from css.tasks.registry import get_task
from css.utils import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NUM_POINTS = 2048


def write_blocks(path: Path, count: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2500, 10000, count).tolist()
    blocks = []
    for i, n in enumerate(sizes):
        blocks.append({"coord": (rng.random((n, 3)) * [1.0, 1.0, 3.0]).astype(np.float32),
                       "color": rng.integers(0, 256, (n, 3), dtype=np.uint8),
                       "labels": {"reference": rng.integers(0, 13, n)}, "block_id": f"Area_5_r_block_{i}",
                       "scene": "Area_5_r", "origin": (0.0, 0.0)})
    write_split(path, blocks, dataset="s3dis", split="test", class_names=list(S3DIS_CLASSES), block_size=1.0,
                stride=1.0, min_points=0)
    return sizes


def markdown(report: dict) -> str:
    lines = [f"# Full coverage vs sampled evaluation ({report['device']}, {report['blocks']} blocks, "
             f"{report['test_points']:,} points)", "",
             f"{'Quick run.' if report['quick'] else 'Full run.'} DGCNN k = 20, N = {NUM_POINTS}, batch "
             f"{report['batch']}, fp32; machine: {report['machine']}.", "",
             "| metric | s (wall) | CPU s (all threads) | model inputs | points scored | s per M test points | s per M scored |",
             "|---|---|---|---|---|---|---|"]
    for name in ("sampled", "full"):
        r = report[name]
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['inputs']} | {r['scored']:,} | "
                     f"{r['s_per_m_test_points']:.1f} | {r['s_per_m_scored']:.1f} |")
    lines += ["", f"full / sampled time: {report['full']['seconds'] / report['sampled']['seconds']:.2f}x"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 blocks instead of 16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    count, batch = (6, 8) if args.quick else (16, 8)
    task = get_task("s3dis", "12-1")
    torch.manual_seed(0)
    model = build_model(task.classes_per_step(0), in_channels=9, k=20).to(device).eval()
    report: dict = {"quick": args.quick, "device": str(device), "batch": batch, "blocks": count,
                    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                               f"torch {torch.__version__} {torch.cuda.get_device_name(0) if device.type == 'cuda' else ''}"
                               .strip()}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = write_blocks(Path(tmp) / "test.h5", count)
        report["test_points"] = total = int(sum(sizes))
        dataset = build_dataset("s3dis", tmp, task=task, step=0, split="test", num_points=NUM_POINTS, seed=0)
        # a warm-up batch outside the timing (allocator, kernels, first HDF5 read)
        with torch.no_grad():
            model(dataset[0][0][None].to(device))
        runs = {
            "sampled": (lambda: evaluate(model, dataset, num_classes=13, env=env, batch_size=batch),
                        count, count * NUM_POINTS),
            "full": (lambda: evaluate_full(model, dataset, num_classes=13, env=env, batch_size=batch, seed=0),
                     sum(math.ceil(n / NUM_POINTS) for n in sizes), total),
        }
        for name, (run, inputs, scored) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu = time.perf_counter(), time.process_time()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            report[name] = {"seconds": seconds, "cpu_seconds": cpu, "inputs": inputs, "scored": scored,
                            "s_per_m_test_points": seconds / total * 1e6, "s_per_m_scored": seconds / scored * 1e6}
            print(f"{name}: {seconds:.2f} s, {inputs} inputs, {scored} points scored", flush=True)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "coverage.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(RESULTS / "coverage.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Time farthest point sampling and the other geometry of the 3DPC-CISS method (docs/pointcloud-ciss.md).

css.pointcloud.fps.farthest_point_sample on the protocol's shape: B = 32 blocks of N = 2048
points, m = 512 centres (ratio 0.25), from random points in a 1 x 1 x 3 m block. On CPU it runs
with one intra-op thread and with all of them (the loop's operations are small, B·N elements, so
threads mostly synchronise). With --all, also: the K = 12 xyz kNN per block, the pooled kNN over
all B·N points (CUDA, or --pooled on CPU: a (B·N)² search, about a minute on 2 cores), the
pseudo-labels of one batch (13 old channels, per block) and the GFT loss on 448-d features,
forward + backward. Reported: median milliseconds per batch, and the load average when it ran.

Usage: python benchmarks/bench_fps.py [--quick] [--device cpu|cuda] [--batch N] [--points N]
                                      [--centres M] [--repeats N] [--all] [--pooled]
Writes benchmarks/results/fps.json and .md (fps_cuda.* on a GPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_file import write  # noqa: E402
from css.pointcloud.ciss import gft_loss, pseudo_labels, xyz_knn  # noqa: E402
from css.pointcloud.fps import farthest_point_sample  # noqa: E402



def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(median ms, first-call ms) of ``fn`` over ``repeats`` calls after one warm-up call."""
    def once() -> float:
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000

    first = once()
    return statistics.median(once() for _ in range(repeats)), first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--centres", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=None, help="timed calls after one warm-up call")
    ap.add_argument("--all", action="store_true", help="also kNN, pseudo-labels and the GFT loss")
    ap.add_argument("--pooled", action="store_true", help="with --all on CPU: also the pooled kNN")
    args = ap.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 10)
    gen = torch.Generator().manual_seed(0)
    b, n = args.batch, args.points
    xyz = (torch.rand(b, n, 3, generator=gen) * torch.tensor([1.0, 1.0, 3.0])).to(device)

    def run(name: str, fn, threads: int | None = None, reps: int = repeats) -> None:
        saved = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            ms, first = timed(fn, device, reps)
        finally:
            torch.set_num_threads(saved)
        row = {"what": name, "device": device.type, "batch": b, "points": n,
               "threads": threads if device.type == "cpu" else None, "ms_per_batch": round(ms, 2),
               "first_call_ms": round(first, 2), "repeats": reps,
               "load_average_1min": round(os.getloadavg()[0], 2)}
        rows.append(row)
        print(row, flush=True)

    rows: list[dict] = []
    fps = lambda: farthest_point_sample(xyz, args.centres)  # noqa: E731
    if device.type == "cpu":
        run(f"fps m={args.centres}", fps, threads=1)
        run(f"fps m={args.centres}", fps, threads=os.cpu_count() or 1)
    else:
        run(f"fps m={args.centres}", fps)
    if args.all:
        threads = os.cpu_count() if device.type == "cpu" else None
        few = max(1, repeats // 3)
        run("xyz kNN K=12 per block", lambda: xyz_knn(xyz, 12), threads, few)
        if device.type == "cuda" or args.pooled:
            run("xyz kNN K=12 pooled", lambda: xyz_knn(xyz, 12, mode="pooled"), threads, 1)
        labels = torch.zeros(b, n, dtype=torch.int64, device=device)
        old = torch.randn(b, 13, n, generator=gen).to(device)
        run("pseudo-labels per block (13 old channels)", lambda: pseudo_labels(labels, old, xyz, num_old=13),
            threads, few)
        new_f = torch.randn(b, 448, n, generator=gen).to(device).requires_grad_(True)
        old_f = torch.randn(b, 448, n, generator=gen).to(device)
        run("GFT loss forward + backward (448-d)", lambda: gft_loss(new_f, old_f, xyz).backward(), threads, few)

    table = ["| what | device | threads | ms/batch | first call ms | load avg |", "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['what']} | {r['device']} | {r['threads'] or '-'} | {r['ms_per_batch']:.1f} | "
                     f"{r['first_call_ms']:.1f} | {r['load_average_1min']} |")
    lines = write("fps", device, rows,
                  f"# Farthest point sampling and 3DPC-CISS geometry (B={b}, N={n}, m={args.centres})", table)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

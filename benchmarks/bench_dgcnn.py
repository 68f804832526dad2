"""Time one DGCNN training step (forward, cross-entropy, backward, Adam step) on 2048-point blocks.

The model is css.pointcloud.models.build_model for S3DIS 12-1 step 1 (classes per step [13, 1]),
k = 20, on random 9-channel blocks. CPU default: batch 8, fp32; on CUDA: the reference batch 32 in
fp32, fp16 (autocast + GradScaler) and bf16. Reported: median seconds per step, points/s, and the
peak memory (CUDA: max allocated; CPU: the process's peak resident set size, which includes
everything the process ever held).

Usage: python benchmarks/bench_dgcnn.py [--quick] [--device cpu|cuda] [--batch N] [--points N]
                                        [--precisions fp32,fp16,bf16] [--repeats N] [--knn-chunk N]
Writes benchmarks/results/dgcnn_step.json and .md (dgcnn_step_cuda.* on a GPU).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_file import write  # noqa: E402
from css.distributed import cpu_has_bf16  # noqa: E402
from css.engine.precision import autocast
from css.pointcloud.models import build_model  # noqa: E402

CLASSES = [13, 1]  # S3DIS 12-1, step 1: background + 12 base classes, then clutter


def cpu_peak_rss_gib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def one_setting(device: torch.device, precision: str, batch: int, points: int, repeats: int,
                knn_chunk: int | None) -> dict:
    torch.manual_seed(0)
    model = build_model(CLASSES, knn_chunk=knn_chunk).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    x = torch.randn(batch, 9, points, device=device)
    y = torch.randint(0, sum(CLASSES), (batch, points), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with autocast(device, precision):
            out = model(x)
            loss = F.cross_entropy(out.logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()  # warm-up (and cuDNN autotuning on CUDA)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    row = {"device": device.type, "precision": precision, "batch": batch, "points": points, "k": 20,
           "knn_chunk": knn_chunk, "seconds_per_step": med, "first_step_seconds": first,
           "points_per_second": batch * points / med, "repeats": repeats}
    if device.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        del model, opt, x, y
        torch.cuda.empty_cache()
    else:
        row["peak_rss_gib"] = round(cpu_peak_rss_gib(), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 32 on CUDA")
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--precisions", default=None, help="comma-separated; default fp32 on CPU (plus bf16 "
                    "where the CPU has bf16 instructions), fp32,fp16,bf16 on CUDA")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps after one warm-up step")
    ap.add_argument("--knn-chunk", type=int, default=None, help="query points per kNN chunk "
                    "(default: from the 64 MiB budget)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
        batch, repeats = args.batch or 8, 2 if args.quick else 3
        precisions = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
    else:
        torch.backends.cudnn.benchmark = True
        batch, repeats = args.batch or 32, 5 if args.quick else 20
        precisions = ("fp32", "fp16", "bf16")
    if args.precisions is not None:
        precisions = tuple(args.precisions.split(","))
    if args.repeats is not None:
        repeats = args.repeats
    rows = []
    for precision in precisions:
        rows.append(one_setting(device, precision, batch, args.points, repeats, args.knn_chunk))
        print(rows[-1], flush=True)
    memory = "peak GiB (CUDA allocated)" if device.type == "cuda" else "peak RSS GiB (process)"
    table = [f"| device | precision | batch | s/step | points/s | {memory} |", "|---|---|---|---|---|---|"]
    for r in rows:
        mem = r.get("peak_memory_gib", r.get("peak_rss_gib", "-"))
        table.append(f"| {r['device']} | {r['precision']} | {r['batch']} | {r['seconds_per_step']:.3f} | "
                     f"{r['points_per_second']:.0f} | {mem} |")
    lines = write("dgcnn_step", device, rows,
                  f"# One DGCNN training step (k=20, {args.points} points, classes {CLASSES}, CE + Adam)", table)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""One training step of the sparse-voxel UNet on whole scenes against DGCNN on blocks, at the same number
of points (docs/pointcloud-scenes.md#speed-and-memory).

A step is forward, cross-entropy, backward and an optimiser step (SGD for the UNet, Adam for DGCNN, as
their configs train them), for S3DIS 12-1 step 1 (classes per step [13, 1]).

- sparse UNet: one synthetic room (css.pointcloud.synthetic, dense enough) cut to N points, on a 5 cm
  grid with one point per voxel as training feeds it (the voxels are counted and reported), batch 1,
  presets ``small`` and ``spunet``;
- DGCNN: N // 2048 blocks of 2048 random points (k = 20), the same number of points.

Each setting runs in a fresh process, so that its peak memory is its own: CPU the process's peak
resident set size (torch included), CUDA the peak allocated. On a GPU the settings add fp16 and bf16
and a ScanNet-sized scene (150,000 points on a 2 cm grid), and the full-scene evaluation time of one scene.

Usage: python benchmarks/bench_scenes.py [--quick] [--device cpu|cuda] [--points 50000,100000]
Writes benchmarks/results/scenes_step.json and .md (scenes_step_cuda.* on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from results_file import write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLASSES = [13, 1]


def room(points: int, voxel: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(coord, colour) of ``points`` points of a synthetic room on a ``voxel`` grid, one per voxel."""
    from css.pointcloud.scenes.sampling import grid_sample
    from css.pointcloud.synthetic import make_room, synthetic_options

    rng = np.random.default_rng(seed)
    opts = synthetic_options({"room_size": [9.5, 10.0], "points_per_m2": 2500, "num_classes": 8})
    coord, color, _ = make_room(rng, opts)
    picked = grid_sample(coord, voxel, rng)
    if len(picked) < points:
        raise SystemExit(f"the room has {len(picked)} voxels of {voxel} m, fewer than {points}")
    picked = picked[rng.choice(len(picked), points, replace=False)]
    return coord[picked], color[picked]


def sparse_batch(points: int, voxel: float, device: torch.device):
    from css.pointcloud.scenes.sampling import SceneBatch, voxel_cells
    from css.pointcloud.scenes.transforms import scene_features

    coord, color = room(points, voxel)
    return SceneBatch(torch.from_numpy(scene_features(coord, color)), torch.from_numpy(voxel_cells(coord, voxel)),
                      torch.tensor([points])).to(device)


def one_setting(arch: str, preset: str, points: int, voxel: float, precision: str, device: torch.device,
                repeats: int) -> dict:
    from css.engine.precision import autocast

    torch.manual_seed(0)
    if arch == "sparse_unet":
        from css.pointcloud.scenes.unet import build_sparse_unet

        model = build_sparse_unet(CLASSES, preset=preset).to(device).train()
        x = sparse_batch(points, voxel, device)
        y = torch.randint(0, sum(CLASSES), (1, points), device=device)
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                                     weight_decay=1e-4)
    else:
        from css.pointcloud.models import build_model

        model = build_model(CLASSES).to(device).train()
        blocks = points // 2048
        x = torch.randn(blocks, 9, 2048, device=device)
        y = torch.randint(0, sum(CLASSES), (blocks, 2048), device=device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step():
        with autocast(device, precision):
            loss = F.cross_entropy(model(x).logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    used = int(y.numel())
    row = {"arch": arch, "preset": preset if arch == "sparse_unet" else "-", "device": device.type,
           "precision": precision, "points": used, "voxel_size": voxel if arch == "sparse_unet" else None,
           "seconds_per_step": med, "points_per_second": used / med, "repeats": repeats,
           "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if device.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    else:
        row["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    if arch == "sparse_unet" and device.type == "cuda":
        row["eval_seconds"] = evaluation_seconds(model, points, voxel, device, precision)
    return row


def evaluation_seconds(model, points: int, voxel: float, device: torch.device, precision: str) -> float:
    """The scene metric's time for one scene of ``points`` points with 4 points per voxel (4 fragments)."""
    from css.pointcloud.scenes.evaluation import CloudFragments, scene_probabilities

    coord, color = room(points // 4, voxel, seed=1)
    coord = np.repeat(coord, 4, axis=0) + np.random.default_rng(2).uniform(0, voxel / 10, (len(coord) * 4, 3))
    scene = CloudFragments([(coord, np.repeat(color, 4, axis=0))], voxel)
    model.eval()
    t0 = time.perf_counter()
    scene_probabilities(model, scene, 0, num_classes=sum(CLASSES), device=device, batch_size=4, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", default="50000,100000")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one setting as JSON, in its own process
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.one:
        s = json.loads(args.one)
        torch.set_num_threads(os.cpu_count() or 1)
        print("ROW " + json.dumps(one_setting(s["arch"], s["preset"], s["points"], s["voxel"], s["precision"], device,
                                              s["repeats"])), flush=True)
        return
    repeats = (2 if args.quick else 3) if device.type == "cpu" else (5 if args.quick else 20)
    precisions = ("fp32",) if device.type == "cpu" else ("fp32", "fp16", "bf16")
    settings = []
    for n in (int(v) for v in args.points.split(",")):
        for precision in precisions:
            settings += [dict(arch="sparse_unet", preset=p, points=n, voxel=0.05, precision=precision)
                         for p in ("small", "spunet")]
            settings.append(dict(arch="dgcnn", preset="-", points=n, voxel=0.05, precision=precision))
    if device.type == "cuda":  # a ScanNet-sized scan on the ScanNet grid
        settings += [dict(arch="sparse_unet", preset="spunet", points=150000, voxel=0.02, precision=p)
                     for p in precisions]
    rows = []
    for s in settings:
        proc = subprocess.run([sys.executable, __file__, "--device", args.device,
                               "--one", json.dumps(dict(s, repeats=repeats))], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("ROW ")]
        if proc.returncode or not lines:
            print(f"setting {s} failed:\n{proc.stderr[-2000:]}", flush=True)
            rows.append(dict(s, error=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"))
            continue
        rows.append(json.loads(lines[-1][4:]))
        print(rows[-1], flush=True)
    memory = "peak GiB (CUDA allocated)" if device.type == "cuda" else "peak RSS GiB (process)"
    table = [f"| model | preset | precision | points | s/step | points/s | {memory} | parameters (M) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            table.append(f"| {r['arch']} | {r['preset']} | {r['precision']} | {r['points']} | failed: {r['error']} |"
                         " | | |")
            continue
        mem = r.get("peak_memory_gib", r.get("peak_rss_gib", "-"))
        table.append(f"| {r['arch']} | {r['preset']} | {r['precision']} | {r['points']} | {r['seconds_per_step']:.3f} | "
                     f"{r['points_per_second']:.0f} | {mem} | {r['parameters_m']} |")
    lines = write("scenes_step", device, rows, "# One training step: the sparse UNet on a whole scene vs DGCNN on "
                  "blocks, the same points", table)
    print("\n".join(lines))
    if any("error" in r for r in rows):
        sys.exit("some settings failed")


if __name__ == "__main__":
    main()

"""Does the number of processes change the result? The shortened image demo (configs/demo/image.yaml,
LGKD, protocol: fixed) for several seeds at 1 process and at 2 gloo processes (torchrun, CPU), same
global batch; plus a control that changes only the float summation order inside one process (the
number of intra-op threads), to size the spread that rounding alone causes (docs/process-count.md).

Every run is a real ``python -m css.train`` (1 process) or ``torchrun --nproc_per_node 2 -m
css.train`` (2 processes) with the overrides printed in the report.

A second part compares the first iterations of step 0 (one iteration per epoch): 1 process, 1
process with one thread, 2 processes; each iteration's loss and its relative difference.

Usage: python benchmarks/bench_process_count.py [--part all|runs|iterations] [--seeds 0,1,2]
       [--procs 1,2] [--epochs 6] [--step0-epochs 8] [--parallel 2] [--no-control] [--quick]
Writes benchmarks/results/process_count.json and .md (runs) and process_count_iterations.json
and .md (first iterations); the run folders go to --work
(default: a temporary folder, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = ROOT / "configs" / "demo" / "image.yaml"
KEYS = ("bg", "old", "new", "all", "avg", "hiou")


def _command(procs: int, port: int) -> list[str]:
    if procs == 1:
        return [sys.executable, "-m", "css.train"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
            "--master_port", str(port), "-m", "css.train"]


def one_run(work: Path, procs: int, seed: int, threads: int | None, overrides: list[str], port: int) -> dict:
    """One demo run; returns its final and per-step figures (percent) and its wall time."""
    name = f"p{procs}_s{seed}" + (f"_t{threads}" if threads else "")
    cmd = _command(procs, port) + ["--modality", "image", "--config", str(CONFIG), f"name={name}",
                                   f"seed={seed}", f"output_dir={work / 'runs'}", f"data.root={work / 'data'}",
                                   "device=cpu", "protocol=fixed", *overrides]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # torchrun gives each of its processes 1 intra-op thread unless told otherwise; a single
    # process uses every core. --control pins one process to another count.
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads((work / "runs" / name / "results.json").read_text())
    # results.json holds fractions; the report prints percentages, as the README tables do.
    pct = {k: (None if v is None else 100.0 * v) for k, v in results["final"].items()}
    return {"name": name, "processes": procs, "seed": seed, "threads": threads, "wall_s": round(wall, 1),
            "final": {k: pct.get(k) for k in KEYS},
            "steps": [{k: None if s["summary"].get(k) is None else 100.0 * s["summary"][k] for k in KEYS}
                      for s in results["steps"]]}


def first_iterations(work: Path, iterations: int, port: int) -> dict:
    """Step 0 of the demo, one iteration per epoch so that each logged epoch loss is one iteration's:
    1 process, 1 process with one intra-op thread, 2 processes; the same weights at the first
    iteration, then the rounding differences grow as training amplifies them."""
    base = ["--modality", "image", "--config", str(CONFIG), "--steps", "0", f"output_dir={work / 'first'}",
            f"data.root={work / 'data'}", "device=cpu", "protocol=fixed", "train.max_iters_per_epoch=1",
            f"train.step0.epochs={iterations}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    variants = {"1 process": (1, None), "1 process, 1 thread": (1, 1), "2 processes": (2, None)}
    losses = {}
    import torch

    for name, (procs, threads) in variants.items():
        folder = name.replace(" ", "").replace(",", "_")
        run_env = dict(env, OMP_NUM_THREADS=str(threads)) if threads else env
        subprocess.run(_command(procs, port) + base + [f"name={folder}"], cwd=work, env=run_env, check=True,
                       capture_output=True)
        saved = torch.load(work / "first" / folder / "step0" / "model.pt", map_location="cpu", weights_only=False)
        losses[name] = [e["terms"]["total"] for e in saved["history"]]
    ref = losses["1 process"]
    rel = {name: [abs(a - b) / abs(b) for a, b in zip(v, ref)] for name, v in losses.items() if name != "1 process"}
    return {"losses": losses, "relative_difference": rel}


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--epochs", type=int, default=6, help="train.epochs of steps 1 and 2 (the demo: 12)")
    ap.add_argument("--step0-epochs", type=int, default=8, help="train.step0.epochs (the demo: 16)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time")
    ap.add_argument("--no-control", action="store_true", help="skip the 1-process thread-count control")
    ap.add_argument("--quick", action="store_true", help="2 iterations per epoch, seed 0 only (a smoke test)")
    ap.add_argument("--work", type=Path, help="keep the run folders here")
    ap.add_argument("--part", choices=("all", "runs", "iterations"), default="all",
                    help="runs: the demo per seed and count; iterations: the first iterations of step 0")
    ap.add_argument("--iterations", type=int, default=8, help="first iterations compared (--part iterations)")
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    procs = [int(p) for p in args.procs.split(",")]
    overrides = [f"train.epochs={args.epochs}", f"train.step0.epochs={args.step0_epochs}"]
    if args.quick:
        overrides.append("train.max_iters_per_epoch=2")
    work = args.work or Path(tempfile.mkdtemp(prefix="css_bench_pc_"))
    work.mkdir(parents=True, exist_ok=True)
    # The synthetic images are drawn once, before the parallel runs, so they do not race to write them.
    subprocess.run([sys.executable, "-c", "import sys; from css.config import load_config; "
                    "from css.image.data import load_split; c = load_config(sys.argv[1], sys.argv[2:]); "
                    "[load_split(c.data.dataset, c.data.root, s, options=c.data.options) for s in ('train', 'test')]",
                    str(CONFIG), f"data.root={work / 'data'}"], cwd=work, check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if args.part in ("all", "iterations"):
        it = first_iterations(work, args.iterations, 29400)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "process_count_iterations.json").write_text(json.dumps(it, indent=2) + "\n")
        lines = ["# First iterations of step 0 (demo, protocol fixed): total loss per iteration", "",
                 "| iteration | " + " | ".join(it["losses"]) + " | " +
                 " | ".join(f"rel. diff {k}" for k in it["relative_difference"]) + " |",
                 "|---|" + "---|" * (len(it["losses"]) + len(it["relative_difference"]))]
        for i in range(len(it["losses"]["1 process"])):
            lines.append(f"| {i + 1} | " + " | ".join(f"{v[i]:.7f}" for v in it["losses"].values()) + " | " +
                         " | ".join(f"{v[i]:.1e}" for v in it["relative_difference"].values()) + " |")
        (RESULTS / "process_count_iterations.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        if args.part == "iterations":
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
            return 0
    jobs = [(p, s, None) for p in procs for s in seeds]
    if not args.no_control and not args.quick and 1 in procs:
        jobs.append((1, seeds[0], 1))  # same run as p1_s0, one intra-op thread instead of all cores
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        # Each run gets its own rendezvous port, so that two torchrun runs at a time do not meet.
        runs = list(pool.map(lambda ij: one_run(work, *ij[1], overrides, 29500 + 7 * ij[0]), enumerate(jobs)))
    summary = {}
    for p in procs:
        rows = [r for r in runs if r["processes"] == p and r["threads"] is None]
        summary[str(p)] = {k: _stats([r["final"][k] for r in rows]) for k in KEYS if rows[0]["final"][k] is not None}
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "python": platform.python_version()}
    import torch

    machine["torch"] = torch.__version__
    out = {"machine": machine, "config": str(CONFIG.relative_to(ROOT)), "overrides": overrides + ["protocol=fixed"],
           "runs": runs, "summary": summary, "wall_s": round(time.time() - t0, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "process_count.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Process count: the shortened image demo at 1 and 2 processes", "",
             f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs, torch {machine['torch']}; "
             f"`{out['config']}` with `{' '.join(out['overrides'])}`.", "",
             "| run | processes | seed | threads | " + " | ".join(KEYS) + " | wall s |",
             "|---|---|---|---|" + "---|" * len(KEYS) + "---|"]
    for r in runs:
        cells = " | ".join("-" if r["final"][k] is None else f"{r['final'][k]:.2f}" for k in KEYS)
        lines.append(f"| {r['name']} | {r['processes']} | {r['seed']} | {r['threads'] or 'default'} | {cells} "
                     f"| {r['wall_s']:.0f} |")
    lines += ["", "| processes | " + " | ".join(KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    for p, st in summary.items():
        lines.append(f"| {p} | " + " | ".join(f"{st[k]['mean']:.2f} ± {st[k]['std']:.2f}" if k in st else "-"
                                              for k in KEYS) + " |")
    (RESULTS / "process_count.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

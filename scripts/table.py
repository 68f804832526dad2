#!/usr/bin/env python
"""Run a table: every config with every seed, then ``python -m css.report`` over the runs.

    scripts/table.py --configs configs/s3dis/12-1_lgkd.yaml configs/s3dis/12-1_ft.yaml --seeds 0 1 2 \
        [--runs-root runs/table] [--modality pointcloud] [--dry-run] [--json] [key.sub=value ...]

Each (config, seed) is ``python -m css.train --config C seed=S name=<config stem>_s<S>
output_dir=<runs root> [overrides]``, one after the other; the report then groups the runs that
differ only by the seed and prints mean ± sample std per group (docs/pointcloud-evaluation.md#tables).
Re-running the same command continues: css.train skips the finished steps of a run folder.
``--dry-run`` prints the commands without running them. A failed run is reported at the end and
the exit status is 1; the report still covers the runs that finished.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/table.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", required=True, metavar="YAML", help="config files, one table row each")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds (default: 0)")
    p.add_argument("--runs-root", default="runs/table", help="folder of the run folders (default: runs/table)")
    p.add_argument("--modality", choices=("image", "pointcloud"), help="passed to css.train")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON (css.report --json)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="applied to every run")
    return p


def plan(args) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """([(run name, css.train command)], css.report command)."""
    root = Path(args.runs_root)
    runs, names = [], []
    for config in args.configs:
        stem = Path(config).stem
        for seed in args.seeds:
            name = f"{stem}_s{seed}"
            if name in names:
                raise ValueError(f"two configs are named {stem!r}; the run folders would collide (rename one "
                                 f"or run them with separate --runs-root)")
            names.append(name)
            cmd = [sys.executable, "-m", "css.train", "--config", str(config)]
            if args.modality:
                cmd += ["--modality", args.modality]
            cmd += [f"seed={seed}", f"name={name}", f"output_dir={root}", *args.overrides]
            runs.append((name, cmd))
    report = [sys.executable, "-m", "css.report", *(str(root / n) for n in names)] + (["--json"] if args.json else [])
    return runs, report


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = [c for c in args.configs if not Path(c).is_file()]
    if missing:
        print(f"error: config {missing[0]} does not exist", file=sys.stderr)
        return 2
    if len(set(args.seeds)) != len(args.seeds):
        print(f"error: --seeds {args.seeds} repeats a seed", file=sys.stderr)
        return 2
    try:
        runs, report = plan(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for _, cmd in runs + [("report", report)]:
            print(shlex.join(cmd))
        return 0
    failed, done = [], []
    for i, (name, cmd) in enumerate(runs, 1):
        print(f"[table] run {i}/{len(runs)}: {name}", flush=True)
        if subprocess.call(cmd) == 0:
            done.append(name)
        else:
            failed.append(name)
            print(f"[table] {name} failed (exit status above); continuing", file=sys.stderr, flush=True)
    root = Path(args.runs_root)
    status = 0
    if done:
        keep = [str(root / n) for n in done]
        status = subprocess.call(report[:3] + keep + report[3 + len(runs):])
    if failed:
        print(f"[table] failed: {', '.join(failed)}; re-run the same command to continue them", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Summarise finished runs: ``python -m css.report RUN [RUN ...] [--json | --html OUT]``.

``--html OUT`` writes the run report people look at in a browser instead: forgetting, confusion
matrices and test predictions of every run, on one page that opens offline (docs/report.md).

RUN is a run folder holding ``results.json`` (preferred) or ``results.csv``, or the path of such
a file. For every run the final bg / old / new / all / avg / hIoU are printed (x100, 2 decimals;
see ``css.results`` for their definitions). Runs whose resolved configurations differ only by the
seed (top-level keys ``seed``, ``name``, ``output_dir``, ``run_dir`` are ignored) form a group,
and every group of more than one run is printed as mean ± sample standard deviation (n - 1).
Runs known only from a CSV carry no configuration and are never grouped.

Point-cloud runs evaluated with ``data.full_coverage`` also have the full-coverage figures
(results.json ``full``, or ``results_full.csv`` beside a results.csv): a second table, and a
``full`` entry per run and group in ``--json``, each named by its metric
(docs/pointcloud-evaluation.md#report).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from css.errors import CSSError
from css.results.jsonfile import FULL, SAMPLED, dumps_json
from css.results.runs import load_run, mean_std, seed_groups, unique_names
from css.results.summary import METRICS, OPTIONAL_METRICS
from css.results.tables import format_table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a user error)."""
    parser = argparse.ArgumentParser(prog="python -m css.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder, results.json or results.csv")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    parser.add_argument("--html", metavar="OUT", help="write the run report to the folder OUT (OUT/index.html, opens "
                        "offline in a browser; docs/report.md)")
    args = parser.parse_args(argv)
    if args.html:
        from css.htmlreport.page import write_report

        try:
            index = write_report(args.html, args.runs)
        except CSSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote the report of {len(args.runs)} run(s): {index}")
        return 0
    try:
        runs = [load_run(a) for a in args.runs]
    except CSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unique_names(runs)
    keys = METRICS + OPTIONAL_METRICS
    grouped = seed_groups(runs, keys)
    groups, stats = [g for g, _ in grouped], [s for _, s in grouped]
    with_full = any(r.full is not None for r in runs)
    nan_final = {k: math.nan for k in keys}
    full_stats = [{k: mean_std([(r.full or nan_final).get(k, math.nan) for r in g]) for k in keys} for g in groups]

    if args.json:
        doc = {
            "runs": [{"run": r.name, "path": str(r.path), "final": r.final, **({FULL: r.full} if with_full else {})}
                     for r in runs],
            "groups": [
                {"runs": [r.name for r in g], "n": len(g),
                 "mean": {k: s[k][0] for k in keys}, "std": {k: s[k][1] for k in keys},
                 **({FULL: {"mean": {k: f[k][0] for k in keys}, "std": {k: f[k][1] for k in keys}}}
                    if with_full else {})}
                for g, s, f in zip(groups, stats, full_stats)
            ],
        }
        if with_full:
            doc["metrics"] = [SAMPLED, FULL]
        print(dumps_json(doc))
        return 0

    # Point-cloud runs with full-coverage figures get a second table; each table names its metric
    # (docs/pointcloud-evaluation.md#report), so the two are never mixed up.
    tables = [(SAMPLED, lambda r: r.final, stats)]
    if with_full:
        tables.append((FULL, lambda r: r.full or nan_final, full_stats))
    for n, (metric, final_of, group_stats) in enumerate(tables):
        if with_full:
            print(("\n" if n else "") + f"metric: {metric}" +
                  (" (every point of every test block)" if metric == FULL else " (the reference's sampled points)"))
        print(format_table([{"run": r.name, **final_of(r)} for r in runs]))
        if groups:
            print("\nruns differing only by seed: mean ± sample std (n - 1)")
            print(format_table([{"run": f"group {i} (n={len(g)})", **s}
                                for i, (g, s) in enumerate(zip(groups, group_stats), 1)]))
            for i, g in enumerate(groups, 1):
                print(f"  group {i}: " + ", ".join(r.name for r in g))
    domain_runs = [r.name for r in runs if r.domains]
    if domain_runs:
        print(f"\ndomain-incremental (every step adds cities, not classes): bg, old, new and hIoU do not apply; all "
              f"is the mean IoU over every class after the last step, avg its mean over the steps: "
              f"{', '.join(domain_runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

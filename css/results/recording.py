"""The results files of a run folder, written by the controller and by ``css.evaluate RUN --write``.

``results.json`` is the record; ``results.csv`` (docs/protocol-2d.md#results-csv), ``miou.png`` and,
with full-coverage figures, ``results_full.csv`` (docs/pointcloud-evaluation.md#files) are rewritten from its step entries every time, so the three always agree. Every step entry
records the config its checkpoint was trained with: ``config_hash`` and ``config_changes``
('key: old -> new' against the run's first step; docs/controller.md#redo-from).
A finished step is known from its checkpoint; a lost or corrupt ``results.json`` is rebuilt by
re-evaluating the checkpoints (docs/controller.md#recovery).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from css.config import identity
from css.errors import CSSError
from css.results import jsonfile
from css.results.csvfile import csv_row, read_results_csv, write_csv
from css.results.summary import class_ious, metric_figures, step_summary
from css.results.summary import step_entry as figures_entry
from css.results.tables import plot_miou_per_step
from css.utils import atomic_write_text

log = logging.getLogger("css")

FULL_CSV = "results_full.csv"  # the full-coverage metric in the results.csv layout


def read_entries(run_dir: Path, *, move_aside: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(step entries, metadata) of RUN/results.json; a corrupt file is moved aside (as
    results.json.corrupt, with a warning) and counts as empty."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return [], None
    try:
        data = jsonfile.read_results_json(path)
    except CSSError as exc:
        if not move_aside:
            raise
        os.replace(path, path.with_name(path.name + ".corrupt"))
        log.warning("%s; moved it aside to %s.corrupt, its entries are rebuilt from the step checkpoints",
                    exc, path.name)
        return [], None
    return list(data.get("steps", [])), data.get("metadata")


def step_entry(cm, task, step: int, num_test: int, config: dict[str, Any] | None,
               base_config: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results.json entry, summary) of a step's confusion matrix."""
    summary, iou = step_summary(cm, task), class_ious(cm)
    entry = figures_entry(step, summary, iou, num_old=task.num_old_classes(step))
    entry.update(num_test=num_test, config_hash=identity.config_hash(config),
                 config_changes=identity.change_list(base_config, config) if config is not None else [])
    full = getattr(cm, "full", None)
    if full is not None:
        entry[jsonfile.FULL] = full_block(full, task)
        summary = dict(summary, full=entry[jsonfile.FULL]["summary"])
    return entry, summary


def full_block(cm, task) -> dict[str, Any]:
    """The ``full`` block of a step entry from a full-coverage confusion matrix
    (css.pointcloud.coverage, docs/pointcloud-evaluation.md#full-coverage)."""
    # the same figures as the step entry's own (metric_figures), then where they come from
    return {"metric": jsonfile.FULL, **metric_figures(step_summary(cm, task), class_ious(cm)),
            "num_points": getattr(cm, "points", None), "num_blocks": getattr(cm, "blocks", None)}


def write_results(run_dir: Path, entries: list[dict[str, Any]], task, metadata: dict[str, Any], *, method: str,
                  metric: str | None) -> dict[str, Any] | None:
    """Write results.json, results.csv and miou.png from ``entries`` (one per step); with no
    entries the files are removed. ``metric``: the name of the test metric (``Modality.metric``;
    point clouds: "sampled", with the overall accuracy in results.csv), None for images."""
    run_dir = Path(run_dir)
    entries = sorted({e["step"]: e for e in entries}.values(), key=lambda e: e["step"])
    if not entries:
        for name in ("results.json", "results.csv", FULL_CSV, "miou.png"):
            (run_dir / name).unlink(missing_ok=True)
        return None
    results = jsonfile.build_results(entries, task.channel_names(task.num_steps - 1), metadata, task=task.name,
                                    dataset=task.dataset, method=method, background=task.background is not None,
                                    metric=metric, domains=task.adds == "domains")
    atomic_write_text(run_dir / "results.json", jsonfile.dumps_json(results) + "\n")
    total = task.num_classes(task.num_steps - 1)
    write_entries_csv(run_dir / "results.csv", entries, total, with_oa=metric is not None)
    # the full-coverage figures: the same layout in a file of their own, so that results.csv stays
    # the reference's sampled metric (docs/pointcloud-evaluation.md#files)
    full = [e[jsonfile.FULL] | {"step": e["step"]} for e in entries if isinstance(e.get(jsonfile.FULL), dict)]
    if full:
        write_entries_csv(run_dir / FULL_CSV, full, total, with_oa=metric is not None)
    else:
        (run_dir / FULL_CSV).unlink(missing_ok=True)
    plot_miou_per_step(run_dir / "miou.png", results)
    return results


def write_entries_csv(path: Path, entries: list[dict[str, Any]], total: int, *, with_oa: bool) -> None:
    """results.csv (docs/protocol-2d.md#results-csv) from results.json step entries."""
    write_csv(path, [csv_row(e["step"], e["iou"], total, e.get("mean_iou"),
                             e.get("summary", {}).get("oa") if with_oa else None) for e in entries])


def csv_matches(path: Path, entries: list[dict[str, Any]]) -> bool:
    """Whether results.csv is readable and holds a row for exactly the steps of ``entries``."""
    try:
        rows = read_results_csv(path)
    except CSSError:
        return False
    return [r.step for r in rows] == sorted(e["step"] for e in entries)


def format_summary(step: int, num_test: int, summary: dict[str, Any]) -> str:
    """The log line of a step's test metrics; with full-coverage figures (``summary["full"]``) a
    second line, each line naming its metric."""
    fmt = lambda v: "  -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.2f}"

    def figures(s: dict[str, Any]) -> str:
        return (f"bg {fmt(s['bg'])} | old {fmt(s['old'])} | new {fmt(s['new'])} | all {fmt(s['all'])} | "
                f"hIoU {fmt(s['hiou'])} | OA {fmt(s['oa'])}")

    if summary.get("adds") == "domains":
        return (f"step {step} test ({num_test} samples): mIoU {fmt(summary['all'])} over the "
                f"{summary['num_classes']} classes | OA {fmt(summary['oa'])} (a domain step: bg, old, new and hIoU "
                f"do not apply)")
    full = summary.get("full")
    if full is None:
        return f"step {step} test ({num_test} samples): {figures(summary)}"
    return (f"step {step} test, metric sampled ({num_test} samples): {figures(summary)}\n"
            f"step {step} test, metric full (every point): {figures(full)}")

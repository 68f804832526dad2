"""Dataset inspection: ``python -m css.data inspect --dataset voc --root DIR --task 15-1``.

Checks the dataset's on-disk layout and prints, for every step of the task, the number of train
and test images kept by the step filters (spec 2d §6.2-6.3) and the pixel count of every model
class in the kept train images after label masking (what training sees before augmentation).
The label histograms behind the counts are computed once and cached (css.image.data).

Errors a user can cause are printed as ``error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from css.errors import ConfigError, CSSError
from css.image.data import DATASETS, label_histograms, load_dataset_task, subset_indices
from css.tasks import Task


@dataclass
class StepSummary:
    """Images and train pixels of one step: ``pixels`` maps model channel -> pixel count."""

    step: int
    train_images: int
    test_images: int
    pixels: dict[int, int]
    ignored_pixels: int


def train_pixels(
    hist: np.ndarray, task: Task, step: int, overlap: bool
) -> tuple[dict[int, int], int]:
    """Pixels per model channel (and ignored pixels) in images summed in ``hist`` rows, after
    the train label map of ``step``. hist columns: labels 0..n-1, then the ignore count."""
    totals = hist.sum(axis=0, dtype=np.int64)
    table = task.label_map(step, "train", overlap)
    per_channel: dict[int, int] = {c: 0 for c in range(task.num_classes(step))}
    ignored = 0
    labels = list(range(hist.shape[1] - 1)) + [task.ignore_index]
    for label, count in zip(labels, totals.tolist()):
        channel = int(table[label])
        if channel == task.ignore_index:
            ignored += count
        else:
            per_channel[channel] += count
    return per_channel, ignored


def inspect_dataset(
    dataset: str,
    root: str | None,
    task: Task,
    *,
    overlap: bool = True,
    cache_dir: str | None = None,
    options: dict[str, Any] | None = None,
) -> list[StepSummary]:
    """Per-step image counts and train pixel counts of ``task`` on ``dataset``."""
    _, train_hist = label_histograms(dataset, root, "train", cache_dir=cache_dir, options=options)
    _, test_hist = label_histograms(dataset, root, "test", cache_dir=cache_dir, options=options)
    num_labels = train_hist.shape[1] - 1
    summaries = []
    for step in range(task.num_steps):
        train = subset_indices(train_hist[:, :num_labels] > 0, task, step, "train", overlap)
        test = subset_indices(test_hist[:, :num_labels] > 0, task, step, "test", overlap)
        pixels, ignored = train_pixels(train_hist[train], task, step, overlap)
        summaries.append(StepSummary(step, len(train), len(test), pixels, ignored))
    return summaries


def format_report(dataset: str, task: Task, overlap: bool, summaries: list[StepSummary]) -> str:
    setting = "overlap" if overlap else "disjoint"
    lines = [task.describe(), f"dataset {dataset}, {setting} setting", ""]
    for summary in summaries:
        order = task.order(summary.step)
        lines.append(
            f"step {summary.step}: {summary.train_images} train images, "
            f"{summary.test_images} test images"
        )
        lines.append("  train pixels after masking (background and this step's classes):")
        shown = {task.background, *task.current_labels(summary.step)}
        for channel, count in summary.pixels.items():
            label = order[channel]
            if label not in shown and channel != 0:  # old classes are background at train time
                continue
            name = task.class_name(label)
            lines.append(f"    channel {channel:3d}  {name} ({label}): {count} px")
        lines.append(f"    ignored ({task.ignore_index}): {summary.ignored_pixels} px")
    return "\n".join(lines)


def _parse_task(text: str) -> Any:
    """A task name, or a YAML list of class groups such as '[[0, 1, 2], [3]]'."""
    if text.lstrip().startswith("["):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--task {text!r} is not a valid YAML list of class groups ({exc})"
            ) from exc
    return text


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option expects key=value (e.g. num_classes=6), got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m css.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="check a dataset and print per-step statistics")
    inspect.add_argument(
        "--config", help="a run config: dataset, root, task, setting and options are read from it "
        "(the other flags are then not needed)",
    )
    inspect.add_argument("--dataset", choices=DATASETS)
    inspect.add_argument(
        "--root", help="dataset folder (for voc: the folder holding PascalVOC2012/)"
    )
    inspect.add_argument(
        "--task",
        help="task name (e.g. 15-1) or class groups, e.g. '[[0,1,2],[3]]'",
    )
    inspect.add_argument(
        "--disjoint", action="store_true", help="disjoint setting (default: overlap)"
    )
    inspect.add_argument(
        "--cache-dir",
        help="label histogram cache (default: $CSS_CACHE_DIR, else <root>/.css_cache)",
    )
    inspect.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="dataset option, e.g. num_classes=6 for the synthetic dataset (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.config:
            from css.config import load_config

            cfg = load_config(args.config)
            dataset, root, overlap = cfg.data.dataset, cfg.data.root, cfg.data.overlap
            options, cache_dir = cfg.data.options or None, cfg.data.cache_dir
            spec: Any = cfg.task.steps if cfg.task.steps is not None else cfg.task.name
        else:
            if not args.dataset or not args.task:
                raise ConfigError("give --config FILE, or --dataset and --task (and --root for files on disk)")
            dataset, root, overlap = args.dataset, args.root, not args.disjoint
            options, cache_dir = _parse_options(args.option), args.cache_dir
            spec = _parse_task(args.task)
        task = load_dataset_task(dataset, spec, root=root, options=options)
        summaries = inspect_dataset(dataset, root, task, overlap=overlap, cache_dir=cache_dir, options=options)
    except CSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(dataset, task, overlap, summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())

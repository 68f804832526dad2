"""Dataset inspection: ``python -m css.data inspect --dataset voc --root DIR --task 15-1``.

Checks the dataset's on-disk layout and prints, for every step of the task, the number of train
and test images kept by the step filters (``Task.select``, docs/tasks.md#selection) and the pixel
count of every model class in the kept train images after label masking (what training sees
before augmentation). The label counts behind the numbers are computed once and cached
(css.index).

The steps are summarised from a modality-agnostic ``InspectedSplit`` (a css.index.ClassIndex and
the modality's presence matrix); ``SPLIT_LOADERS`` maps a modality to the function that builds
one, so another modality plugs in by adding its loader.

Errors a user can cause are printed as ``error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import yaml

from css.errors import ConfigError, CSSError
from css.image.data import load_dataset_task, load_split
from css.image.datasets import DATASETS as IMAGE_DATASETS
from css.index import ClassIndex
from css.tasks import Task


@dataclass
class StepSummary:
    """Images and train pixels of one step: ``pixels`` maps model channel -> pixel count."""

    step: int
    train_images: int
    test_images: int
    pixels: dict[int, int]
    ignored_pixels: int


@dataclass(frozen=True)
class InspectedSplit:
    """What inspection needs of one split, whatever the modality."""

    index: ClassIndex  # per-item label counts (ignored elements excluded) and sizes
    presence: np.ndarray  # presence[i, l]: item i shows label l, by the modality's rule


SplitLoader = Callable[..., InspectedSplit]  # (dataset, root, split, *, cache_dir, options)


def image_split(dataset: str, root: str | None, split: str, *, cache_dir: str | None = None,
                options: dict[str, Any] | None = None) -> InspectedSplit:
    """An image split: label histograms from css.image.data.load_split; any pixel shows a label."""
    index = load_split(dataset, root, split, cache_dir=cache_dir, options=options)
    return InspectedSplit(index.class_index(), index.presence())


SPLIT_LOADERS: dict[str, SplitLoader] = {"image": image_split}


def train_pixels(
    counts: np.ndarray, ignored: int, task: Task, step: int, overlap: bool
) -> tuple[dict[int, int], int]:
    """Elements per model channel (and ignored elements) after the train label map of ``step``.

    counts: (items, labels) label counts of the kept items; ignored: their ignore_index elements.
    A label the map sends to ignore_index (e.g. a void label) is counted as ignored."""
    totals = counts.sum(axis=0, dtype=np.int64).tolist()
    table = task.label_map(step, "train", overlap)
    per_channel: dict[int, int] = {c: 0 for c in range(task.num_classes(step))}
    ignored_total = 0
    for label, count in [*enumerate(totals), (task.ignore_index, int(ignored))]:
        channel = int(table[label])
        if channel == task.ignore_index:
            ignored_total += count
        else:
            per_channel[channel] += count
    return per_channel, ignored_total


def summarise(task: Task, train: InspectedSplit, test: InspectedSplit, overlap: bool = True) -> list[StepSummary]:
    """Per-step item counts and train element counts, from the two splits' indices."""
    ignored = train.index.sizes - train.index.counts.sum(axis=1)
    summaries = []
    for step in range(task.num_steps):
        kept = task.select(train.presence, step, "train", overlap)
        kept_test = task.select(test.presence, step, "test", overlap)
        pixels, ignored_pixels = train_pixels(
            train.index.counts[kept], int(ignored[kept].sum()), task, step, overlap
        )
        summaries.append(StepSummary(step, len(kept), len(kept_test), pixels, ignored_pixels))
    return summaries


def inspect_dataset(
    dataset: str,
    root: str | None,
    task: Task,
    *,
    overlap: bool = True,
    cache_dir: str | None = None,
    options: dict[str, Any] | None = None,
    modality: str = "image",
) -> list[StepSummary]:
    """Per-step image counts and train pixel counts of ``task`` on ``dataset``."""
    if modality not in SPLIT_LOADERS:
        raise ConfigError(f"inspect: unknown modality {modality!r}; valid: {', '.join(SPLIT_LOADERS)}")
    load = SPLIT_LOADERS[modality]
    train, test = (load(dataset, root, split, cache_dir=cache_dir, options=options) for split in ("train", "test"))
    return summarise(task, train, test, overlap)


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
    inspect.add_argument("--modality", choices=("image", "pointcloud"), default="image",
                         help="without --config: which modality's datasets --dataset names (default image)")
    inspect.add_argument("--dataset", help=f"image: {', '.join(IMAGE_DATASETS)}; pointcloud: s3dis, scannet, "
                                           f"folder, synthetic")
    inspect.add_argument("--protocol", choices=("reference", "fixed"), default="reference",
                         help="point clouds without --config: which label set (ScanNet) and unannotated rule")
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


def inspect_pointcloud(dataset: str, root: str | None, spec: Any, *, overlap: bool, options: dict | None,
                       protocol: str, presence: tuple[float, int] = (0.05, 100)) -> str:
    """The report of a prepared point-cloud dataset: blocks and points per class per step
    (from the counts stored by the preparation; no point is read)."""
    from css.pointcloud.data import dataset_summary, format_summary, load_dataset_task

    task = load_dataset_task(dataset, spec, root=root, options=options)
    rows = dataset_summary(dataset, root, task=task, protocol=protocol, overlap=overlap, presence=presence,
                           options=options)
    setting = "overlap" if overlap else "disjoint"
    return "\n".join([task.describe(), f"dataset {dataset}, {setting} setting, protocol {protocol}", "",
                      format_summary(rows)])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        presence = (0.05, 100)
        if args.config:
            from css.config import load_config

            cfg = load_config(args.config)
            modality, protocol = cfg.modality, cfg.protocol
            dataset, root, overlap = cfg.data.dataset, cfg.data.root, cfg.data.overlap
            options, cache_dir = cfg.data.options or None, cfg.data.cache_dir
            spec: Any = cfg.task.steps if cfg.task.steps is not None else cfg.task.name
            if modality == "pointcloud":
                presence = (cfg.data.presence_fraction, cfg.data.presence_min_points)
        else:
            if not args.dataset or not args.task:
                raise ConfigError("give --config FILE, or --dataset and --task (and --root for files on disk)")
            modality, protocol = args.modality, args.protocol
            dataset, root, overlap = args.dataset, args.root, not args.disjoint
            options, cache_dir = _parse_options(args.option), args.cache_dir
            spec = _parse_task(args.task)
            if modality == "image" and dataset not in IMAGE_DATASETS:
                raise ConfigError(f"--dataset {dataset!r} is not an image dataset ({', '.join(IMAGE_DATASETS)}); "
                                  f"for point clouds add --modality pointcloud")
        if modality == "pointcloud":
            print(inspect_pointcloud(dataset, root, spec, overlap=overlap, options=options, protocol=protocol,
                                     presence=presence))
            return 0
        task = load_dataset_task(dataset, spec, root=root, options=options)
        summaries = inspect_dataset(dataset, root, task, overlap=overlap, cache_dir=cache_dir, options=options)
    except CSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(dataset, task, overlap, summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dataset inspection: ``python -m css.data inspect --dataset voc --root DIR --task 15-1``.

Checks the dataset's on-disk layout and prints, for every step of the task, what the step filters
keep (``Task.select``, docs/tasks.md#selection): for images the train and test images and the pixel
count of every model class in the kept train images after label masking (css/image/inspect.py);
for prepared point clouds the blocks and points per class (css.pointcloud.data). The modality
named by the config or ``--modality`` writes the report (``Modality.inspect``).

Errors a user can cause are printed as ``error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from css.config.protocols import PROTOCOLS
from css.errors import ConfigError, CSSError
from css.modality.registry import get_modality, modality_names


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
    inspect.add_argument("--modality", choices=modality_names(), default="image",
                         help="without --config: which modality's datasets --dataset names (default image)")
    inspect.add_argument("--dataset", help="image: voc, ade, folder, synthetic; pointcloud: s3dis, scannet, "
                                           "folder, synthetic")
    inspect.add_argument("--protocol", choices=PROTOCOLS, default="reference",
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = None
        if args.config:
            from css.config.build import load_config

            cfg = load_config(args.config)
            modality, protocol = cfg.modality, cfg.protocol
            dataset, root, overlap = cfg.data.dataset, cfg.data.root, cfg.data.overlap
            options, cache_dir = cfg.data.options or None, cfg.data.cache_dir
            spec: Any = cfg.task.steps if cfg.task.steps is not None else cfg.task.name
        else:
            if not args.dataset or not args.task:
                raise ConfigError("give --config FILE, or --dataset and --task (and --root for files on disk)")
            modality, protocol = args.modality, args.protocol
            dataset, root, overlap = args.dataset, args.root, not args.disjoint
            options, cache_dir = _parse_options(args.option), args.cache_dir
            spec = _parse_task(args.task)
        report = get_modality(modality).inspect(dataset, root, spec, overlap=overlap, options=options,
                                                protocol=protocol, cache_dir=cache_dir, cfg=cfg)
    except CSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

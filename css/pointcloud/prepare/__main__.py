"""``python -m css.pointcloud.prepare {s3dis,scannet,folder} --raw DIR --out DIR``
(docs/pointcloud-data.md#prepare)."""

from __future__ import annotations

import argparse
import sys

from css.cli import run_cli
from css.errors import ConfigError
from css.pointcloud.prepare.pipeline import Options, prepare
from css.pointcloud.prepare.summary import format_summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m css.pointcloud.prepare",
                                description="Cut raw point-cloud scenes into blocks: OUT/train.h5, OUT/test.h5 "
                                            "and OUT/summary.json (docs/pointcloud-data.md). An interrupted "
                                            "run resumes when the same command is run again.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="{s3dis,scannet,folder}")
    helps = {"s3dis": "Stanford3dDataset_v1.2_Aligned_Version (Area_1 .. Area_6)",
             "scannet": "ScanNet v2 (scans/, scannetv2-labels.combined.tsv, scannetv2_{train,val}.txt)",
             "folder": "your own scans: classes.yaml, train/ and val/ of .npz, .ply, .las or .laz"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--raw", required=True, help="the raw dataset folder")
        s.add_argument("--out", required=True, help="where train.h5, test.h5 and summary.json go")
        s.add_argument("--block-size", type=float, default=1.0, help="tile side in metres (default 1.0)")
        s.add_argument("--stride", type=float, default=1.0, help="tile step in metres (default 1.0)")
        s.add_argument("--min-points", type=int, default=1000, help="drop tiles with fewer points (default 1000)")
        s.add_argument("--workers", type=int, default=1, help="scenes prepared in parallel (default 1)")
        if name == "s3dis":
            s.add_argument("--test-area", type=int, default=5, help="the area of test.h5 (default 5)")
            s.add_argument("--repair", action="store_true",
                           help="remove NUL bytes from corrupt rows and drop rows that still do not hold "
                                "6 numbers (each repair is listed in the summary)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for flag, value in (("--block-size", args.block_size), ("--stride", args.stride)):
        if not value > 0:
            raise ConfigError(f"{flag} {value}: must be > 0 (metres)")
    if args.min_points < 0:
        raise ConfigError(f"--min-points {args.min_points}: must be >= 0")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    if args.dataset == "s3dis":
        from css.pointcloud.prepare import s3dis

        source = s3dis.source(args.raw, test_area=args.test_area)
    elif args.dataset == "scannet":
        from css.pointcloud.prepare import scannet

        source = scannet.source(args.raw)
    else:
        from css.pointcloud.prepare import folder

        source = folder.source(args.raw)
    options = Options(block_size=args.block_size, stride=args.stride, min_points=args.min_points,
                      repair=getattr(args, "repair", False), workers=args.workers)
    summary = prepare(source, args.out, options)
    print(format_summary(summary))
    print(f"wrote {args.out}/train.h5, {args.out}/test.h5 and {args.out}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

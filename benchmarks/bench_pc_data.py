"""Point-cloud data pipeline: preparation speed and random block loading.

1. Preparation time per million points: a synthetic raw folder in the S3DIS layout (rooms of
   annotation text files, ``X Y Z R G B`` rows with 3-decimal coordinates like the release) is
   prepared with ``python -m css.pointcloud.prepare s3dis`` (the library call), with 1 and 2
   workers; the text parsing alone is timed too.
2. Random block loading: ``BlockStore.block`` on the prepared HDF5 split against the reference's
   layout of one ``.npy`` file per block (N x 7 float64), blocks/s and points/s. Both are read
   right after being written, so from the page cache: this measures the decoding and slicing
   cost, not the disk.

Usage: python benchmarks/bench_pc_data.py [--quick]
Writes benchmarks/results/pc_data.json and benchmarks/results/pc_data.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from css.pointcloud.prepare import s3dis  # noqa: E402
from css.pointcloud.prepare.pipeline import Options, prepare  # noqa: E402
from css.pointcloud.store import BlockStore  # noqa: E402
from css.utils import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FILES = ("ceiling_1", "floor_1", "wall_1", "wall_2", "table_1", "chair_1", "chair_2", "bookcase_1", "stairs_1")


def write_raw(root: Path, rooms: int, points_per_room: int, seed: int = 0) -> int:
    """``rooms`` rooms of 4 m x 3 m over Areas 1, 2 and 5; returns the number of rows written."""
    rng = np.random.default_rng(seed)
    total = 0
    for k in range(rooms):
        area = (1, 2, 5)[k % 3]
        ann = root / f"Area_{area}" / f"office_{k}" / "Annotations"
        ann.mkdir(parents=True)
        for name, n in zip(FILES, np.full(len(FILES), points_per_room // len(FILES))):
            xyz = rng.uniform(0, 1, (n, 3)) * [4.0, 3.0, 3.0] + [10.0 * k, 3.0, 0.0]
            rgb = rng.integers(0, 256, (n, 3))
            np.savetxt(ann / f"{name}.txt", np.column_stack([xyz, rgb]), fmt="%.3f %.3f %.3f %d %d %d")
            total += n
    return total


def time_prepare(raw: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    prepare(s3dis.source(raw), out, Options(workers=workers))
    return time.perf_counter() - start


def time_parse(raw: Path) -> float:
    start = time.perf_counter()
    for path in sorted(raw.rglob("*.txt")):
        s3dis.parse_annotation(path, path.name, repair=False)
    return time.perf_counter() - start


def time_loading(store: BlockStore, npy_dir: Path, reads: int, seed: int = 0) -> list[dict]:
    """Random blocks through the HDF5 store and through one .npy file per block."""
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(store), reads)
    rows = []
    for name, read in (
        ("BlockStore.block (HDF5, one file per split)", lambda i: store.block(int(i))),
        ("np.load, one .npy file per block (N x 7 float64)", lambda i: np.load(npy_dir / f"{store.ids[i]}.npy")),
    ):
        read(order[0])   # open the file handle outside the timing
        points = 0
        start = time.perf_counter()
        for i in order:
            block = read(i)
            points += len(block["coord"]) if isinstance(block, dict) else len(block)
        seconds = time.perf_counter() - start
        rows.append({"reader": name, "blocks": int(reads), "blocks_per_s": reads / seconds,
                     "points_per_s": points / seconds})
        print(rows[-1], flush=True)
    return rows


def write_npy_blocks(store: BlockStore, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, block_id in enumerate(store.ids):
        b = store.block(i)
        np.save(folder / f"{block_id}.npy",
                np.column_stack([b["coord"], b["color"], b["label"]]).astype(np.float64))


def markdown(report: dict) -> str:
    m, p = report["machine"], report["prepare"]
    lines = [
        "# Point-cloud data pipeline",
        "",
        f"Machine: {m['machine']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}. "
        f"{'Quick run.' if report['quick'] else 'Full run.'}",
        "",
        f"## Preparation ({p['rows']:,} rows of S3DIS-layout text, {p['rooms']} rooms of 4 m x 3 m, "
        f"{p['mbytes']:.0f} MB; 1 m blocks, >= 1000 points)",
        "",
        "| step | seconds | seconds per million points |",
        "|---|---|---|",
        f"| parse the text only | {p['parse_s']:.2f} | {p['parse_s'] / p['rows'] * 1e6:.2f} |",
    ]
    lines += [f"| full preparation, {w} worker(s) | {s:.2f} | {s / p['rows'] * 1e6:.2f} |"
              for w, s in p["prepare_s"].items()]
    lines += [
        "",
        f"Real S3DIS (~270 M rows) at this rate: about {p['prepare_s']['1'] / p['rows'] * 270e6 / 60:.0f} "
        f"minutes with 1 worker.",
        "",
        f"## Random block loading ({report['loading_blocks']} blocks, median "
        f"{report['median_block_points']:,} points)",
        "",
        "| reader | blocks/s | points/s |",
        "|---|---|---|",
    ]
    lines += [f"| {r['reader']} | {r['blocks_per_s']:.0f} | {r['points_per_s'] / 1e6:.1f} M |"
              for r in report["loading"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller raw folder and fewer reads")
    args = parser.parse_args(argv)
    rooms, per_room, reads = (6, 60_000, 300) if args.quick else (12, 250_000, 2000)
    report: dict = {"quick": args.quick, "machine": {
        "machine": platform.machine(), "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = write_raw(tmp / "raw", rooms, per_room)
        mbytes = sum(p.stat().st_size for p in (tmp / "raw").rglob("*.txt")) / 1e6
        print(f"{rows:,} rows, {mbytes:.0f} MB of text", flush=True)
        prep = {"rows": int(rows), "rooms": rooms, "mbytes": mbytes, "parse_s": time_parse(tmp / "raw"),
                "prepare_s": {}}
        for workers in (1, 2):
            prep["prepare_s"][str(workers)] = time_prepare(tmp / "raw", tmp / f"out{workers}", workers)
            print(f"prepare, {workers} worker(s): {prep['prepare_s'][str(workers)]:.2f} s", flush=True)
        report["prepare"] = prep
        store = BlockStore(tmp / "out1" / "train.h5")
        write_npy_blocks(store, tmp / "npy")
        report["loading_blocks"] = len(store)
        report["median_block_points"] = int(np.median(store.sizes))
        report["loading"] = time_loading(store, tmp / "npy", reads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "pc_data.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(RESULTS / "pc_data.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

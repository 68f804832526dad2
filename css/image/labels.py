"""Label files of the image datasets: reading one, its histogram, and the per-split scan.

A label file is a single-channel PNG of dataset label ids. Its histogram counts the pixels of
every label 0..num_labels-1 and, in a last column, the ignore pixels. The histograms of a split
are read in parallel once and cached on disk by ``css.tasks.index.cached_counts``, keyed by every label
file's path, size and mtime (docs/contracts.md#csstasksindex); each step's subset is then derived in
memory (docs/tasks.md#selection).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from css.errors import DataError
from css.image.datasets.checks import DamagedFile, damaged, image_problem, report
from css.image.datasets.listing import Listing
from css.tasks.index import cache_folder, cached_counts, files_key

log = logging.getLogger(__name__)

CACHE_VERSION = "css-label-histograms-v1"


def read_label(path: str) -> np.ndarray:
    """The label ids of one single-channel label PNG as a 2-D integer array. A file that cannot be
    decoded (truncated, corrupt) is a DataError naming it (docs/faults.md#data-files)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise DataError(
                    f"label file {path} has image mode {image.mode}; label files must be "
                    f"single-channel PNGs of class ids (mode L or P), not colour-coded images"
                )
            return np.asarray(image)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
        raise damaged(path, "label", exc) from exc


def lookup(labels: np.ndarray, table: np.ndarray, path: str) -> np.ndarray:
    """``table[labels]``; a value beyond the table is a DataError naming the file."""
    if labels.size and int(labels.max()) >= len(table):
        raise DataError(f"label file {path} holds value {int(labels.max())}, beyond the dataset's label ids "
                        f"0..{len(table) - 1}; is it the right kind of label file?")
    return table[labels]


def label_histogram(path: str, num_labels: int, ignore_value: int, table: np.ndarray | None = None) -> np.ndarray:
    """Pixel count of every label 0..num_labels-1, then of the ignore value (num_labels+1,).
    ``table``: the listing's lookup from file values to labels (``Listing.label_table``)."""
    labels = read_label(path)
    if table is not None:
        labels = lookup(labels, table, path)
    counts = np.bincount(labels.ravel(), minlength=max(num_labels, ignore_value + 1))
    valid = np.zeros(len(counts), dtype=bool)
    valid[:num_labels] = True
    valid[ignore_value] = True
    if counts[~valid].any():
        bad = np.flatnonzero(counts * ~valid).tolist()
        raise DataError(
            f"label file {path} holds values {bad[:10]} outside the dataset's labels "
            f"0..{num_labels - 1} and {ignore_value} (ignore); fix the file or the class list"
        )
    return np.append(counts[:num_labels], counts[ignore_value]).astype(np.int64)


def scan(listing: Listing) -> np.ndarray:
    """Histograms of all label files of ``listing``, read in parallel (PIL releases the GIL)."""
    workers = min(8, os.cpu_count() or 1)
    log.info(
        "reading %d %s %s label files with %d threads",
        len(listing.labels), listing.name, listing.split, workers,
    )
    def one(path: str) -> np.ndarray | str:
        # A PNG cut in its last chunks may still decode; verify() checks every chunk and its checksum.
        problem = image_problem(path)
        if problem:
            return problem
        try:
            return label_histogram(path, listing.num_labels, listing.ignore_value, listing.label_table)
        except DamagedFile as exc:
            return exc.why

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, listing.labels))
    # Every damaged label file of the split is named at once, not only the first one met.
    problems = [(path, row) for path, row in zip(listing.labels, rows) if isinstance(row, str)]
    if problems:
        raise report(problems, listing, "label")
    hist = np.zeros((len(rows), listing.num_labels + 1), dtype=np.int64)
    if rows:
        hist[:] = np.stack(rows)
    return hist


def cache_key(listing: Listing) -> str:
    """Hash of what the histograms depend on: dataset, label range and every label file's
    absolute path, size and mtime, in order. Any added, removed or modified file changes it."""
    header = (CACHE_VERSION, listing.name, listing.num_labels, listing.ignore_value)
    return files_key(listing.labels, header)


def histograms(
    listing: Listing, root: str | os.PathLike, cache_dir: str | os.PathLike | None
) -> np.ndarray:
    """The split's histograms: cached in ``cache_dir`` (default: css.tasks.index.default_cache_dir)."""
    folder = cache_folder(cache_dir, Path(root))
    return cached_counts(
        folder, listing.name, listing.split, cache_key(listing), listing.ids,
        lambda: scan(listing),
    )

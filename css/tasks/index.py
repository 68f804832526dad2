"""The class-presence index of a split, shared by both modalities (docs/tasks.md#selection).

A modality lists the images or blocks of a split and counts, for each, the elements (pixels or
points) of every dataset label. From those counts one of the rules below says which labels an
item *shows*, and ``Task.select`` then picks every step's subset in memory. Images show a label
when any pixel has it; a point-cloud block shows a class only when the class covers more than
5 % of the block and more than 100 points (the 3DPC-CISS rule; both numbers are options).

Counting needs every label file of a split read once; ``cached_counts`` keeps the counts on disk,
keyed by ``files_key`` of the label files, so a later run (or step) reads them back instead.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from css.utils import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassIndex:
    """ids[i] and counts[i, l] = elements of dataset label l in item i (ignored ones excluded);
    sizes[i] = all elements of item i, ignored ones included."""

    ids: list[str]
    counts: np.ndarray
    sizes: np.ndarray

    def __post_init__(self) -> None:
        if self.counts.ndim != 2 or len(self.counts) != len(self.ids) or len(self.sizes) != len(self.ids):
            raise ValueError(f"ClassIndex: {len(self.ids)} ids, counts {self.counts.shape}, sizes {self.sizes.shape}")


def presence_any(counts: np.ndarray) -> np.ndarray:
    """Images: a label is shown when at least one pixel has it."""
    return np.asarray(counts) > 0


def shown_labels(presence: np.ndarray | None) -> set[int]:
    """The labels some item of a presence matrix (items x labels) shows."""
    if presence is None or not len(presence):
        return set()
    return {int(label) for label in np.flatnonzero(np.asarray(presence, dtype=bool).any(axis=0))}


def presence_share(counts: np.ndarray, sizes: np.ndarray, *, fraction: float = 0.05,
                   min_count: int = 100) -> np.ndarray:
    """Point-cloud blocks: label l is shown when count > max(int(fraction * size), min_count)."""
    counts = np.asarray(counts, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    limit = np.maximum((fraction * sizes).astype(np.int64), int(min_count))
    return counts > limit[:, None]


# --- the on-disk cache of per-item label counts (docs/contracts.md#csstasksindex) -------------------
#
# Counting labels means reading every label file of a split once. The counts are cached in an
# ``.npz`` (key, ids, hist) named ``<name>-<split>-<key[:24]>.npz`` and keyed by ``files_key``: a
# hash of a header (what the counts mean) and every label file's absolute path, size and mtime.
# Any added, removed, reordered or modified file gives a new key and a fresh count.

def files_key(paths: Sequence[str], header: Sequence[object]) -> str:
    """sha256 of the ``header`` lines, then one ``path<TAB>size<TAB>mtime_ns`` line per file."""
    digest = hashlib.sha256()
    digest.update("".join(f"{part}\n" for part in header).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def default_cache_dir(root: str | os.PathLike) -> Path:
    """$CSS_CACHE_DIR, else <root>/.css_cache when writable, else ~/.cache/css."""
    env = os.environ.get("CSS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    local = Path(root).expanduser().absolute() / ".css_cache"
    if (local.is_dir() and os.access(local, os.W_OK)) or (
        not local.exists() and os.access(local.parent, os.W_OK)
    ):
        return local
    return Path.home() / ".cache" / "css"


def cache_folder(cache_dir: str | os.PathLike | None, root: str | os.PathLike) -> Path:
    """``cache_dir`` (data.cache_dir) when given, else ``default_cache_dir(root)``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(root)


def cache_file(cache_dir: Path, name: str, split: str, key: str) -> Path:
    return Path(cache_dir) / f"{name}-{split}-{key[:24]}.npz"


def load_counts(path: Path, key: str, ids: list[str]) -> np.ndarray | None:
    """The cached counts if ``path`` holds them for exactly this key and these ids, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key or data["ids"].tolist() != ids:
                return None
            return data["hist"].astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        # an unreadable cache (e.g. truncated by a full disk) is recomputed and overwritten
        log.warning("ignoring unreadable label cache %s (%s)", path, exc)
        return None


def save_counts(path: Path, key: str, ids: list[str], counts: np.ndarray) -> None:
    """Write the cache atomically; a location that cannot be written only logs a warning."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, key=np.array(key), ids=np.array(ids, dtype=str), hist=counts)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a read-only cache location only costs a rescan next time
        log.warning(
            "could not write label cache %s (%s); set CSS_CACHE_DIR to a writable folder",
            path, exc,
        )


def cached_counts(
    cache_dir: Path, name: str, split: str, key: str, ids: list[str],
    compute: Callable[[], np.ndarray],
) -> np.ndarray:
    """The per-item counts of one split: from ``cache_dir`` when cached under ``key`` for these
    ``ids``, else ``compute()`` (then cached). ``key``: ``files_key`` of the label files."""
    path = cache_file(cache_dir, name, split, key)
    counts = load_counts(path, key, ids)
    if counts is None:
        counts = np.asarray(compute(), dtype=np.int64)
        save_counts(path, key, ids, counts)
    return counts

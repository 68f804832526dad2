"""Every image file of a split is checked once when the split is indexed, before any training
(docs/faults.md#data-files).

A label file is decoded anyway to count its labels (css.image.labels), which finds a damaged one.
Decoding every image as well would cost a full read of the dataset, so images get a cheaper check:
PIL's ``verify()`` (the header, and for PNG every chunk and its checksum) plus, for JPEG, the
end-of-image marker that a truncated file lacks (``verify()`` alone does not decode JPEG data).
The outcome is cached like the label counts (css.tasks.index.cached_counts), keyed by every image
file's path, size and mtime, so a rerun does not pay again and a file replaced since is checked
anew. A damage these checks cannot see (a corrupt JPEG scan of full length) is still named when
the file is loaded (css.image.data.FileSource).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from css.errors import DataError
from css.image.datasets.listing import Listing
from css.tasks.index import cache_folder, cached_counts, files_key

log = logging.getLogger(__name__)

CHECK_VERSION = "css-image-check-v1"
_JPEG_EOI = b"\xff\xd9"
_TAIL = 64  # bytes searched for the JPEG end marker (encoders may pad after it)
_SHOWN = 5


class DamagedFile(DataError):
    """An image or label file that cannot be decoded; ``why`` is the decoder's complaint."""

    def __init__(self, path: str, kind: str, why: str) -> None:
        super().__init__(f"{kind} file {path} cannot be decoded ({why}): it is truncated or corrupt; restore it "
                         f"from the dataset's archive (or re-run its download script), or remove the image from "
                         f"the split")
        self.path, self.why = path, why


def damaged(path: str, kind: str, exc: BaseException) -> DamagedFile:
    """The error for one image or label file that the decoder refused with ``exc``."""
    return DamagedFile(path, kind, _why(exc))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip() or 'unreadable'}"


def image_problem(path: str) -> str | None:
    """Why the image file at ``path`` is damaged, or None when it passes the check."""
    try:
        with Image.open(path) as image:
            fmt = image.format
            image.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
        return _why(exc)
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - _TAIL))
            if _JPEG_EOI not in f.read():
                return "the JPEG end-of-image marker is missing"
    return None


def report(problems: list[tuple[str, str]], listing: Listing, kind: str) -> DataError:
    """One DataError naming the damaged files of a split (the first few) and the fix."""
    shown = "; ".join(f"{path} ({why})" for path, why in problems[:_SHOWN])
    more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return DataError(
        f"{len(problems)} {kind} file(s) of the {listing.name} {listing.split} split cannot be decoded "
        f"(truncated or corrupt): {shown}{more}. Restore them from the dataset's archive (or re-run its download "
        f"script), or remove those images from the split; nothing was trained")


def check_images(listing: Listing) -> np.ndarray:
    """Check every image of ``listing``; raises one DataError naming the damaged ones. Returns the
    file sizes (what the cache stores: the check passed for exactly these files)."""
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(image_problem, listing.images))
    problems = [(path, why) for path, why in zip(listing.images, found) if why]
    if problems:
        raise report(problems, listing, "image")
    return np.asarray([[os.path.getsize(p)] for p in listing.images], dtype=np.int64).reshape(-1, 1)


def images_key(listing: Listing) -> str:
    return files_key(listing.images, (CHECK_VERSION, listing.name))


def verified_images(listing: Listing, root: str | os.PathLike, cache_dir: str | os.PathLike | None) -> None:
    """``check_images`` unless the same image files passed it before (cached next to the label counts)."""
    folder = cache_folder(cache_dir, Path(root))
    cached_counts(folder, f"{listing.name}-images", listing.split, images_key(listing), listing.ids,
                  lambda: check_images(listing))

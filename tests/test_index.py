"""css.tasks.index: the presence rules both modalities feed to Task.select, and the on-disk cache of
per-item label counts (docs/contracts.md#csstasksindex)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

import css.tasks.index as index_module
from css.tasks.index import (ClassIndex, cache_file, cache_folder, cached_counts, default_cache_dir, files_key,
                             presence_any, presence_share)

# --- presence rules --------------------------------------------------------------------------


def test_presence_share_needs_more_than_five_percent_and_more_than_100_points():
    # rows: (size, count of label 0) and whether label 0 is shown
    rows = [
        (1000, 100, False),   # limit max(int(50), 100) = 100: 100 is not more than 100
        (1000, 101, True),
        (4000, 200, False),   # limit max(200, 100) = 200
        (4000, 201, True),
        (4000, 150, False),   # more than 100 points but not more than 5 %
        (10, 10, False),      # the whole block, but only 10 points
        (2019, 101, True),    # int(0.05 * 2019) = 100 -> limit 100
        (2040, 102, False),   # int(0.05 * 2040) = 102 -> limit 102
    ]
    sizes = np.array([size for size, _, _ in rows])
    counts = np.zeros((len(rows), 3), dtype=np.int64)
    counts[:, 0] = [count for _, count, _ in rows]
    shown = presence_share(counts, sizes)
    assert shown[:, 0].tolist() == [expected for _, _, expected in rows]
    assert not shown[:, 1:].any()  # zero counts are never shown
    # both numbers are options
    assert presence_share(counts, sizes, fraction=0.0, min_count=0)[:, 0].all()
    assert presence_share(np.array([[60]]), np.array([1000]), fraction=0.05, min_count=10).tolist() == [[True]]
    assert presence_share(np.array([[50]]), np.array([1000]), fraction=0.05, min_count=10).tolist() == [[False]]


def test_presence_any_and_class_index():
    counts = np.array([[5, 0, 1], [0, 0, 0]])
    assert presence_any(counts).tolist() == [[True, False, True], [False, False, False]]
    index = ClassIndex(["a", "b"], counts, np.array([8, 3]))
    assert index.ids == ["a", "b"]
    with pytest.raises(ValueError):
        ClassIndex(["a"], counts, np.array([8, 3]))


# --- the count cache -------------------------------------------------------------------------

@pytest.fixture
def css_warnings(caplog, monkeypatch):
    """caplog that also sees css.* records after a run set the "css" logger not to propagate."""
    monkeypatch.setattr(logging.getLogger("css"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="css.tasks.index"):
        yield caplog


def label_files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.lbl"
        path.write_bytes(bytes([i]) * (i + 1))
        paths.append(str(path))
    return paths


def test_files_key_follows_paths_sizes_mtimes_and_header(tmp_path):
    paths = label_files(tmp_path / "labels", 3)
    key = files_key(paths, ("v1", "voc", 21))
    assert key == files_key(list(paths), ["v1", "voc", 21]) and len(key) == 64
    assert files_key(paths, ("v1", "voc", 22)) != key
    assert files_key(paths[:2], ("v1", "voc", 21)) != key
    assert files_key(paths[::-1], ("v1", "voc", 21)) != key
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    touched = files_key(paths, ("v1", "voc", 21))
    assert touched != key
    Path(paths[1]).write_bytes(b"longer content")  # resized
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert files_key(paths, ("v1", "voc", 21)) not in (key, touched)


def test_cached_counts_reuses_and_recomputes(tmp_path):
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return np.full((2, 3), value, dtype=np.int32)
        return run

    folder = tmp_path / "cache"
    key = "ab" * 32
    first = cached_counts(folder, "voc", "train", key, ["x", "y"], compute(1))
    assert first.dtype == np.int64 and first.tolist() == [[1] * 3] * 2 and calls == [1]
    (path,) = folder.glob("*.npz")
    assert path == cache_file(folder, "voc", "train", key) and path.name == f"voc-train-{key[:24]}.npz"
    with np.load(path) as data:
        assert sorted(data.files) == ["hist", "ids", "key"]
        assert str(data["key"]) == key and data["ids"].tolist() == ["x", "y"]
    again = cached_counts(folder, "voc", "train", key, ["x", "y"], compute(2))
    assert again.tolist() == first.tolist() and calls == [1]  # read back, not recomputed
    # other ids under the same key (e.g. a reordered list) are recomputed and overwrite the file
    assert cached_counts(folder, "voc", "train", key, ["y", "x"], compute(3))[0, 0] == 3
    assert calls == [1, 3]
    # a new key is a new file
    cached_counts(folder, "voc", "train", "cd" * 32, ["x", "y"], compute(4))
    assert calls == [1, 3, 4] and len(list(folder.glob("voc-train-*.npz"))) == 2


def test_unreadable_cache_is_recomputed_and_rewritten(tmp_path, css_warnings):
    folder, key = tmp_path / "cache", "ef" * 32
    cached_counts(folder, "ade", "test", key, ["a"], lambda: np.array([[7, 1]]))
    path = cache_file(folder, "ade", "test", key)
    intact = path.read_bytes()
    for broken in (b"garbage", intact[: len(intact) // 2]):
        path.write_bytes(broken)
        counts = cached_counts(folder, "ade", "test", key, ["a"], lambda: np.array([[7, 1]]))
        assert counts.tolist() == [[7, 1]]
        assert "unreadable label cache" in css_warnings.text
        assert path.read_bytes() == intact
        css_warnings.clear()


def test_unwritable_cache_warns_and_still_returns_counts(tmp_path, monkeypatch, css_warnings):
    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(index_module, "atomic_write_bytes", refuse)
    counts = cached_counts(tmp_path / "ro", "voc", "train", "00" * 32, ["a"], lambda: np.array([[1, 2]]))
    assert counts.tolist() == [[1, 2]]
    assert not (tmp_path / "ro").exists() or not list((tmp_path / "ro").glob("*.npz"))
    assert "could not write label cache" in css_warnings.text and "CSS_CACHE_DIR" in css_warnings.text


def test_cache_folder_and_default(tmp_path, monkeypatch):
    monkeypatch.delenv("CSS_CACHE_DIR", raising=False)
    assert cache_folder(tmp_path / "mine", tmp_path / "data") == tmp_path / "mine"
    assert cache_folder(None, tmp_path) == default_cache_dir(tmp_path) == tmp_path / ".css_cache"
    monkeypatch.setenv("CSS_CACHE_DIR", str(tmp_path / "env"))
    assert cache_folder(None, tmp_path) == tmp_path / "env"

"""Image class-presence index: step subsets from the presence matrix, label histograms, the
on-disk histogram cache and ``python -m css.data inspect``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _image_fixtures import make_voc, write_png
from _image_reference import reference_keep, voc_order
import css.tasks.index as index_module
from css.errors import ConfigError
from css.image import data as image_data
from css.image import labels as image_labels
from css.image.data import build_dataset, class_presence, label_histograms, load_dataset_task, subset_indices
from css.tasks.index import default_cache_dir
from css.image.synthetic import SyntheticScenes
from css.tasks.registry import get_task

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    masks = make_voc(root)
    return root, masks


# --- subset_indices and the presence matrix --------------------------------------------------

@pytest.mark.parametrize("dataset,task_name,num_labels", [("voc", "15-1", 21), ("voc", "15-5s_b", 21), ("ade", "100-10", 151)])
def test_subset_indices_matches_keep_per_image(dataset, task_name, num_labels):
    rng = np.random.default_rng(0)
    presence = rng.random((400, num_labels)) < 2.5 / num_labels
    presence[:, 0] = rng.random(400) < 0.9
    task = get_task(dataset, task_name)
    for step in range(task.num_steps):
        for split in ("train", "test"):
            for overlap in (True, False):
                expected = [i for i in range(400) if task.keep(np.flatnonzero(presence[i]), step, split, overlap)]
                got = subset_indices(presence, task, step, split, overlap)
                assert got.tolist() == expected
                assert 0 < len(expected) < 400
                # the one rule (Task.select) also agrees with the literal reading in _image_reference
                np.testing.assert_array_equal(got, task.select(presence, step, split, overlap))
                labels = task.steps[step] if split == "train" else [c for g in task.steps[: step + 1] for c in g]
                labels_old = [c for g in task.steps[:step] for c in g]
                literal = [i for i in range(400)
                           if reference_keep(set(np.flatnonzero(presence[i]).tolist()), labels, labels_old, split, overlap)]
                assert got.tolist() == literal
    assert subset_indices(np.zeros((0, num_labels), bool), task, 0, "train").size == 0
    with pytest.raises(ConfigError, match="split"):
        subset_indices(presence, task, 0, "val")


def test_histograms_count_pixels(voc, tmp_path):
    root, masks = voc
    ids, hist = label_histograms("voc", root, "train", cache_dir=tmp_path)
    assert hist.shape == (len(ids), 22) and hist.dtype == np.int64
    for row, image_id in zip(hist, ids):
        counts = np.bincount(masks[image_id].ravel(), minlength=256)
        np.testing.assert_array_equal(row, np.append(counts[:21], counts[255]))
    _, presence = class_presence("voc", root, "train", cache_dir=tmp_path)
    np.testing.assert_array_equal(presence, hist[:, :21] > 0)


# --- the cache -------------------------------------------------------------------------------

def count_reads(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    original = image_labels.read_label

    def counting(path):
        calls.append(Path(path))
        return original(path)

    monkeypatch.setattr(image_labels, "read_label", counting)
    return calls


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    masks = make_voc(tmp_path / "data", num_train=12, num_val=4)
    root, cache = tmp_path / "data", tmp_path / "cache"
    task = get_task("voc", "15-1")
    calls = count_reads(monkeypatch)
    first = build_dataset("voc", root, task=task, step=1, split="train", cache_dir=cache)
    assert len(calls) == 12
    calls.clear()
    for step in range(task.num_steps):  # every step's subset comes from the cache
        build_dataset("voc", root, task=task, step=step, split="train", overlap=False, cache_dir=cache)
    assert calls == []
    assert len(list(cache.glob("voc-train-*.npz"))) == 1

    # modify one mask so that it now shows class 16: the key changes and the split is rescanned
    victim = next(i for i in voc_order("train", masks) if i not in first.ids)
    path = root / "PascalVOC2012" / "SegmentationClassAug" / f"{victim}.png"
    changed = masks[victim].copy()
    changed[1:3, 1:3] = 16
    write_png(path, changed)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = build_dataset("voc", root, task=task, step=1, split="train", cache_dir=cache)
    assert len(calls) == 12
    assert victim in second.ids and victim not in first.ids

    # touching a file (same content, new mtime) also invalidates
    calls.clear()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    build_dataset("voc", root, task=task, step=1, split="train", cache_dir=cache)
    assert len(calls) == 12


def test_cache_depends_on_list_contents(tmp_path, monkeypatch):
    make_voc(tmp_path, num_train=6, num_val=2)
    list_file = tmp_path / "PascalVOC2012" / "list" / "train_aug.txt"
    lines = list_file.read_text().splitlines(keepends=True)
    ids_all, _ = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
    list_file.write_text("".join(lines[:4]))
    calls = count_reads(monkeypatch)
    ids_short, hist = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
    assert ids_short == ids_all[:4] and hist.shape[0] == 4 and len(calls) == 4


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CSS_CACHE_DIR", raising=False)
    assert default_cache_dir(tmp_path) == tmp_path / ".css_cache"
    monkeypatch.setenv("CSS_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir(tmp_path) == tmp_path / "env"
    monkeypatch.delenv("CSS_CACHE_DIR")
    monkeypatch.setattr(index_module.os, "access", lambda path, mode: False)  # a read-only root
    assert default_cache_dir(tmp_path) == Path.home() / ".cache" / "css"


def test_cache_key_and_file_keep_their_format(tmp_path):
    """Caches written before css.tasks.index held the cache stay valid: same key, name and content."""
    import hashlib

    make_voc(tmp_path, num_train=3, num_val=1)
    listing = image_data.list_split("voc", tmp_path, "train")
    digest = hashlib.sha256(b"css-label-histograms-v1\nvoc\n21\n255\n")
    for path in listing.labels:
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    assert image_labels.cache_key(listing) == digest.hexdigest()
    _, hist = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
    (cache_file,) = (tmp_path / "c").glob("voc-train-*.npz")
    assert cache_file.name == f"voc-train-{digest.hexdigest()[:24]}.npz"
    with np.load(cache_file) as data:
        assert str(data["key"]) == digest.hexdigest() and data["ids"].tolist() == listing.ids
        np.testing.assert_array_equal(data["hist"], hist)


def test_corrupt_cache_is_rebuilt(tmp_path):
    make_voc(tmp_path, num_train=4, num_val=2)
    _, hist = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
    (cache_file,) = (tmp_path / "c").glob("voc-train-*.npz")
    intact = cache_file.read_bytes()
    for broken in (b"not a zip file", intact[: len(intact) // 2]):  # garbage, truncated
        cache_file.write_bytes(broken)
        _, again = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
        np.testing.assert_array_equal(hist, again)
        assert cache_file.read_bytes() == intact  # rewritten


# --- python -m css.data inspect ----------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "css.data", *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_inspect_cli(voc, tmp_path):
    root, masks = voc
    task = get_task("voc", "15-1")
    result = run_cli("inspect", "--dataset", "voc", "--root", str(root), "--task", "15-1", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in range(task.num_steps):
        train = build_dataset("voc", root, task=task, step=step, split="train", cache_dir=tmp_path)
        test = build_dataset("voc", root, task=task, step=step, split="test", cache_dir=tmp_path)
        assert f"step {step}: {len(train)} train images, {len(test)} test images" in out
    # step 1 learns label 16 (pottedplant): its pixel count over the kept train images
    train = build_dataset("voc", root, task=task, step=1, split="train", cache_dir=tmp_path)
    pixels = sum(int((masks[i] == 16).sum()) for i in train.ids)
    assert f"pottedplant (16): {pixels} px" in out


def test_inspect_cli_errors(tmp_path, capsys):
    from css.data import main

    assert main(["inspect", "--dataset", "voc", "--root", str(tmp_path), "--task", "15-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "PascalVOC2012" in err
    assert main(["inspect", "--dataset", "voc", "--root", str(tmp_path), "--task", "15-7"]) == 2
    assert "unknown task '15-7'" in capsys.readouterr().err
    assert main(["inspect", "--dataset", "synthetic", "--task", "2-1", "--option", "num_classes"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_inspect_synthetic_disjoint(capsys):
    from css.data import main

    args = ["inspect", "--dataset", "synthetic", "--task", "[[0, 1, 2], [3], [4]]", "--disjoint"]
    options = ["--option", "num_classes=4", "--option", "num_images=40", "--option", "size=24"]
    assert main(args + options) == 0
    out = capsys.readouterr().out
    opts = {"num_classes": 4, "num_images": 40, "size": 24}
    task = load_dataset_task("synthetic", [[0, 1, 2], [3], [4]], options=opts)
    train = build_dataset("synthetic", None, task=task, step=1, split="train", overlap=False, options=opts)
    assert "disjoint setting" in out
    assert f"step 1: {len(train)} train images" in out
    scenes = SyntheticScenes(40, 24, 4)
    border = sum(int((scenes[int(i.split("_")[1])][1] == 255).sum()) for i in train.ids)
    assert f"ignored (255): {border} px" in out.split("\nstep 1: ")[1].split("\nstep 2: ")[0]

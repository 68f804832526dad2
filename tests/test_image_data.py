"""Image datasets: step filters and label masking against a direct reading of spec 2d §6.2-6.3,
the label-histogram cache, layout errors, the synthetic benchmark and ``python -m css.data``."""

from __future__ import annotations

import colorsys
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _image_fixtures import make_ade, make_folder, make_voc, write_png
from css.errors import ConfigError, DataError, TaskError
from css.image import data as image_data
from css.image.data import (
    build_dataset,
    class_presence,
    dataset_num_labels,
    default_cache_dir,
    label_histograms,
    load_dataset_task,
    load_split,
    subset_indices,
)
from css.image.synthetic import SyntheticScenes, class_styles
from css.image.transforms import train_transform
from css.tasks import get_task

REPO = Path(__file__).resolve().parents[1]


# --- a slow, literal implementation of spec 2d §6.2-6.4, written independently of css.tasks -----

def reference_keep(present: set[int], labels: list[int], labels_old: list[int], split: str, overlap: bool) -> bool:
    """spec 2d §6.2 (train) and §6.3 (test): ``labels`` = the step's classes (train) or all seen
    classes (test), background 0 removed."""
    fg = [c for c in labels if c != 0]
    if not any(c in present for c in fg):
        return False
    if split == "train" and not overlap:
        allowed = set(labels) | set(labels_old) | {0, 255}
        return present <= allowed
    return True


def reference_target(mask: np.ndarray, order: list[int], mapped: list[int], dataset: str, split: str) -> np.ndarray:
    """spec 2d §6.2-6.4: mapped labels -> their position in ``order``; everything else (background
    0, old classes at train, future classes) -> 0; 255 stays 255 except in ADE training (-> 0)."""
    out = np.zeros(mask.shape, dtype=np.int64)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            value = int(mask[y, x])
            if value == 255:
                out[y, x] = 0 if (dataset == "ade" and split == "train") else 255
            elif value in mapped:
                out[y, x] = order.index(value)
    return out


def reference_subset(masks: dict[str, np.ndarray], ids: list[str], task, step: int, split: str, overlap: bool):
    order = [c for group in task.steps[: step + 1] for c in group]
    labels_old = [c for group in task.steps[:step] for c in group]
    labels = task.steps[step] if split == "train" else order
    kept = [i for i in ids if reference_keep(set(np.unique(masks[i]).tolist()), labels, labels_old, split, overlap)]
    mapped = [c for c in labels if c != 0]
    return kept, {i: reference_target(masks[i], order, mapped, task.dataset, split) for i in kept}


def voc_order(split: str, masks: dict[str, np.ndarray]) -> list[str]:
    prefix = "2007_train" if split == "train" else "2007_val"
    return sorted(i for i in masks if i.startswith(prefix))


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    masks = make_voc(root)
    return root, masks


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade")
    masks = make_ade(root)
    return root, masks


# --- filters and masking ---------------------------------------------------------------------

@pytest.mark.parametrize("task_name", ["15-1", "15-5s_b"])
@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_voc_subsets_match_spec(voc, tmp_path, task_name, overlap, split):
    root, masks = voc
    task = get_task("voc", task_name)
    ids = voc_order(split, masks)
    sizes = []
    for step in range(task.num_steps):
        dataset = build_dataset("voc", root, task=task, step=step, split=split, overlap=overlap, cache_dir=tmp_path)
        kept, targets = reference_subset(masks, ids, task, step, split, overlap)
        assert dataset.ids == kept, f"step {step}"
        for i, image_id in enumerate(dataset.ids):
            image, target = dataset[i]
            assert image.dtype == torch.float32 and image.shape == (3, 24, 32)
            assert 0.0 <= image.min() and image.max() <= 1.0
            assert target.dtype == torch.int64
            np.testing.assert_array_equal(target.numpy(), targets[image_id])
        sizes.append(len(kept))
    assert all(sizes), f"every step should keep some images, got {sizes}"


def test_split_index_gives_every_subset_without_touching_the_disk(voc, tmp_path, monkeypatch):
    root, masks = voc
    task = get_task("voc", "15-1")
    index = {split: load_split("voc", root, split, cache_dir=tmp_path) for split in ("train", "test")}
    expected = {
        (step, split, overlap): build_dataset("voc", root, task=task, step=step, split=split, overlap=overlap,
                                              cache_dir=tmp_path).ids
        for step in range(task.num_steps) for split in ("train", "test") for overlap in (True, False)
    }

    def no_disk(*args, **kwargs):
        raise AssertionError("build_dataset(index=...) must not list or stat the files again")

    monkeypatch.setattr(image_data, "list_split", no_disk)
    monkeypatch.setattr(image_data, "cache_key", no_disk)
    for (step, split, overlap), ids in expected.items():
        dataset = build_dataset("voc", None, task=task, step=step, split=split, overlap=overlap, index=index[split])
        assert dataset.ids == ids, (step, split, overlap)
    image, target = dataset[0]  # items still load from the indexed files
    assert image.shape[0] == 3 and target.ndim == 2
    with pytest.raises(ConfigError, match="split 'train'.*load_split"):
        build_dataset("voc", root, task=task, step=0, split="test", index=index["train"])


def test_voc_disjoint_drops_future_classes(voc, tmp_path):
    root, masks = voc
    task = get_task("voc", "15-1")
    overlap = build_dataset("voc", root, task=task, step=0, split="train", cache_dir=tmp_path)
    disjoint = build_dataset("voc", root, task=task, step=0, split="train", overlap=False, cache_dir=tmp_path)
    dropped = set(overlap.ids) - set(disjoint.ids)
    assert dropped and set(disjoint.ids) <= set(overlap.ids)
    for image_id in dropped:  # each dropped image shows a class of steps 1..5
        assert set(np.unique(masks[image_id]).tolist()) & set(range(16, 21))


@pytest.mark.parametrize("split", ["train", "test"])
def test_ade_subsets_match_spec(ade, tmp_path, split):
    root, masks = ade
    task = get_task("ade", "100-50")
    prefix = "ADE_training" if split == "train" else "ADE_validation"
    ids = sorted(i for i in masks if i.startswith(prefix))  # spec 2d §7: sorted(os.listdir)
    for step in range(task.num_steps):
        dataset = build_dataset("ade", root, task=task, step=step, split=split, cache_dir=tmp_path)
        kept, targets = reference_subset(masks, ids, task, step, split, overlap=True)
        assert dataset.ids == kept and kept
        for i, image_id in enumerate(dataset.ids):
            np.testing.assert_array_equal(dataset[i][1].numpy(), targets[image_id])


def test_ade_train_maps_void_and_255_to_background(tmp_path):
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[2:4, 2:4] = 120
    labels[5:7, 5:7] = 255
    labels[0, 0] = 30
    make_ade(tmp_path, num_train=1, num_val=1)
    stem = "ADE_training_00000000"
    write_png(tmp_path / "ADEChallengeData2016" / "annotations" / "training" / f"{stem}.png", labels)
    Image.new("RGB", (8, 8)).save(tmp_path / "ADEChallengeData2016" / "images" / "training" / f"{stem}.jpg")
    task = get_task("ade", "100-50")
    dataset = build_dataset("ade", tmp_path, task=task, step=1, split="train", cache_dir=tmp_path / "c")
    target = dataset[0][1].numpy()
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[2:4, 2:4] = 120  # identity order: label 120 is channel 120
    np.testing.assert_array_equal(target, expected)


def test_transform_receives_dataset_labels_and_remap_follows(voc, tmp_path):
    root, masks = voc
    task = get_task("voc", "15-1")
    seen = []

    def transform(image, mask):
        seen.append((type(image).__name__, type(mask).__name__, mask.clone()))
        return image.float()[:, :8, :8] / 255.0, mask[:8, :8]

    dataset = build_dataset("voc", root, task=task, step=1, split="train", transform=transform, cache_dir=tmp_path)
    image, target = dataset[0]
    assert seen[0][:2] == ("Image", "Mask")
    raw = masks[dataset.ids[0]]
    np.testing.assert_array_equal(seen[0][2].numpy(), raw)  # dataset labels, before remapping
    np.testing.assert_array_equal(target.numpy(), task.remap(raw[:8, :8], 1, "train"))
    assert image.shape == (3, 8, 8)


def test_datasets_pickle_for_loader_workers(voc, tmp_path):
    root, _ = voc
    options = {"num_images": 8, "size": 16, "num_classes": 3}
    datasets = [
        build_dataset("voc", root, task=get_task("voc", "15-1"), step=1, split="train", cache_dir=tmp_path,
                      transform=train_transform(16)),
        build_dataset("synthetic", None, task=load_dataset_task("synthetic", "2-1", options=options),
                      step=0, split="test", options=options),
    ]
    for dataset in datasets:
        copy = pickle.loads(pickle.dumps(dataset))
        assert copy.ids == dataset.ids
        torch.manual_seed(0)
        image, target = dataset[0]
        torch.manual_seed(0)
        image_copy, target_copy = copy[0]
        torch.testing.assert_close(image, image_copy)
        torch.testing.assert_close(target, target_copy)


def test_folder_dataset(tmp_path):
    masks = make_folder(tmp_path, ignore_index=200)
    assert dataset_num_labels("folder", tmp_path) == 4
    task = load_dataset_task("folder", "2-1", root=tmp_path)
    assert task.steps == [[0, 1, 2], [3]] and task.class_names[3] == "bird"
    dataset = build_dataset("folder", tmp_path, task=task, step=1, split="train", cache_dir=tmp_path / "c")
    expected_ids = [i for i in (f"tr{n}" for n in range(8)) if 3 in masks[i]]
    assert dataset.ids == expected_ids
    raw = masks[dataset.ids[0]]
    target = dataset[0][1].numpy()
    # the folder's ignore value 200 is read as 255; label 3 is step 1's class (channel 3)
    np.testing.assert_array_equal(target == 255, raw == 200)
    np.testing.assert_array_equal(target == 3, raw == 3)
    assert set(np.unique(target)) <= {0, 3, 255}


def test_folder_split_files(tmp_path):
    make_folder(tmp_path, split_files=True, train=3, test=2)
    ids, presence = class_presence("folder", tmp_path, "test", cache_dir=tmp_path / "c")
    assert ids == ["te0", "te1"] and presence.shape == (2, 4)


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
    assert subset_indices(np.zeros((0, num_labels), bool), task, 0, "train").size == 0


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
    original = image_data._read_label

    def counting(path):
        calls.append(Path(path))
        return original(path)

    monkeypatch.setattr(image_data, "_read_label", counting)
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
    monkeypatch.setattr(image_data.os, "access", lambda path, mode: False)  # a read-only root
    assert default_cache_dir(tmp_path) == Path.home() / ".cache" / "css"


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


# --- errors ----------------------------------------------------------------------------------

def test_missing_root_and_bad_layout(tmp_path):
    task = get_task("voc", "15-1")
    with pytest.raises(DataError, match="not a folder"):
        build_dataset("voc", tmp_path / "nowhere", task=task, step=0, split="train")
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=task, step=0, split="train")
    assert "PascalVOC2012" in str(info.value) and "Expected layout" in str(info.value)
    assert "prepare_voc.sh" in str(info.value)
    with pytest.raises(DataError, match="ADEChallengeData2016"):
        build_dataset("ade", tmp_path, task=get_task("ade", "100-50"), step=0, split="train")
    with pytest.raises(DataError, match="classes.yaml"):
        (tmp_path / "images").mkdir()
        (tmp_path / "masks").mkdir()
        build_dataset("folder", tmp_path, task=task, step=0, split="train")


def test_missing_list_file(tmp_path):
    make_voc(tmp_path, num_train=3, num_val=2)
    (tmp_path / "PascalVOC2012" / "list" / "val.txt").unlink()
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="test")
    assert "val.txt" in str(info.value) and "/JPEGImages/<id>.jpg" in str(info.value)


def test_missing_mask_names_the_image(tmp_path):
    make_voc(tmp_path, num_train=5, num_val=2)
    (tmp_path / "PascalVOC2012" / "SegmentationClassAug" / "2007_train0003.png").unlink()
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="train")
    message = str(info.value)
    assert "2007_train0003" in message and "SegmentationClassAug" in message and "no label file" in message


def test_missing_image_is_reported(tmp_path):
    make_voc(tmp_path, num_train=5, num_val=2)
    (tmp_path / "PascalVOC2012" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_train0001.jpg").unlink()
    with pytest.raises(DataError, match="2007_train0001.jpg"):
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="train")


def test_ade_image_without_annotation(tmp_path):
    make_ade(tmp_path, num_train=3, num_val=1)
    (tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_training_00000001.png").unlink()
    with pytest.raises(DataError, match="ADE_training_00000001"):
        build_dataset("ade", tmp_path, task=get_task("ade", "100-50"), step=0, split="train")


def test_out_of_range_mask_values(tmp_path):
    make_voc(tmp_path, num_train=4, num_val=2)
    bad = np.zeros((24, 32), dtype=np.uint8)
    bad[3, 3], bad[4, 4] = 30, 21
    write_png(tmp_path / "PascalVOC2012" / "SegmentationClassAug" / "2007_train0002.png", bad)
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="train", cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "2007_train0002.png" in message and "[21, 30]" in message and "0..20" in message


def test_colour_mask_is_rejected(tmp_path):
    make_voc(tmp_path, num_train=2, num_val=1)
    Image.new("RGB", (32, 24)).save(tmp_path / "PascalVOC2012" / "SegmentationClassAug" / "2007_train0000.png")
    with pytest.raises(DataError, match="mode RGB"):
        label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")


def test_malformed_list_line(tmp_path):
    make_voc(tmp_path, num_train=2, num_val=1)
    (tmp_path / "PascalVOC2012" / "list" / "val.txt").write_text("/JPEGImages/a.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        label_histograms("voc", tmp_path, "test", cache_dir=tmp_path / "c")


def test_list_parsing_accepts_missing_final_newline_and_crlf(tmp_path):
    masks = make_voc(tmp_path, num_train=3, num_val=2)
    list_file = tmp_path / "PascalVOC2012" / "list" / "train_aug.txt"
    list_file.write_text(list_file.read_text().rstrip("\n").replace("\n", "\r\n"))
    ids, _ = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
    assert ids == voc_order("train", masks)


def test_voc_folder_itself_as_root(voc, tmp_path):
    root, masks = voc
    ids, _ = label_histograms("voc", root / "PascalVOC2012", "test", cache_dir=tmp_path)
    assert ids == voc_order("test", masks)


def test_task_of_another_dataset_is_refused(voc, tmp_path):
    root, _ = voc
    with pytest.raises(TaskError, match="0..20"):
        build_dataset("voc", root, task=get_task("ade", "100-50"), step=0, split="train", cache_dir=tmp_path)


def test_unknown_dataset_and_options():
    task = get_task("voc", "15-1")
    with pytest.raises(ConfigError, match="cityscapes"):
        build_dataset("cityscapes", "x", task=task, step=0, split="train")
    with pytest.raises(ConfigError, match="num_clases"):
        build_dataset("synthetic", None, task=task, step=0, split="train", options={"num_clases": 3})
    with pytest.raises(ConfigError, match="split"):
        build_dataset("synthetic", None, task=task, step=0, split="val")


# --- synthetic scenes ------------------------------------------------------------------------

def test_synthetic_is_deterministic():
    a = SyntheticScenes(6, 48, 8, seed=3)
    b = SyntheticScenes(6, 48, 8, seed=3)
    for i in range(6):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    assert not np.array_equal(a[0][0], a[1][0])
    assert not np.array_equal(a[0][0], SyntheticScenes(6, 48, 8, seed=4)[0][0])
    assert not np.array_equal(a[0][0], SyntheticScenes(6, 48, 8, seed=3, split="test")[0][0])
    image, labels = SyntheticScenes(1, (40, 56), 3)[0]
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8 and labels.shape == (40, 56)


def hue_of(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = image[mask].astype(np.float64) / 255.0
    return np.array([colorsys.rgb_to_hsv(*p)[0] for p in rgb[::7]])


def circular_gap(a: float, b: float) -> float:
    return min(abs(a - b), 1 - abs(a - b))


def test_synthetic_label_statistics():
    k = 8
    scenes = SyntheticScenes(240, 64, k, seed=0)
    presence = np.zeros((240, 256), dtype=bool)
    hues: dict[int, list[np.ndarray]] = {c: [] for c in range(1, k + 1)}
    border_pixels = 0
    for i in range(len(scenes)):
        image, labels = scenes[i]
        presence[i, np.unique(labels)] = True
        border_pixels += int((labels == 255).sum())
        for c in range(1, k + 1):
            if (labels == c).sum() > 20:
                hues[c].append(hue_of(image, labels == c))
    assert not presence[:, k + 1:255].any()  # labels are 0..K and 255 only
    per_class = presence[:, 1:k + 1].mean(axis=0)
    assert per_class.min() > 0.15, per_class  # every class appears in plenty of images
    assert border_pixels > 0
    objects_per_image = presence[:, 1:k + 1].sum(axis=1)
    assert objects_per_image.min() >= 1 and objects_per_image.max() <= 4
    # pairs (1, 2), (3, 4), ... share a hue range; classes of different pairs do not
    median = {c: float(np.median(np.concatenate(v))) for c, v in hues.items()}
    for c in range(1, k + 1, 2):
        assert circular_gap(median[c], median[c + 1]) < 0.04
    for c in range(1, k + 1, 2):
        for d in range(c + 2, k + 1, 2):
            assert circular_gap(median[c], median[d]) > 0.1


def test_synthetic_styles_cycle_shapes_beyond_eight_classes():
    styles = class_styles(12)
    assert styles[0].shape == styles[8].shape == "circle"
    assert styles[0].hue != styles[8].hue
    assert len({s.name for s in styles}) == 12


def test_synthetic_build_dataset_and_future_classes():
    options = {"num_images": {"train": 60, "test": 30}, "size": 32, "num_classes": 4, "seed": 1}
    task = load_dataset_task("synthetic", "2-1", options=options)
    assert task.steps == [[0, 1, 2], [3], [4]]
    assert dataset_num_labels("synthetic", options=options) == 5
    scenes = SyntheticScenes(60, 32, 4, seed=1)
    dataset = build_dataset("synthetic", None, task=task, step=0, split="train", options=options)
    kept = [i for i in range(60) if {1, 2} & set(np.unique(scenes[i][1]).tolist())]
    assert dataset.ids == [f"train_{i:06d}" for i in kept]
    for n, i in enumerate(kept[:10]):
        raw = scenes[i][1]
        image, target = dataset[n]
        assert image.shape == (3, 32, 32)
        expected = np.where(np.isin(raw, [3, 4]), 0, raw)  # future classes are background
        np.testing.assert_array_equal(target.numpy(), expected)
    test = build_dataset("synthetic", None, task=task, step=2, split="test", options=options)
    assert len(test) == sum(
        1 for i in range(30) if set(np.unique(SyntheticScenes(30, 32, 4, 1, "test")[i][1]).tolist()) & {1, 2, 3, 4}
    )


def test_named_tasks_for_user_datasets():
    options = {"num_classes": 6}
    assert load_dataset_task("synthetic", "offline", options=options).steps == [list(range(7))]
    assert load_dataset_task("synthetic", "3-2", options=options).steps == [[0, 1, 2, 3], [4, 5], [6]]
    assert load_dataset_task("synthetic", [[0, 1], [2, 3]], options=options).num_steps == 2
    with pytest.raises(TaskError, match="m-n"):
        load_dataset_task("synthetic", "6-1", options=options)
    with pytest.raises(TaskError, match="0..6"):
        load_dataset_task("synthetic", [[0, 1], [9]], options=options)


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

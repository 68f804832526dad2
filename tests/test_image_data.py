"""Image datasets: step filters and label masking against a direct reading of the rules
(tests/_image_reference.py, docs/tasks.md), the folder dataset and the synthetic benchmark."""

from __future__ import annotations

import colorsys
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from _image_fixtures import make_ade, make_folder, make_voc, write_png
from _image_reference import reference_subset, voc_order
from css.errors import ConfigError, TaskError
import css.tasks.index
from css.image import data as image_data
from css.image import labels as image_labels
from css.image.data import build_dataset, class_presence, load_dataset_task, load_split
from css.image.datasets import dataset_num_labels
from css.image.synthetic import SyntheticScenes, class_styles
from css.image.transforms import train_transform
from css.tasks.registry import get_task


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
    monkeypatch.setattr(image_labels, "cache_key", no_disk)
    monkeypatch.setattr(image_labels, "histograms", no_disk)
    monkeypatch.setattr(css.tasks.index, "files_key", no_disk)
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
    # sorted(os.listdir) order (docs/protocol-2d.md#datasets-on-disk)
    ids = sorted(i for i in masks if i.startswith(prefix))
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

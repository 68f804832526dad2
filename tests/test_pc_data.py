"""Point-cloud datasets: per-step block sets and label maps derived by hand from the fixture
tables (tests/_pc_fixtures.py), ScanNet's unannotated label under both protocols, sampling and
the 9 input features (docs/pointcloud-datasets.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _pc_fixtures import FOLDER_CLASSES, make_folder, make_s3dis, make_scannet
from css.errors import ConfigError, DataError, TaskError
from css.pointcloud.data import build_dataset, dataset_summary, load_dataset_task, open_split
from css.pointcloud.transforms import rotate_jitter
from css.tasks.task import Task

S3DIS_STEPS = [[0, 1, 2], [3], [4, 5]]
SCANNET_STEPS = [[1, 2], [3, 17]]


@pytest.fixture(scope="module")
def s3dis(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("s3dis")
    return root, make_s3dis(root)


@pytest.fixture(scope="module")
def scannet(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scannet")
    return root, make_scannet(root)


def s3dis_task() -> Task:
    return load_dataset_task("s3dis", S3DIS_STEPS)


def expected(raw: np.ndarray, steps: list[list[int]], step: int, split: str) -> np.ndarray:
    """Literal label rule: channel = 1 + position of the label among the step's labels in task
    order (train: current step only; test: all seen steps), anything else 0, 255 kept."""
    seen = [label for group in steps[: step + 1] for label in group]
    mapped = steps[step] if split == "train" else seen
    out = np.zeros(len(raw), dtype=np.int64)
    for i, value in enumerate(raw):
        if value == 255:
            out[i] = 255
        elif value in mapped:
            out[i] = 1 + seen.index(int(value))
    return out


# --- block selection ------------------------------------------------------------------------

@pytest.mark.parametrize("overlap, wanted", [
    (True, [[0, 1, 2], [0, 3], [2, 4]]),   # b1 (3 at exactly 100) and b3 (4 at exactly 200) out
    (False, [[1], [0, 3], []]),            # disjoint: b0 shows future 3, b2 shows 4 and 12, b4 shows 7
])
def test_train_blocks_every_step(s3dis, overlap, wanted):
    root, _ = s3dis
    task = s3dis_task()
    for step, blocks in enumerate(wanted):
        ds = build_dataset("s3dis", root, task=task, step=step, split="train", overlap=overlap)
        assert ds.indices.tolist() == blocks
        assert ds.ids == [ds.store.ids[i] for i in blocks]


def test_test_blocks_are_all_blocks(s3dis):
    root, written = s3dis
    for step in range(3):
        ds = build_dataset("s3dis", root, task=s3dis_task(), step=step, split="test")
        assert ds.ids == [b["block_id"] for b in written["test"]]


def test_reference_task_and_presence_option(s3dis):
    root, _ = s3dis
    task = load_dataset_task("s3dis", "12-1")   # step 1 = clutter (12): shown in b2 only
    assert build_dataset("s3dis", root, task=task, step=1, split="train").indices.tolist() == [2]
    assert build_dataset("s3dis", root, task=task, step=0, split="train").indices.tolist() == [0, 1, 2, 3, 4, 5]
    # a looser rule (any 50 points, no share) lets b5's step-0 classes count
    loose = build_dataset("s3dis", root, task=s3dis_task(), step=0, split="train", presence=(0.0, 50))
    assert loose.indices.tolist() == [0, 1, 2, 5]


# --- label maps -----------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_labels_every_step(s3dis, split):
    root, written = s3dis
    task = s3dis_task()
    for step in range(3):
        ds = build_dataset("s3dis", root, task=task, step=step, split=split, num_points=None)
        for i, index in enumerate(ds.indices):
            raw = written[split][index]["labels"]["reference"]
            assert np.array_equal(ds[i][1].numpy(), expected(raw, S3DIS_STEPS, step, split))


def test_label_examples(s3dis):
    """A few values written out: train keeps only current classes, test all seen, future -> 0."""
    root, written = s3dis
    ds = build_dataset("s3dis", root, task=s3dis_task(), step=1, split="train", num_points=None)
    raw, labels = written["train"][0]["labels"]["reference"], ds[0][1].numpy()   # block b0: {0, 3}
    assert set(labels[raw == 0]) == {0} and set(labels[raw == 3]) == {4}
    ds = build_dataset("s3dis", root, task=s3dis_task(), step=1, split="test", num_points=None)
    raw, labels = written["test"][2]["labels"]["reference"], ds[2][1].numpy()     # {3, 5, 255}
    assert set(labels[raw == 3]) == {4} and set(labels[raw == 5]) == {0} and set(labels[raw == 255]) == {255}


# --- ScanNet unannotated ----------------------------------------------------------------------

def scannet_labels(root, step, split, protocol, block=0):
    task = load_dataset_task("scannet", SCANNET_STEPS)
    ds = build_dataset("scannet", root, task=task, step=step, split=split, num_points=None, protocol=protocol)
    return ds, ds[block][1].numpy()


@pytest.mark.parametrize("step, split, protocol, unannotated", [
    (0, "train", "reference", 255), (1, "train", "reference", 0), (0, "test", "reference", 0),
    (1, "test", "reference", 0), (0, "train", "fixed", 255), (1, "train", "fixed", 255),
    (0, "test", "fixed", 255), (1, "test", "fixed", 255),
])
def test_scannet_unannotated(scannet, step, split, protocol, unannotated):
    root, written = scannet
    ds, labels = scannet_labels(root, step, split, protocol)
    raw = written[split][ds.indices[0]]["labels"][protocol]
    assert set(labels[raw == 0]) == {unannotated}
    assert np.array_equal(labels[raw != 0], expected(raw, SCANNET_STEPS, step, split)[raw != 0])


def test_scannet_label_sets(scannet):
    """Block selection and labels come from the protocol's label set: 17 exists only in "fixed"."""
    root, written = scannet
    task = load_dataset_task("scannet", SCANNET_STEPS)
    ref = build_dataset("scannet", root, task=task, step=1, split="train", protocol="reference")
    fixed = build_dataset("scannet", root, task=task, step=1, split="train", protocol="fixed", num_points=None)
    assert ref.indices.tolist() == [0] and fixed.indices.tolist() == [0, 1]
    raw = written["train"][1]["labels"]["fixed"]
    assert set(fixed[1][1].numpy()[raw == 17]) == {4}   # 17 is channel 4 at step 1 ([bg, 1, 2, 3, 17])
    assert build_dataset("scannet", root, task=task, step=0, split="train").indices.tolist() == [0, 1]


# --- features and sampling --------------------------------------------------------------------

def test_features_without_augmentation(s3dis):
    root, written = s3dis
    ds = build_dataset("s3dis", root, task=s3dis_task(), step=0, split="train", num_points=512, seed=0)
    features, labels = ds[0]
    assert features.shape == (9, 512) and features.dtype == torch.float32
    assert labels.shape == (512,) and labels.dtype == torch.int64
    f = features.numpy()
    block = written["train"][0]
    # recover the sampled points from rgb (uint8 / 255 is exact enough to match rows)
    assert np.allclose(f[:3].min(axis=1), 0) and (f[:3] >= 0).all()
    assert np.allclose(f[3:6] * 255, np.round(f[3:6] * 255), atol=1e-3) and f[3:6].max() <= 1
    assert np.allclose(f[6:].min(axis=1), 0) and np.allclose(f[6:].max(axis=1), 1)
    # block-local xyz = scene coords minus the sampled minimum: differences are preserved
    assert f[0].max() <= 1.0 + 1e-6 and f[2].max() <= 2.5 + 1e-6
    assert block["coord"][:, 2].min() > 0.1   # the scene coords do not start at 0, the features do


def test_all_points_in_file_order(s3dis):
    root, written = s3dis
    ds = build_dataset("s3dis", root, task=s3dis_task(), step=0, split="train", num_points=None)
    block = written["train"][2]
    f, labels = (t.numpy() for t in ds[2])
    coord = block["coord"]
    assert f.shape == (9, len(coord))
    assert np.allclose(f[:3].T, coord - coord.min(0), atol=1e-6)
    assert np.allclose(f[3:6].T, block["color"] / 255.0)
    assert np.allclose(f[6:].T, (coord - coord.min(0)) / (coord.max(0) - coord.min(0)), atol=1e-5)
    assert np.array_equal(labels, expected(block["labels"]["reference"], S3DIS_STEPS, 0, "train"))


def test_sampling_with_and_without_replacement(s3dis):
    root, _ = s3dis
    task = s3dis_task()
    small = build_dataset("s3dis", root, task=task, step=0, split="train", num_points=4096, seed=1)
    f = small[0][0].numpy()   # block b0 has 2000 points
    assert f.shape == (9, 4096) and len(np.unique(f.T, axis=0)) <= 2000
    exact = build_dataset("s3dis", root, task=task, step=0, split="train", num_points=2000, seed=1)
    assert len(np.unique(exact[0][0].numpy().T, axis=0)) == 2000   # every point once


def test_seeded_and_global_rng(s3dis):
    root, _ = s3dis
    task = s3dis_task()
    seeded = build_dataset("s3dis", root, task=task, step=0, split="test", num_points=256, seed=7)
    a, b = seeded[0], seeded[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    again = build_dataset("s3dis", root, task=task, step=0, split="test", num_points=256, seed=7, augment=True)
    assert torch.equal(again[0][1], a[1])   # same indices: sampling is drawn before the augmentation
    assert not torch.equal(seeded[1][0][:3], seeded[0][0][:3])
    other = build_dataset("s3dis", root, task=task, step=0, split="test", num_points=256, seed=8)
    assert not torch.equal(other[0][0], a[0])
    unseeded = build_dataset("s3dis", root, task=task, step=0, split="train", num_points=256, augment=True)
    np.random.seed(3)
    x = unseeded[0][0]
    np.random.seed(3)
    y = unseeded[0][0]
    z = unseeded[0][0]
    assert torch.equal(x, y) and not torch.equal(y, z)


def test_augmentation_rotates_about_z(s3dis):
    root, _ = s3dis
    task = s3dis_task()
    plain = build_dataset("s3dis", root, task=task, step=0, split="train", num_points=300, seed=4)[1][0].numpy()
    aug = build_dataset("s3dis", root, task=task, step=0, split="train", num_points=300, seed=4,
                        augment=True)[1][0].numpy()
    tol = 2 * 0.05 * np.sqrt(2) + 1e-5
    assert np.abs(aug[2] - plain[2]).max() <= 0.05 + 1e-6          # z kept up to the jitter
    radius = lambda f: np.hypot(f[0], f[1])                          # rotation about the origin
    assert np.abs(radius(aug) - radius(plain)).max() <= tol
    pairs = lambda f: np.hypot(f[0][:, None] - f[0][None], f[1][:, None] - f[1][None])
    assert np.abs(pairs(aug) - pairs(plain)).max() <= tol
    assert np.abs(aug[:2] - plain[:2]).max() > 0.1                   # it did rotate
    assert np.allclose(aug[3:6], plain[3:6])                         # colours untouched
    assert np.allclose(aug[6:].min(axis=1), 0) and np.allclose(aug[6:].max(axis=1), 1)


def test_rotate_jitter_without_jitter_is_a_rotation():
    class NoJitter:   # an rng whose normal() is 0: the rotation alone
        def uniform(self, low, high):
            return np.pi / 2

        def normal(self, loc, scale, size):
            return np.zeros(size)

    xyz = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]], dtype=np.float32)
    assert np.allclose(rotate_jitter(xyz, NoJitter()), [[0.0, 1.0, 0.5], [-2.0, 0.0, 1.0]], atol=1e-6)


# --- tasks, folders, errors ---------------------------------------------------------------------

@pytest.mark.parametrize("background, spec, steps", [
    (0, "2-1", [[0, 1, 2], [3]]), (0, "offline", [[0, 1, 2, 3]]), (2, "1-1", [[2, 0], [1], [3]]),
    (None, "2-1", [[0, 1], [2], [3]]), (None, "offline", [[0, 1, 2, 3]]), (None, [[1, 2], [3, 0]], [[1, 2], [3, 0]]),
])
def test_folder_tasks(tmp_path, background, spec, steps):
    make_folder(tmp_path, background=background)
    task = load_dataset_task("folder", spec, root=tmp_path)
    assert task.steps == steps and task.background == background and task.class_names == FOLDER_CLASSES
    ds = build_dataset("folder", tmp_path, task=task, step=0, split="train", num_points=None)
    assert len(ds) >= 1


def test_folder_task_errors(tmp_path):
    make_folder(tmp_path, background=0)
    with pytest.raises(TaskError, match="'3-1'"):
        load_dataset_task("folder", "3-1", root=tmp_path)    # 3 foreground classes: m < 3
    with pytest.raises(TaskError, match=r"labels \[7\]"):
        load_dataset_task("folder", [[0, 1], [7]], root=tmp_path)
    with pytest.raises(TaskError, match="background label 0"):
        load_dataset_task("folder", [[1, 0], [2]], root=tmp_path)


def test_errors(s3dis, tmp_path):
    root, _ = s3dis
    with pytest.raises(DataError, match=r"train\.h5.*python -m css\.pointcloud\.prepare"):
        build_dataset("s3dis", tmp_path / "missing", task=s3dis_task(), step=0, split="train")
    with pytest.raises(DataError, match="'s3dis'"):
        open_split("scannet", root, "train")
    too_big = Task(dataset="s3dis", name="big", steps=[[0, 1], [20]], background=None)
    with pytest.raises(TaskError, match=r"\[20\].*13 classes"):
        build_dataset("s3dis", root, task=too_big, step=0, split="train")
    with pytest.raises(ConfigError, match="protocol"):
        build_dataset("s3dis", root, task=s3dis_task(), step=0, split="train", protocol="paper")
    with pytest.raises(ConfigError, match="data.options"):
        open_split("s3dis", root, "train", options={"num_rooms": 3})
    with pytest.raises(ConfigError, match="synthetic"):
        build_dataset("shapenet", root, task=s3dis_task(), step=0, split="train")


def test_empty_step_is_left_to_the_engine(s3dis):
    root, _ = s3dis
    ds = build_dataset("s3dis", root, task=s3dis_task(), step=2, split="train", overlap=False)
    assert len(ds) == 0 and ds.ids == []


# --- summary ------------------------------------------------------------------------------------

def test_dataset_summary_s3dis(s3dis):
    root, _ = s3dis
    rows = dataset_summary("s3dis", root, task=s3dis_task())
    assert [(r.train_blocks, r.test_blocks) for r in rows] == [(3, 3), (2, 3), (2, 3)]
    # step 1 trains on b0 {0: 1899, 3: 101} and b3 {3: 3800, 4: 200}: only label 3 keeps a channel
    assert rows[1].channels == ["background", "ceiling", "floor", "wall", "beam"]
    assert rows[1].train_points == [1899 + 200, 0, 0, 0, 101 + 3800]
    # step 2 test: all 3 blocks, seen classes 0..5, label 7 -> background, 255 not counted
    assert rows[2].test_points == [1000, 1000, 0, 0, 50, 500, 1000]


def test_dataset_summary_scannet_protocols(scannet):
    root, _ = scannet
    task = load_dataset_task("scannet", SCANNET_STEPS)
    ref = dataset_summary("scannet", root, task=task, protocol="reference")
    # step 0 (blocks 0, 1): unannotated ignored; step 1 (block 0): unannotated is background
    assert ref[0].train_points == [500, 1200, 1000]
    assert ref[1].train_points == [300 + 1200, 0, 0, 500, 0]
    assert ref[0].test_points == [500 + 200, 500, 0]
    fixed = dataset_summary("scannet", root, task=task, protocol="fixed")
    assert fixed[1].train_blocks == 2 and fixed[1].train_points == [1200 + 1000, 0, 0, 500, 150 + 200]
    assert fixed[1].test_points == [0, 500, 0, 200, 200]

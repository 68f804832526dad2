"""Preparing a folder of the user's own scans (.npz and .ply, classes.yaml)."""

import json

import numpy as np
import pytest

from _pc_raw import check_store_blocks, expected_blocks, write_ply_ascii, write_ply_binary
from css.cli import run_cli
from css.errors import ConfigError, DataError
from css.pointcloud.prepare import folder
from css.pointcloud.prepare.__main__ import main
from css.pointcloud.prepare.ply import read_vertices
from css.pointcloud.store import BlockStore

CLASSES = "classes: [floor, wall, chair]\nignore_label: -1\nbackground: floor\n"


def scan(seed, n=400):
    rng = np.random.default_rng(seed)
    coord = (rng.uniform(0, 1, (n, 3)) * [2.2, 1.3, 1.0] + [1.0, 2.0, 0.0]).astype(np.float32)
    return coord, rng.integers(0, 256, (n, 3)).astype(np.uint8), rng.integers(-1, 3, n)


def write_open3d_ply(path, coord, color, label):
    import open3d as o3d

    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor(coord)
    cloud.point.colors = o3d.core.Tensor(color)
    cloud.point.label = o3d.core.Tensor(label.astype(np.int32).reshape(-1, 1))
    assert o3d.t.io.write_point_cloud(str(path), cloud)


@pytest.fixture
def layout(tmp_path):
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    (raw / "val").mkdir()
    (raw / "classes.yaml").write_text(CLASSES)
    scans = {name: scan(k) for k, name in enumerate(["a", "b", "c", "d"])}
    c, col, lab = scans["a"]
    np.savez(raw / "train" / "a.npz", coord=c, label=lab)                # no colour: zeros
    write_open3d_ply(raw / "train" / "b.ply", *scans["b"])               # int label: open3d reads it
    write_ply_binary(raw / "val" / "c.ply", *scans["c"][:2], scans["c"][2] % 3)   # ushort class: numpy
    write_ply_ascii(raw / "val" / "d.ply", scans["d"][0], scans["d"][2] % 3)
    return raw, scans


def test_prepare_npz_and_ply(layout, tmp_path, capsys):
    raw, scans = layout
    out = tmp_path / "out"
    assert run_cli(main, ["folder", "--raw", str(raw), "--out", str(out), "--min-points", "20"]) == 0
    capsys.readouterr()
    expected = {"train": [], "test": []}
    whole = {"train": [], "test": []}
    for name, split in (("a", "train"), ("b", "train"), ("c", "test"), ("d", "test")):
        coord, color, label = scans[name]
        if name == "a":
            color = np.zeros_like(color)
            label = np.where(label == -1, 255, label)         # ignore_label -1 is stored as 255
        elif name == "b":
            label = np.where(label == -1, 255, label)
        elif name == "c":
            label = label % 3
        else:
            color, label = np.zeros_like(color), label % 3
            coord = np.asarray([[float(f"{v:.3f}") for v in row] for row in coord], np.float32)
        expected[split] += expected_blocks(name, coord.astype(np.float64), color, {"reference": label},
                                           min_points=20)
        # the whole scene: every point once, in file order, shifted so that its minimum corner is 0
        shifted = coord.astype(np.float64) - coord.astype(np.float64).min(axis=0)
        whole[split].append((name, shifted, color, label))
    for split in ("train", "test"):
        store = BlockStore(out / f"{split}.h5")
        check_store_blocks(store, expected[split])
        scenes = BlockStore(out / f"{split}_scenes.h5")
        assert scenes.attrs["unit"] == "scene" and scenes.ids == scenes.scenes == [w[0] for w in whole[split]]
        for k, (name, coord, color, label) in enumerate(whole[split]):
            got = scenes.block(k)
            np.testing.assert_allclose(got["coord"], coord, atol=1e-6)
            np.testing.assert_array_equal(got["color"], color)
            np.testing.assert_array_equal(got["label"], label)
            assert scenes.counts()[k].tolist() == np.bincount(label[label < 3], minlength=3).tolist()
        assert store.class_names == ("floor", "wall", "chair")
        assert store.attrs["background"] == 0 and store.attrs["source_ignore_label"] == -1
        assert store.attrs["classes_yaml"] == CLASSES and store.attrs["dataset"] == "folder"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"]["scenes"] == 2 and summary["options"]["background"] == 0


def test_ply_reader_both_paths(layout):
    raw, scans = layout
    b = read_vertices(raw / "train" / "b.ply", wanted=("label", "class"))     # open3d tensor API
    np.testing.assert_array_equal(b["label"], scans["b"][2])
    np.testing.assert_array_equal(b["color"], scans["b"][1])
    c = read_vertices(raw / "val" / "c.ply", wanted=("label", "class"))       # numpy fallback (ushort)
    np.testing.assert_array_equal(c["class"], scans["c"][2] % 3)
    np.testing.assert_array_equal(c["coord"], scans["c"][0].astype(np.float64))


def test_labels_outside_the_classes(layout, tmp_path):
    raw, scans = layout
    coord, _, label = scans["a"]
    label = label.copy()
    label[:3] = [7, 9, 255]
    np.savez(raw / "train" / "a.npz", coord=coord, label=label)
    with pytest.raises(DataError, match=r"a.npz: labels \[7, 9, 255\] \(3 points\) are not class ids 0..2"):
        folder.load_file(str(raw / "train" / "a.npz"), 3, -1, repair=False)
    out = tmp_path / "out"
    assert run_cli(main, ["folder", "--raw", str(raw), "--out", str(out), "--min-points", "20"]) == 2


@pytest.mark.parametrize("text,match", [
    ("classes: []\n", "non-empty list"),
    ("classes: [a, b]\nbackground: c\n", "background 'c' is not one of"),
    ("classes: [a, b]\nignore_label: 1\n", "ignore_label 1 is the id of class 'b'"),
    ("classes: [a, a]\n", "occur more than once"),
    ("classes: [a]\nbackgorund: a\n", "unknown key 'backgorund'"),
])
def test_classes_yaml_errors(tmp_path, text, match):
    (tmp_path / "classes.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        folder.read_classes(tmp_path / "classes.yaml")


def test_no_background_and_missing_val(layout):
    raw, _ = layout
    (raw / "classes.yaml").write_text("classes: [floor, wall, chair]\nignore_label: -1\n")
    assert folder.source(raw).attrs["background"] == -1
    for p in (raw / "val").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="val holds no .npz or .ply"):
        folder.source(raw)

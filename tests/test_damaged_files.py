"""Truncated or corrupt data files are found when a split is indexed, before anything trains, and
named with the fix (docs/faults.md#data-files): image and label files of a VOC layout, prepared HDF5
splits, PLY and LAS inputs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from css.errors import DataError
from css.image import data as image_data
from css.image.datasets import checks
from css.pointcloud.prepare.ply import read_vertices
from css.pointcloud.store import BlockStore
from css.tasks.registry import get_task

from _image_fixtures import make_voc
from _pc_fixtures import make_s3dis
from _pc_raw import write_ply_ascii, write_ply_binary
from _tiny import write_config

ROOT = Path(__file__).resolve().parents[1]


def voc_files(root: Path, image_id: str) -> tuple[Path, Path]:
    voc = root / "PascalVOC2012"
    return (voc / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{image_id}.jpg",
            voc / "SegmentationClassAug" / f"{image_id}.png")


def cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def voc(tmp_path):
    make_voc(tmp_path / "data", num_train=6, num_val=3)
    return tmp_path / "data"


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_a_truncated_label_png_is_named_when_the_split_is_indexed(voc, tmp_path, keep):
    _, label = voc_files(voc, "2007_train0004")
    cut(label, keep)
    with pytest.raises(DataError) as e:
        image_data.load_split("voc", voc, "train", cache_dir=tmp_path / "cache")
    text = str(e.value)
    assert text.startswith(f"1 label file(s) of the voc train split cannot be decoded (truncated or corrupt): "
                           f"{label} (")
    assert "Restore them from the dataset's archive" in text and "nothing was trained" in text


@pytest.mark.parametrize("keep", [0.3, 0.8, 0.99])
def test_a_truncated_jpeg_is_named_when_the_split_is_indexed(voc, tmp_path, keep):
    """PIL's verify() alone accepts a JPEG cut after its header; the missing end marker gives it away."""
    image, _ = voc_files(voc, "2007_train0002")
    cut(image, keep)
    with pytest.raises(DataError, match="^1 image file\\(s\\) of the voc train split cannot be decoded") as e:
        image_data.load_split("voc", voc, "train", cache_dir=tmp_path / "cache")
    assert str(image) in str(e.value)


def test_every_damaged_file_of_a_split_is_named_at_once(voc, tmp_path):
    paths = [voc_files(voc, f"2007_train{n:04d}")[1] for n in (0, 3, 5)]
    for path in paths:
        path.write_bytes(b"")
    with pytest.raises(DataError, match="^3 label file") as e:
        image_data.load_split("voc", voc, "train", cache_dir=tmp_path / "cache")
    assert all(str(p) in str(e.value) for p in paths)


def test_the_image_check_is_cached_and_redone_for_a_changed_file(voc, tmp_path, monkeypatch):
    checked = []
    original = checks.image_problem
    monkeypatch.setattr(checks, "image_problem", lambda p: checked.append(p) or original(p))
    image_data.load_split("voc", voc, "train", cache_dir=tmp_path / "cache")
    assert len(checked) == 6
    checked.clear()
    image_data.load_split("voc", voc, "train", cache_dir=tmp_path / "cache")
    assert checked == []  # a rerun does not pay again
    image, _ = voc_files(voc, "2007_train0001")
    cut(image, 0.5)  # size and mtime change: the whole split is checked again, and the damage found
    with pytest.raises(DataError, match=str(image)):
        image_data.load_split("voc", voc, "train", cache_dir=tmp_path / "cache")
    assert len(checked) == 6


@pytest.mark.parametrize("kind", ["image", "label"])
def test_a_file_damaged_after_indexing_is_named_when_loaded(voc, tmp_path, kind):
    """A file that breaks after the split was indexed (a disk failing during a run) is named by the
    loader, in the error a DataLoader worker passes on (docs/controller.md#errors-in-loader-workers)."""
    task = get_task("voc", "15-5")
    dataset = image_data.build_dataset("voc", voc, task=task, step=0, split="train", cache_dir=tmp_path / "c")
    image, label = voc_files(voc, dataset.ids[0])
    path = image if kind == "image" else label
    cut(path, 0.5)
    with pytest.raises(DataError, match=f"^{kind} file {path} cannot be decoded \\(.+\\): it is truncated or "
                                        f"corrupt; restore it"):
        dataset[0]


def test_a_damaged_test_image_stops_the_run_before_step0_trains(voc, tmp_path):
    image, _ = voc_files(voc, "2007_val0001")
    cut(image, 0.6)
    cfg = write_config(tmp_path, name="voc", data={"dataset": "voc", "root": str(voc), "options": {},
                                                   "cache_dir": str(tmp_path / "cache")}, task={"name": "15-5"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run([sys.executable, "-m", "css.train", "--config", str(cfg)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "1 image file(s) of the voc test split cannot be decoded" in proc.stderr and str(image) in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing was trained


# --- point clouds --------------------------------------------------------------------------------

def test_a_truncated_prepared_split_is_named_with_the_fix(tmp_path):
    make_s3dis(tmp_path)
    cut(tmp_path / "train.h5", 0.7)
    with pytest.raises(DataError) as e:
        BlockStore(tmp_path / "train.h5")
    text = str(e.value)
    assert text.startswith(f"prepared split {tmp_path / 'train.h5'} cannot be read (")
    assert "truncated or corrupt; prepare it again with python -m css.pointcloud.prepare" in text


def test_a_prepared_split_without_a_dataset_is_named(tmp_path):
    import h5py

    make_s3dis(tmp_path)
    with h5py.File(tmp_path / "test.h5", "a") as f:
        del f["offsets"]
    with pytest.raises(DataError, match=f"^prepared split {tmp_path / 'test.h5'} lacks or cannot read"):
        BlockStore(tmp_path / "test.h5")


@pytest.mark.parametrize("damage", ["offsets", "counts"])
def test_a_prepared_split_whose_block_index_disagrees_is_named(tmp_path, damage):
    """offsets must start at 0, never decrease and end at the number of points; every per-block
    array has one row per block."""
    import h5py

    make_s3dis(tmp_path)
    with h5py.File(tmp_path / "train.h5", "a") as f:
        if damage == "offsets":
            offsets = f["offsets"][()]
            del f["offsets"]
            f["offsets"] = offsets[:-1]  # the last block's end is lost
        else:
            counts = f["counts"][()]
            del f["counts"]
            f["counts"] = counts[1:]
    with pytest.raises(DataError, match=f"^prepared split {tmp_path / 'train.h5'} has an inconsistent block index"):
        BlockStore(tmp_path / "train.h5")


def _cloud(n=100):
    rng = np.random.default_rng(0)
    return rng.random((n, 3)), rng.integers(0, 256, (n, 3)).astype(np.uint8), rng.integers(0, 5, n)


def test_a_truncated_binary_ply_is_named(tmp_path):
    """x, y, z float + red, green, blue uchar + class ushort: 17 bytes per vertex. Cut after 40
    whole vertices and 5 bytes of the next one, the file holds 40 of the 100 the header declares
    (open3d would fill the other 60 with zeros)."""
    path = tmp_path / "a.ply"
    write_ply_binary(path, *_cloud())
    data = path.read_bytes()
    header = data.index(b"end_header\n") + len(b"end_header\n")
    path.write_bytes(data[: header + 17 * 40 + 5])
    for wanted in ((), ("class",)):
        with pytest.raises(DataError, match=f"^{path}: the header declares 100 vertices, the file holds 40; it is "
                                            f"truncated"):
            read_vertices(path, wanted=wanted)


def test_a_truncated_ascii_ply_is_named(tmp_path):
    path = tmp_path / "b.ply"
    coord, _, label = _cloud()
    write_ply_ascii(path, coord, label)
    lines = path.read_text().splitlines(keepends=True)
    header = lines.index("end_header\n") + 1
    path.write_text("".join(lines[: header + 30]) + lines[header + 30][:5])  # 30 whole rows, one cut
    for wanted in ((), ("label",)):
        with pytest.raises(DataError, match=f"^{path}: the header declares 100 vertices, the file holds 30"):
            read_vertices(path, wanted=wanted)


def test_a_truncated_las_is_named(tmp_path):
    laspy = pytest.importorskip("laspy")
    from css.pointcloud.prepare.las import load_file

    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    rng = np.random.default_rng(0)
    las.x, las.y, las.z = rng.random(500) * 10, rng.random(500) * 10, rng.random(500)
    las.classification = rng.integers(1, 6, 500).astype(np.uint8)
    path = tmp_path / "tile.las"
    las.write(path)
    cut(path, 0.5)
    with pytest.raises(DataError, match=f"^{path} cannot be read as LAS/LAZ .*is it complete"):
        load_file(str(path), (0,) * 256, repair=False)

"""LAS / LAZ tiles in the folder format (docs/pointcloud-data.md#laslaz) and the height feature
(docs/pointcloud-datasets.md#height-feature).

Expectations are worked out here without the code under test: coordinates from the integers the
LAS file stores (X * scale + offset, then minus the tile minimum, in float64), tiles by one
boolean mask per tile (_pc_raw.naive_tiles), labels by a literal code -> class table, colour by
integer division.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _pc_raw import naive_tiles
from css.cli import run_cli
from css.config.build import load_config
from css.errors import DataError
from css.pointcloud.data import build_dataset, load_dataset_task
from css.pointcloud.modality import PointCloudModality
from css.pointcloud.channels import in_channels
from css.pointcloud.prepare import las
from css.pointcloud.prepare.__main__ import main
from css.pointcloud.store import BlockStore

laspy = pytest.importorskip("laspy")

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("classes: [ground, vegetation, building]\n"
           "asprs: {2: ground, 3: vegetation, 4: 1, 5: vegetation, 6: building}\n")
CODE_TO_LABEL = {1: 255, 2: 0, 3: 1, 5: 1, 6: 2}   # 1 (unclassified) is not listed: ignored
SCALE = 0.001
OFFSET = (500000.0, 4000000.0, 50.0)               # a UTM-like easting / northing


def make_tile(seed: int, n: int = 3000, extent=(39.0, 38.0, 15.0)) -> dict:
    """Integer LAS coordinates (mm) from 500 km east, codes 1, 2, 3, 5, 6, 16-bit colour."""
    rng = np.random.default_rng(seed)
    ints = np.stack([rng.integers(0, int(e / SCALE), n) for e in extent], axis=1) + [123456, 654321, 1000]
    codes = rng.choice([1, 2, 3, 5, 6], n)
    rgb = rng.integers(0, 65536, (n, 3))
    rgb[:4] = [[65535, 0, 65535], [257 * 200, 256 * 17, 255], [0, 65535, 256], [300, 4000, 40000]]
    return {"ints": ints, "codes": codes, "rgb": rgb}


def write_las(path: Path, tile: dict, *, point_format: int, rgb=None) -> None:
    header = laspy.LasHeader(point_format=point_format, version="1.2" if point_format < 6 else "1.4")
    header.scales = np.array([SCALE] * 3)
    header.offsets = np.array(OFFSET)
    data = laspy.LasData(header)
    data.X, data.Y, data.Z = (tile["ints"][:, k].astype(np.int32) for k in range(3))
    data.classification = tile["codes"].astype(np.uint8)
    if rgb is not None:
        data.red, data.green, data.blue = (np.asarray(rgb)[:, k].astype(np.uint16) for k in range(3))
    data.write(str(path))


def scene_coord(tile: dict) -> np.ndarray:
    """The reference definition: scaled coordinates in float64, minus their minimum."""
    coord = tile["ints"].astype(np.float64) * SCALE + np.asarray(OFFSET)
    return coord - coord.min(0)


def expected_blocks(scene, tile, color, block_size, stride, min_points):
    coord = scene_coord(tile)
    labels = np.asarray([CODE_TO_LABEL[c] for c in tile["codes"]])
    return [{"id": f"{scene}_block_{k}", "origin": o, "index": idx, "coord": coord[idx].astype(np.float32),
             "color": color[idx], "label": labels[idx]}
            for k, (idx, o) in enumerate(naive_tiles(coord, block_size, stride, min_points))]


def check_blocks(store: BlockStore, expected: list[dict]) -> None:
    assert store.ids == [e["id"] for e in expected]
    np.testing.assert_array_equal(store.origin, np.asarray([e["origin"] for e in expected], np.float32))
    for k, e in enumerate(expected):
        got = store.block(k)
        np.testing.assert_array_equal(got["coord"], e["coord"])
        np.testing.assert_array_equal(got["color"], e["color"])
        np.testing.assert_array_equal(got["label"], e["label"])


@pytest.fixture
def layout(tmp_path):
    raw = tmp_path / "my_las"
    (raw / "train").mkdir(parents=True)
    (raw / "val").mkdir()
    (raw / "classes.yaml").write_text(CLASSES)
    tiles = {"a": make_tile(0), "b": make_tile(1), "c": make_tile(2, n=2000)}
    write_las(raw / "train" / "a.las", tiles["a"], point_format=3, rgb=tiles["a"]["rgb"])   # RGB
    write_las(raw / "train" / "b.LAS", tiles["b"], point_format=1)                          # no RGB
    write_las(raw / "val" / "c.las", tiles["c"], point_format=7, rgb=tiles["c"]["rgb"])     # LAS 1.4 RGB
    return raw, tiles


def prepare(raw: Path, out: Path, *options: str) -> int:
    return run_cli(main, ["folder", "--raw", str(raw), "--out", str(out), *options])


@pytest.mark.parametrize("block_size,stride,min_points,workers", [(20.0, 20.0, 50, 1), (20.0, 10.0, 200, 2)])
def test_prepare_las_blocks(layout, tmp_path, capsys, block_size, stride, min_points, workers):
    raw, tiles = layout
    out = tmp_path / "out"
    assert prepare(raw, out, "--block-size", str(block_size), "--stride", str(stride),
                   "--min-points", str(min_points), "--workers", str(workers)) == 0
    printed = capsys.readouterr().out
    a, b, c = tiles["a"], tiles["b"], tiles["c"]
    expected = {"train": expected_blocks("a", a, a["rgb"] // 256, block_size, stride, min_points)
                + expected_blocks("b", b, np.zeros((len(b["codes"]), 3), np.int64), block_size, stride, min_points),
                "test": expected_blocks("c", c, c["rgb"] // 256, block_size, stride, min_points)}
    # a 39 m x 38 m tile: 2 x 2 tiles of 20 m with stride 20, 3 x 3 with stride 10
    assert len(expected["test"]) == (4 if stride == 20 else 9)
    for split in ("train", "test"):
        store = BlockStore(out / f"{split}.h5")
        check_blocks(store, expected[split])
        assert (store.attrs["block_size"], store.attrs["stride"], store.attrs["min_points"]) == \
            (block_size, stride, min_points)
        assert store.class_names == ("ground", "vegetation", "building") and store.attrs["background"] == -1
        assert store.attrs["classes_yaml"] == CLASSES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["block_size"] == block_size and summary["options"]["stride"] == stride
    assert summary["options"]["min_points"] == min_points
    unlisted = {name: int((t["codes"] == 1).sum()) for name, t in tiles.items()}
    for name, suffix in (("a", "las"), ("b", "LAS"), ("c", "las")):
        note = f"{name}.{suffix}: {unlisted[name]} points of ASPRS codes [1] (not in classes.yaml asprs) are ignored"
        assert any(n.startswith(note) for n in summary["notes"]), summary["notes"]
        assert note in printed
    mapping = json.loads(summary["notes"][0].removeprefix("classes.yaml: "))["asprs"]
    assert mapping == {"2": "ground", "3": "vegetation", "4": "vegetation", "5": "vegetation", "6": "building"}
    points = summary["splits"]["test"]["points_per_class"]["reference"]
    assert points["vegetation"]["scene_points"] == int(np.isin(c["codes"], [3, 5]).sum())   # two codes, one class


def test_shift_keeps_millimetres(layout, tmp_path, capsys):
    """float32 before the shift would round 500 000 m to 3 cm and 4 000 000 m to 25 cm."""
    raw, tiles = layout
    out = tmp_path / "out"
    assert prepare(raw, out, "--block-size", "50", "--stride", "50", "--min-points", "1") == 0
    capsys.readouterr()
    store = BlockStore(out / "test.h5")
    assert len(store) == 1   # the whole 39 m tile in one block, points in file order
    got = store.block(0)["coord"].astype(np.float64)
    ints = tiles["c"]["ints"]
    exact = (ints - ints.min(0)) * SCALE        # integer millimetres: no float64 rounding at all
    assert got.min(0).tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-4)
    # a LAS tile is a scene too: kept whole, every point once, shifted the same way
    # (docs/pointcloud-data.md#whole-scenes)
    scenes = BlockStore(out / "test_scenes.h5")
    assert scenes.ids == ["c"] and scenes.attrs["unit"] == "scene"
    np.testing.assert_allclose(scenes.block(0)["coord"].astype(np.float64), exact, rtol=0, atol=1e-4)
    # the first point, written at 123456 + its random offset in mm from 500 km east
    first = (ints[0] - ints.min(0)) * 0.001
    assert np.all(np.abs(got[0] - first) < 1e-3)
    assert not np.allclose((ints * SCALE + OFFSET).astype(np.float32) - (ints.min(0) * SCALE + OFFSET).astype(
        np.float32), exact, atol=1e-3)   # the test would catch a float32 cast before the shift


def test_colour_scaling_and_missing_colour(layout, tmp_path, capsys):
    raw, tiles = layout
    table = np.full(256, 255)
    table[[2, 3, 4, 5, 6]] = [0, 1, 1, 1, 2]
    table = tuple(table.tolist())
    a = las.load_file(str(raw / "train" / "a.las"), table, repair=False)
    assert a.color[:4].tolist() == [[255, 0, 255], [200, 17, 0], [0, 255, 1], [1, 15, 156]]
    np.testing.assert_array_equal(a.color, tiles["a"]["rgb"] // 256)
    b = las.load_file(str(raw / "train" / "b.LAS"), table, repair=False)
    assert b.color.dtype == np.uint8 and not b.color.any() and b.color.shape == (3000, 3)
    assert b.coord.dtype == np.float64 and b.coord[0, 0] > 500000
    # 8-bit colour written into the 16-bit fields (all values <= 255) is kept, with a note
    eight = tiles["a"]["rgb"] % 256
    write_las(raw / "train" / "a.las", tiles["a"], point_format=2, rgb=eight)
    a8 = las.load_file(str(raw / "train" / "a.las"), table, repair=False)
    np.testing.assert_array_equal(a8.color, eight)
    assert "a.las: RGB values are all <= 255, read as 8-bit colour (not scaled)" in a8.notes


def test_laz(layout, tmp_path, capsys):
    pytest.importorskip("lazrs")
    raw, tiles = layout
    (raw / "val" / "c.las").unlink()
    write_las(raw / "val" / "c.laz", tiles["c"], point_format=3, rgb=tiles["c"]["rgb"])
    out = tmp_path / "out"
    assert prepare(raw, out, "--block-size", "20", "--stride", "20", "--min-points", "50") == 0
    capsys.readouterr()
    check_blocks(BlockStore(out / "test.h5"), expected_blocks("c", tiles["c"], tiles["c"]["rgb"] // 256, 20, 20, 50))


@pytest.mark.parametrize("module,suffix", [("laspy", ".las"), ("lazrs", ".laz")])
def test_missing_extra(layout, tmp_path, capsys, monkeypatch, module, suffix):
    raw, _ = layout
    if suffix == ".laz":
        (raw / "val" / "c.las").rename(raw / "val" / "c.laz")   # never read: the check comes first
    monkeypatch.setitem(sys.modules, module, None)              # import fails as if not installed
    out = tmp_path / "out"
    assert prepare(raw, out, "--block-size", "20") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"needs the Python package '{module}'" in err
    assert "pip install 'css[las]' (or pip install laspy lazrs)" in err
    assert not (out / "train.h5").exists()


@pytest.mark.parametrize("asprs,match", [
    ("{2: ground, 9: water}", r"asprs.9: 'water' is not a class of \['ground', 'vegetation', 'building'\]"),
    ("{2: 3}", r"asprs.2: 3 is not a class"),
    ("{300: ground}", r"asprs key 300 is not an ASPRS classification code; codes are integers 0..255"),
    ("{-1: ground}", r"asprs key -1 is not an ASPRS classification code"),
    ("{2: ground, 3: vegetation, 2: building}", r"asprs lists the codes \[2\] more than once"),
    ("{'2': ground, 2: building}", r"asprs lists the codes \[2\] more than once"),
    ("[2, 3]", r"asprs must be a non-empty mapping of ASPRS classification codes"),
    ("{}", r"asprs must be a non-empty mapping"),
])
def test_asprs_errors(layout, tmp_path, asprs, match):
    raw, _ = layout
    (raw / "classes.yaml").write_text(f"classes: [ground, vegetation, building]\nasprs: {asprs}\n")
    with pytest.raises(DataError, match=match) as info:
        las.read_asprs(raw / "classes.yaml", (raw / "classes.yaml").read_text(), ["ground", "vegetation", "building"])
    assert str(info.value).startswith(f"{raw / 'classes.yaml'}: ")
    assert prepare(raw, tmp_path / "out") == 2


def test_las_needs_the_asprs_key(layout, tmp_path, capsys):
    raw, _ = layout
    (raw / "classes.yaml").write_text("classes: [ground, vegetation, building]\n")
    assert prepare(raw, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "classes.yaml has no key 'asprs', which the LAS/LAZ file" in err and "a.las" in err


def test_unread_files_are_listed(layout, tmp_path, capsys):
    raw, _ = layout
    (raw / "train" / "readme.txt").write_text("tiles from the 2023 flight\n")
    assert prepare(raw, tmp_path / "out", "--block-size", "20", "--min-points", "50") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "train/: not read (not .npz, .ply, .las or .laz): readme.txt" in summary["notes"]


# --- the height feature --------------------------------------------------------------------------

@pytest.fixture
def prepared(layout, tmp_path, capsys):
    raw, tiles = layout
    out = tmp_path / "blocks"
    assert prepare(raw, out, "--block-size", "20", "--stride", "20", "--min-points", "50") == 0
    capsys.readouterr()
    return out


def test_height_feature_item(prepared):
    task = load_dataset_task("folder", [[0, 1], [2]], root=prepared)
    kwargs = dict(task=task, step=1, split="test", num_points=None, seed=0)
    plain = build_dataset("folder", prepared, **kwargs)
    tall = build_dataset("folder", prepared, height_feature=True, **kwargs)
    store = BlockStore(prepared / "test.h5")
    for i in range(len(tall)):
        f9, y9 = plain[i]
        f10, y10 = tall[i]
        assert f9.shape == (9, store.sizes[i]) and f10.shape == (10, store.sizes[i])
        torch.testing.assert_close(f10[:9], f9, rtol=0, atol=0)     # the 9 channels are unchanged
        torch.testing.assert_close(y10, y9, rtol=0, atol=0)
        z = store.block(i)["coord"][:, 2].astype(np.float64)
        np.testing.assert_allclose(f10[9].numpy(), z - z.min(), rtol=0, atol=1e-5)   # metres, not normalised
    assert float(f10[9].max()) > 1.0   # a 15 m tall tile: heights in metres, not in [0, 1]
    # sampled and augmented: the height counts from the whole block's lowest point, not the sample's
    sampled = build_dataset("folder", prepared, task=task, step=0, split="train", num_points=64, seed=3,
                            augment=True, height_feature=True)
    features, _ = sampled[0]
    z = sampled.store.block(int(sampled.indices[0]))["coord"][:, 2]
    assert features.shape == (10, 64) and float(features[9].min()) >= 0.0
    assert np.all(np.isin(np.round(features[9].numpy(), 4), np.round(z - z.min(), 4)))


def test_example_config_through_the_modality(prepared, caplog):
    cfg = load_config(ROOT / "configs" / "las" / "example.yaml",
                      [f"data.root={prepared}", "data.num_points=256", "model.k=8", "data.num_workers=0"])
    assert cfg.data.dataset == "folder" and cfg.data.height_feature is True and in_channels(cfg) == 10
    modality = PointCloudModality()
    task = modality.task(cfg)
    assert task.steps == [[0, 1], [2]] and task.class_names == ("ground", "vegetation", "building")
    train = modality.dataset(cfg, task, 1, "train")       # blocks that show buildings
    assert len(train) > 0 and train[0][0].shape == (10, 256)
    with caplog.at_level(logging.INFO, logger="css"):
        model = modality.build_model(cfg, task.classes_per_step(1), env=None)
        modality.build_model(cfg, task.classes_per_step(0), env=None)  # the old model of step 1
    line = "DGCNN input: 10 channels (xyz, rgb, normalised xyz, height above the block minimum)"
    assert caplog.text.count(line) == 1  # said once per run, not once per model built
    model.eval()
    x = torch.stack([train[0][0], train[min(1, len(train) - 1)][0]])
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (2, 1 + 2 + 1, 256)     # background + ground, vegetation + building
    plain = load_config(ROOT / "configs" / "las" / "example.yaml", ["data.height_feature=false"])
    assert in_channels(plain) == 9
    assert modality.build_model(plain, [3], env=None).in_channels == 9

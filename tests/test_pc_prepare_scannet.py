"""ScanNet preparation: both label sets, the nyu40 array, the split lists and missing files."""

import json

import numpy as np
import pytest

from _pc_raw import check_store_blocks, expected_blocks, random_scannet_scene, write_scannet
from css.cli import run_cli
from css.errors import DataError
from css.pointcloud.prepare import scannet
from css.pointcloud.prepare.__main__ import main
from css.pointcloud.store import BlockStore

# raw label -> (reference label, fixed label, nyu40 id), worked out by hand from SCANNET_CLASSES
# (wall 1, chair 3, refrigerator 17, cabinet 19) and the TSV rows of _pc_raw.TSV_ROWS.
LABELS = {"wall": (1, 1, 1), "chair": (3, 3, 5), "office chair": (3, 3, 5),
          "refrigerator": (0, 17, 24),          # the TSV's "refridgerator" is no class name
          "kitchen cabinets": (19, 19, 3), "towel": (0, 0, 35), "not in the tsv": (0, 0, 0)}


def expected_scene(name: str, scene: dict) -> list[dict]:
    """Vertices of every group in group order (ascending vertex index inside a group)."""
    picks, sets = [], {"reference": [], "fixed": [], "nyu40": []}
    for label, segments in scene["groups"]:
        idx = [v for v in range(len(scene["seg"])) if scene["seg"][v] in segments]
        picks += idx
        for k, key in enumerate(sets):
            sets[key] += [LABELS[label][k]] * len(idx)
    picks = np.asarray(picks)
    return expected_blocks(name, scene["coord"][picks], scene["color"][picks],
                           {k: np.asarray(v) for k, v in sets.items()}, min_points=5)


@pytest.fixture
def layout(tmp_path):
    scenes = {"scene0000_00": random_scannet_scene(0), "scene0001_00": random_scannet_scene(1),
              "scene0002_00": random_scannet_scene(2)}     # in neither list: not prepared
    write_scannet(tmp_path / "raw", scenes, tsv_in_meta=True)
    return tmp_path, scenes


def test_prepare_label_sets_and_nyu40(layout, capsys):
    tmp_path, scenes = layout
    out = tmp_path / "out"
    assert run_cli(main, ["scannet", "--raw", str(tmp_path / "raw"), "--out", str(out), "--min-points", "5"]) == 0
    capsys.readouterr()
    for split, name in (("train", "scene0000_00"), ("test", "scene0001_00")):
        store = BlockStore(out / f"{split}.h5")
        expected = expected_scene(name, scenes[name])
        assert len(expected) >= 2 and store.label_sets == ("reference", "fixed")
        check_store_blocks(store, expected, label_sets=("reference", "fixed"))
        import h5py

        with h5py.File(out / f"{split}.h5", "r") as f:
            assert f["nyu40"].dtype == np.uint8
            np.testing.assert_array_equal(f["nyu40"][()], np.concatenate([e["labels"]["nyu40"] for e in expected]))
        assert store.counts("reference")[:, 17].sum() == 0      # the reference spelling bug
        assert store.counts("fixed")[:, 17].sum() > 0
    # the vertex shared by two groups (segment 24: chair and office chair) is stored twice
    n24 = int((scenes["scene0000_00"]["seg"] == 24).sum())
    summary = json.loads((out / "summary.json").read_text())
    kept = sum(int(np.isin(scenes["scene0000_00"]["seg"], segs).sum()) for _, segs in
               scenes["scene0000_00"]["groups"])
    assert n24 > 0 and summary["splits"]["train"]["scene_points"] == kept
    assert any("scene0002_00" in n for n in summary["notes"])
    assert any("not in the tsv" in n for n in summary["notes"])
    ref = summary["splits"]["train"]["points_per_class"]["reference"]
    assert ref["refrigerator"]["scene_points"] == 0 and ref["chair"]["scene_points"] > 0


def test_missing_files_are_listed(layout):
    tmp_path, _ = layout
    raw = tmp_path / "raw"
    (raw / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.0.010000.segs.json").unlink()
    (raw / "scans" / "scene0000_00" / "scene0000_00.aggregation.json").unlink()
    with pytest.raises(DataError) as err:
        scannet.source(raw)
    message = str(err.value)
    assert message.startswith("2 of the 6 raw files")
    assert "scene0000_00.aggregation.json" in message and "scene0001_00_vh_clean_2.0.010000.segs.json" in message


def test_bad_tsv_and_lists(layout):
    tmp_path, _ = layout
    raw = tmp_path / "raw"
    (raw / "meta" / scannet.TSV).write_text("id\tcategory\n1\tx\n")
    with pytest.raises(DataError, match="line 1 must name the columns raw_category"):
        scannet.source(raw)
    (raw / "meta" / scannet.TSV).unlink()
    with pytest.raises(DataError, match="has no scannetv2-labels.combined.tsv"):
        scannet.source(raw)


def test_label_map_reads_the_tsv(tmp_path):
    write_scannet(tmp_path, {})
    table = scannet.read_label_map(tmp_path / scannet.TSV)
    assert table["refrigerator"] == (0, 17, 24) and table["towel"] == (0, 0, 35) and table["wall"] == (1, 1, 1)


def test_reads_a_release_style_ply(tmp_path):
    """float x y z, uchar red green blue alpha, then a face list, as in the _vh_clean_2.ply files."""
    from css.pointcloud.prepare.ply import read_vertices

    n = 40
    rng = np.random.default_rng(5)
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                             ("blue", "u1"), ("alpha", "u1")])
    for key in ("x", "y", "z"):
        rec[key] = rng.random(n)
    for key in ("red", "green", "blue"):
        rec[key] = rng.integers(0, 256, n)
    faces = np.zeros(n - 2, dtype=[("n", "u1"), ("a", "<i4"), ("b", "<i4"), ("c", "<i4")])
    faces["n"], faces["a"] = 3, np.arange(n - 2)
    faces["b"], faces["c"] = faces["a"] + 1, faces["a"] + 2
    header = (f"ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\nelement vertex {n}\n"
              "property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
              f"property uchar blue\nproperty uchar alpha\nelement face {n - 2}\n"
              "property list uchar int vertex_indices\nend_header\n")
    (tmp_path / "s.ply").write_bytes(header.encode() + rec.tobytes() + faces.tobytes())
    got = read_vertices(tmp_path / "s.ply")
    np.testing.assert_array_equal(got["coord"], np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float64))
    np.testing.assert_array_equal(got["color"], np.stack([rec["red"], rec["green"], rec["blue"]], 1))
    assert got["color"].dtype == np.uint8

"""S3DIS preparation: the raw layout -> train.h5 / test.h5 / summary.json, repairs, resume."""

import json

import numpy as np
import pytest

from _pc_raw import (assert_same_store, check_store_blocks, expected_blocks, parse_rows, small_s3dis,
                     write_s3dis)
from css.cli import run_cli
from css.errors import DataError
from css.pointcloud.prepare import s3dis
from css.pointcloud.prepare.__main__ import main
from css.pointcloud.prepare.pipeline import Options, partial_path, prepare, read_partial
from css.pointcloud.store import BlockStore
from css.tasks.tables import S3DIS_CLASSES

CLASS = {"ceiling": 0, "floor": 1, "chair": 8, "stairs": 12}   # stairs is not a class: clutter


def expected_room(scene: str, files: dict, min_points: int) -> list[dict]:
    rows, labels = [], []
    for name in sorted(files):   # the room's files in sorted order
        r = parse_rows(files[name])
        rows.append(r)
        labels.append(np.full(len(r), CLASS[name.split("_")[0]]))
    rows = np.concatenate(rows)
    return expected_blocks(scene, rows[:, :3], rows[:, 3:].astype(np.uint8), {"reference": np.concatenate(labels)},
                           min_points=min_points)


def test_prepare_layout_ids_splits_and_summary(tmp_path, capsys):
    raw = tmp_path / "raw" / s3dis.RELEASE      # the parent folder is accepted too
    rooms = small_s3dis(raw)
    out = tmp_path / "out"
    assert run_cli(main, ["s3dis", "--raw", str(tmp_path / "raw"), "--out", str(out), "--min-points", "50"]) == 0
    printed = capsys.readouterr().out
    assert "repairs: none" in printed and "train:" in printed
    train, test = BlockStore(out / "train.h5"), BlockStore(out / "test.h5")
    expected = {"train": [], "test": []}
    for room in sorted(rooms):   # scenes in sorted order: Area_1_hallway_2, Area_1_office_1, Area_2_WC_1
        scene = room.replace("/", "_")
        expected["test" if room.startswith("Area_5") else "train"] += expected_room(scene, rooms[room], 50)
    check_store_blocks(train, expected["train"])
    check_store_blocks(test, expected["test"])
    assert train.ids[0] == "Area_1_hallway_2_block_0"
    assert {s for s in train.scenes} == {"Area_1_hallway_2", "Area_1_office_1", "Area_2_WC_1"}
    assert set(test.scenes) == {"Area_5_office_3"}
    # a 2.5 x 1.5 room has 3 x 2 tiles; with 600 points several are kept
    assert sum(s == "Area_1_office_1" for s in train.scenes) >= 3
    assert train.attrs["block_size"] == 1.0 and train.attrs["stride"] == 1.0 and train.attrs["min_points"] == 50
    assert train.attrs["test_area"] == 5 and train.class_names == S3DIS_CLASSES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["min_points"] == 50 and summary["repairs"] == []
    assert summary["splits"]["train"]["scenes"] == 3 and summary["splits"]["test"]["scenes"] == 1
    assert summary["splits"]["train"]["blocks"] == len(expected["train"])
    assert summary["splits"]["train"]["points"] == sum(len(e["coord"]) for e in expected["train"])
    assert summary["splits"]["train"]["scene_points"] == 3 * 600
    per_class = summary["splits"]["test"]["points_per_class"]["reference"]
    assert per_class["clutter"]["scene_points"] == 100 and per_class["chair"]["scene_points"] == 200
    assert per_class["clutter"]["points"] == sum(int((e["labels"]["reference"] == 12).sum()) for e in expected["test"])
    assert not (out / ".partial").exists()


NUL_LINE = b"1.250 0.7\x0000 0.300 10 20 30"   # without the NUL byte: a valid row


def corrupt_layout(tmp_path):
    rooms = small_s3dis(tmp_path / "raw")
    good = [r.encode() for r in rooms["Area_5/office_3"]["ceiling_1.txt"]]
    bad = b"\n".join(good[:6] + [NUL_LINE] + good[6:]) + b"\n"
    write_s3dis(tmp_path / "raw", {"Area_5/office_3": {"ceiling_1.txt": bad}})
    garbage = b"\n".join(good[:3] + [b"0.5 0.5 GARBAGE 1 2 3", b"0.1 0.2 0.3 4 5"] + good[3:]) + b"\n"
    write_s3dis(tmp_path / "raw", {"Area_2/WC_1": {"floor_1.txt": garbage}})
    return rooms, good


def test_corrupt_row_fails_with_file_and_line_then_repair_resumes(tmp_path, capsys):
    rooms, good = corrupt_layout(tmp_path)
    out = tmp_path / "out"
    argv = ["s3dis", "--raw", str(tmp_path / "raw"), "--out", str(out), "--min-points", "50"]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert "Area_2/WC_1/Annotations/floor_1.txt: line 4" in err and "--repair" in err
    # the two Area_1 rooms prepared before the failure are kept
    assert len(list((out / ".partial" / "train").glob("*.npz"))) == 2
    assert run_cli(main, argv + ["--repair"]) == 0
    printed = capsys.readouterr().out
    assert "resumed: 2 scenes" in printed
    summary = json.loads((out / "summary.json").read_text())
    repairs = [(r["file"], r["line"], r["action"].split(" ")[0]) for r in summary["repairs"]]
    assert repairs == [("Area_2/WC_1/Annotations/floor_1.txt", 4, "dropped"),
                       ("Area_2/WC_1/Annotations/floor_1.txt", 5, "dropped"),
                       ("Area_5/office_3/Annotations/ceiling_1.txt", 7, "removed")]
    assert summary["splits"]["test"]["scene_points"] == 601
    # the repaired test room equals the room with the NUL byte removed from that line
    fixed = dict(rooms["Area_5/office_3"])
    fixed["ceiling_1.txt"] = [g.decode() for g in good[:6]] + [NUL_LINE.replace(b"\x00", b"").decode()] + \
        [g.decode() for g in good[6:]]
    check_store_blocks(BlockStore(out / "test.h5"), expected_room("Area_5_office_3", fixed, 50))
    with pytest.raises(DataError, match=r"ceiling_1.txt: line 7 holds NUL bytes"):
        s3dis.parse_annotation(tmp_path / "raw/Area_5/office_3/Annotations/ceiling_1.txt", "x", repair=False)


def test_resume_gives_the_same_files(tmp_path):
    small_s3dis(tmp_path / "raw")
    options = Options(min_points=50)
    full = tmp_path / "full"
    prepare(s3dis.source(tmp_path / "raw", test_area=2), full, Options(min_points=50, workers=2))

    class Stop(Exception):
        pass

    done = []

    def interrupt(scene):
        done.append(scene.name)
        if len(done) == 2:
            raise Stop

    part = tmp_path / "part"
    with pytest.raises(Stop):
        prepare(s3dis.source(tmp_path / "raw", test_area=2), part, options, after_scene=interrupt)
    partials = sorted((part / ".partial").rglob("*.npz"))
    assert len(partials) == 2 and not (part / "train.h5").exists()
    # a partial made with other options is not reused
    source = s3dis.source(tmp_path / "raw", test_area=2)
    first = next(s for s in source.scenes if s.name == done[0])
    assert read_partial(partial_path(part, first), source, first, options) is not None
    assert read_partial(partial_path(part, first), source, first, Options(min_points=10)) is None
    partials[1].write_bytes(partials[1].read_bytes()[:100])   # a damaged partial is redone
    summary = prepare(source, part, options)
    assert summary["resumed_scenes"] == 1 and len(summary["redone_partials"]) == 1
    for split in ("train", "test"):
        assert_same_store(full / f"{split}.h5", part / f"{split}.h5")
    assert (full / "train.h5").read_bytes() == (part / "train.h5").read_bytes()


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match="holds no Area_"):
        s3dis.source(tmp_path)
    small_s3dis(tmp_path / "raw")
    with pytest.raises(DataError, match="has no Area_4"):
        s3dis.source(tmp_path / "raw", test_area=4)
    (tmp_path / "raw" / "Area_1" / "empty_room").mkdir()
    with pytest.raises(DataError, match="empty_room/Annotations"):
        s3dis.source(tmp_path / "raw")


def test_bad_option_exits_2(tmp_path, capsys):
    small_s3dis(tmp_path / "raw")
    assert run_cli(main, ["s3dis", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "o"),
                          "--stride", "0"]) == 2
    assert "--stride" in capsys.readouterr().err


def test_fast_parser_equals_float(tmp_path):
    rng = np.random.default_rng(3)
    rows = [f"{x:.6f} {y:.1f} {-z:.3f} {r} {g} {b}" for (x, y, z), (r, g, b) in
            zip(rng.uniform(-50, 50, (2000, 3)), rng.integers(0, 256, (2000, 3)))]
    path = tmp_path / "t.txt"
    path.write_text("\n".join(rows) + "\n\n")
    values, repairs = s3dis.parse_annotation(path, "t.txt", repair=False)
    assert repairs == []
    np.testing.assert_array_equal(values, parse_rows(rows))
    path.write_text("1e-3 2 3 4 5 6\n-0.5 +2 .5 0 0 255\n")   # not plain decimals: the line parser
    np.testing.assert_array_equal(s3dis.parse_annotation(path, "t.txt", repair=False)[0],
                                  [[0.001, 2, 3, 4, 5, 6], [-0.5, 2, 0.5, 0, 0, 255]])
    path.write_text("1 2 3 4 5 300\n")
    with pytest.raises(DataError, match="line 1 colour value 300 outside 0-255"):
        s3dis.parse_annotation(path, "t.txt", repair=False)

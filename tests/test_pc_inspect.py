"""python -m css.data inspect for point clouds: blocks and points per class per step, from the
counts a preparation stored (expected numbers derived by hand from tests/_pc_fixtures.py)."""

import re

import yaml

from css import data as inspect_cli

from _pc_fixtures import make_s3dis

TASK = "[[0, 1, 2], [3], [4, 5]]"


def _run(argv, capsys):
    rc = inspect_cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_inspect_prepared_s3dis(tmp_path, capsys):
    make_s3dis(tmp_path)
    rc, out, err = _run(["inspect", "--modality", "pointcloud", "--dataset", "s3dis", "--root", str(tmp_path),
                         "--task", TASK], capsys)
    assert rc == 0, err
    # step 0 keeps train blocks 0, 1, 2 (block 5's step-0 classes are under the 100-point floor);
    # step 1 blocks 0 (101 > 100) and 3; step 2 blocks 2 (201 > 200) and 4. Every test block.
    assert "step 0: 3 train blocks, 3 test blocks" in out
    assert "step 1: 2 train blocks, 3 test blocks" in out
    assert "step 2: 2 train blocks, 3 test blocks" in out
    step1 = out.split("step 1: 2 train blocks")[1].split("step 2: 2 train blocks")[0]
    assert re.search(r"\n\s+4 beam\s+train points\s+3,901", step1)  # 101 + 3800 beam points
    assert re.search(r"\n\s+0 background\s+train points\s+2,099", step1)  # 1899 ceiling + 200 column


def test_inspect_from_a_pointcloud_config(tmp_path, capsys):
    make_s3dis(tmp_path)
    cfg = {"modality": "pointcloud", "data": {"dataset": "s3dis", "root": str(tmp_path)},
           "task": {"steps": [[0, 1, 2], [3], [4, 5]]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = _run(["inspect", "--config", str(path)], capsys)
    assert rc == 0, err and "step 2: 2 train blocks" in out


def test_inspect_pointcloud_errors(tmp_path, capsys):
    rc, _, err = _run(["inspect", "--modality", "pointcloud", "--dataset", "s3dis", "--root",
                       str(tmp_path / "none"), "--task", "12-1"], capsys)
    assert rc == 2 and "train.h5" in err and "css.pointcloud.prepare" in err
    rc, _, err = _run(["inspect", "--dataset", "s3dis", "--task", "12-1"], capsys)
    assert rc == 2 and "--modality pointcloud" in err

"""The 3-D table in the style of the 3DPC-CISS paper is one script away (docs/pointcloud-baselines.md):
``scripts/table.py`` runs the seven shipped S3DIS 12-1 rows (FT, F&A, EWC*, LwF*, 3DPC-CISS, LGKD,
joint) on a prepared S3DIS split written in the real layout, shrunk by overrides to 128 points and
one iteration per step, and ends with the report. Each row must train what its config promises."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _pc_fixtures import make_s3dis

ROOT = Path(__file__).resolve().parents[1]
ROWS = ["12-1_ft", "12-1_fa", "12-1_ewc", "12-1_lwf", "12-1_3dpc-ciss", "12-1_lgkd", "joint"]
SMALL = ["device=cpu", "data.num_points=128", "model.k=8", "train.batch_size=1", "train.eval_batch_size=1",
         "train.epochs=1", "train.max_iters_per_epoch=2", "data.num_workers=0"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("table")
    make_s3dis(tmp / "s3dis")
    configs = [ROOT / "configs" / "s3dis" / f"{row}.yaml" for row in ROWS]
    proc = subprocess.run([sys.executable, "scripts/table.py", "--configs", *map(str, configs), "--seeds", "0",
                           "--runs-root", str(tmp / "runs"), "--json", f"data.root={tmp / 's3dis'}", *SMALL],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp / "runs", proc


def _step(runs, row, step):
    return torch.load(runs / f"{row}_s0" / f"step{step}" / "model.pt", weights_only=False)


def test_every_row_finishes_and_is_reported(table):
    runs, proc = table
    for row in ROWS:
        steps = json.loads((runs / f"{row}_s0" / "results.json").read_text())["steps"]
        assert [s["step"] for s in steps] == ([0] if row == "joint" else [0, 1]), row
    assert all(f"{row}_s0" in proc.stdout for row in ROWS)


def test_the_rows_share_step_0_and_differ_from_step_1(table):
    runs, _ = table
    def trained(history):  # everything but the wall time
        return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]

    first = _step(runs, ROWS[0], 0)
    for row in ROWS[1:-1]:
        other = _step(runs, row, 0)
        assert trained(other["history"]) == trained(first["history"]), row
        assert all(torch.equal(other["model"][k], v) for k, v in first["model"].items()), row


def test_each_row_trains_what_its_config_says(table):
    runs, _ = table
    terms = {row: set(_step(runs, row, 1)["history"][0]["terms"]) for row in ROWS[:-1]}
    assert terms["12-1_ft"] == terms["12-1_fa"] == {"ce", "total"}
    assert terms["12-1_ewc"] == {"ce", "reg", "total"}
    assert terms["12-1_lwf"] == {"ce", "kd", "total"}
    assert terms["12-1_3dpc-ciss"] == {"ce", "gft", "total"}
    assert terms["12-1_lgkd"] == {"ce", "kd", "total"}
    for row in ("12-1_ft", "12-1_fa", "12-1_ewc"):  # the separate classifier keeps the old class rows
        before, after = _step(runs, row, 0)["model"], _step(runs, row, 1)["model"]
        assert torch.equal(after["cls.0.weight"][1:], before["cls.0.weight"][1:]), row
        body = [k for k in before if not k.startswith("cls.")]
        assert all(torch.equal(after[k], before[k]) for k in body) is (row == "12-1_fa"), row
    lwf = _step(runs, "12-1_lwf", 1)["config"]["method"]
    assert (lwf["name"], lwf["lwf_temperature"], lwf["lwf_reference_background"]) == ("lwf-3dpc", 2.0, True)
    ewc = _step(runs, "12-1_ewc", 1)["config"]["method"]
    assert (ewc["reg_importance"], ewc["reg_per_tensor"], ewc["reg_skip_classifier"]) == (1.0, True, True)
    assert _step(runs, "12-1_3dpc-ciss", 1)["config"]["method"]["ciss_pooled_neighbours"] is True

"""The full-coverage metric in a run's files: results.json, results_full.csv, the log, css.report and
css.evaluate --metric full (docs/pointcloud-evaluation.md#files)."""

import json
import math
import shutil

import pytest

from css.config.build import load_config
from css.controller.steps import run_from_config
from css.pointcloud.store import BlockStore
from css.results.csvfile import read_results_csv

from _pc_tiny import write_pc_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    run_from_config(load_config(write_pc_config(tmp, data={"full_coverage": True})))
    return tmp / "runs" / "pc_tiny"


def _test_points(run) -> int:
    (path,) = run.parent.parent.glob("pc_data/**/test.h5")  # the synthetic rooms of this run only
    return int(BlockStore(path).sizes.sum())


def test_results_json_holds_both_metrics_under_their_names(run):
    doc = json.loads((run / "results.json").read_text())
    assert doc["metric"] == "sampled" and doc["full"]["metric"] == "full"
    points = _test_points(run)
    for entry in doc["steps"]:
        full = entry["full"]
        assert full["metric"] == "full" and full["num_points"] == points and full["num_blocks"] == entry["num_test"]
        assert len(full["iou"]) == entry["num_classes"]
        present = [v for v in full["iou"][1:] if v is not None]  # channel 0 is the synthetic background
        assert math.isclose(full["mean_iou"], sum(present) / len(present), rel_tol=1e-9)
    final, fulls = doc["full"]["final"], [e["full"] for e in doc["steps"]]
    assert math.isclose(final["all"], fulls[-1]["mean_iou"], rel_tol=1e-12)
    assert math.isclose(final["avg"], sum(f["mean_iou"] for f in fulls) / len(fulls), rel_tol=1e-12)
    assert final["bg"] is None and math.isclose(final["oa"], fulls[-1]["summary"]["oa"], rel_tol=1e-12)
    # the sampled figures stay where they were
    assert math.isclose(doc["final"]["all"], doc["steps"][-1]["mean_iou"], rel_tol=1e-12)


def test_results_full_csv_and_the_log(run):
    doc = json.loads((run / "results.json").read_text())
    rows = read_results_csv(run / "results_full.csv")
    sampled = read_results_csv(run / "results.csv")
    assert [r.step for r in rows] == [r.step for r in sampled] == [0, 1]
    for row, entry in zip(rows, doc["steps"]):
        assert [None if v == "X" else v for v in row.iou[:entry["num_classes"]]] == entry["full"]["iou"]
        assert row.mean_iou == entry["full"]["mean_iou"] and row.oa == entry["full"]["summary"]["oa"]
    log = (run / "log.txt").read_text()
    assert "step 1 test, metric sampled" in log and "step 1 test, metric full (every point)" in log


def _row(text: str, name: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.startswith(name))


def test_css_report_shows_both_tables(run, capsys):
    from css import report

    doc = json.loads((run / "results.json").read_text())
    assert report.main([str(run)]) == 0
    out = capsys.readouterr().out
    sampled_part, full_part = out.split("metric: full")
    assert "metric: sampled" in sampled_part
    assert _row(full_part, "pc_tiny")[4] == f"{100 * doc['full']['final']['all']:.2f}"
    assert _row(sampled_part, "pc_tiny")[4] == f"{100 * doc['final']['all']:.2f}"
    assert report.main([str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"] == ["sampled", "full"] and data["runs"][0]["full"]["all"] == doc["full"]["final"]["all"]


def test_css_report_reads_results_full_csv_beside_a_csv(run, tmp_path, capsys):
    from css import report

    doc = json.loads((run / "results.json").read_text())
    for name in ("results.csv", "results_full.csv"):
        shutil.copy(run / name, tmp_path / name)
    assert report.main([str(tmp_path / "results.csv")]) == 0
    full_part = capsys.readouterr().out.split("metric: full")[1]
    assert f"{100 * doc['full']['final']['avg']:.2f}" in full_part


def test_evaluate_metric_full_recomputes_the_same_numbers(run, tmp_path, capsys):
    from css import evaluate

    doc = json.loads((run / "results.json").read_text())
    out = tmp_path / "full.json"
    assert evaluate.main([str(run), "--metric", "full", "--json", str(out)]) == 0
    assert "metric: full" in capsys.readouterr().out
    got = json.loads(out.read_text())
    for row, entry in zip(got, doc["steps"]):
        assert row["metric"] == "full" and row["iou"] == entry["full"]["iou"]
        assert row["num_points"] == entry["full"]["num_points"]
    # the default is the sampled metric of today
    assert evaluate.main([str(run), "--json", str(out)]) == 0
    assert [r["iou"] for r in json.loads(out.read_text())] == [e["iou"] for e in doc["steps"]]


def test_evaluate_metric_full_write_rebuilds_both(run, tmp_path):
    from css import evaluate

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = json.loads((copy / "results.json").read_text())
    (copy / "results.json").unlink()
    (copy / "results_full.csv").unlink()
    assert evaluate.main([str(copy), "--metric", "full", "--write"]) == 0
    after = json.loads((copy / "results.json").read_text())
    assert after["full"] == before["full"]
    assert [e["iou"] for e in after["steps"]] == [e["iou"] for e in before["steps"]]
    assert (copy / "results_full.csv").read_text() == (run / "results_full.csv").read_text()

"""Results CSV / JSON / plot / table (docs/protocol-2d.md#results-csv, #final-summary) and the
``python -m css.report`` CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from css import report
from css.errors import CSSError
from css.metrics import ConfusionMatrix
from css.results.csvfile import append_results_row, read_results_csv, summarize_csv_rows
from css.results.jsonfile import build_results, dumps_json, read_results_json, write_results_json
from css.results.metadata import build_metadata, collect_versions, git_commit
from css.results.tables import format_table, plot_miou_per_step
from css.utils import atomic_torch_save, atomic_write_text

REPO = Path(__file__).resolve().parent.parent

# A 3-step task over 5 classes: step 0 = bg + classes 1, 2; steps 1 and 2 add classes 3 and 4.
STEPS = [
    ([0.9, 0.8, 0.6], 0.7667),
    ([0.85, 0.7, 0.5, 0.4], 0.6125),
    ([0.8, 0.6, 0.4, 0.3, 0.2], 0.46),
]


def _write_csv(path, steps=STEPS):
    for step, (iou, miou) in enumerate(steps):
        append_results_row(path, step, iou, 5, miou)


def test_csv_layout_markers_and_round_trip(tmp_path):
    path = tmp_path / "results.csv"
    append_results_row(path, 0, [0.9, None, 0.6], 5, 0.75)
    assert path.read_text() == "0,0.9,X,0.6,x,x,0.75\n"  # no header, raw fractions
    row = read_results_csv(path)[0]
    assert (row.step, row.iou, row.mean_iou) == (0, [0.9, "X", 0.6, "x", "x"], 0.75)


def test_csv_rewrites_a_step_and_keeps_step_order(tmp_path):
    path = tmp_path / "results.csv"
    append_results_row(path, 1, [0.5, 0.4, 0.3, 0.2], 5, 0.35)
    append_results_row(path, 0, [0.9, 0.8, 0.6], 5, 0.7)
    append_results_row(path, 0, [0.95, 0.85, 0.65], 5, 0.8)  # re-run of step 0 replaces its row
    rows = read_results_csv(path)
    assert [r.step for r in rows] == [0, 1]
    assert rows[0].iou[:3] == [0.95, 0.85, 0.65] and rows[0].mean_iou == 0.8
    assert path.read_text().count("\n") == 2
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_csv_errors_name_the_file(tmp_path):
    path = tmp_path / "results.csv"
    append_results_row(path, 0, [0.9, 0.8], 3, 0.85)
    with pytest.raises(CSSError, match="another task"):
        append_results_row(path, 1, [0.9, 0.8, 0.7, 0.6], 4, 0.75)
    path.write_text("0,0.9,abc,0.5\n")
    with pytest.raises(CSSError, match=r"results.csv, line 1"):
        read_results_csv(path)
    with pytest.raises(CSSError, match="does not exist"):
        read_results_csv(tmp_path / "missing.csv")


def test_summarize_csv_rows_like_average_csv(tmp_path):
    path = tmp_path / "results.csv"
    _write_csv(path)
    s = summarize_csv_rows(read_results_csv(path))
    assert s["bg"] == pytest.approx(0.8)
    assert s["old"] == pytest.approx((0.6 + 0.4) / 2)  # classes 1..2 of the last row
    assert s["new"] == pytest.approx((0.3 + 0.2) / 2)  # classes 3..4
    assert s["all"] == pytest.approx(0.46)
    assert s["avg"] == pytest.approx((0.7667 + 0.6125 + 0.46) / 3)
    assert s["hiou"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert (s["num_old"], s["num_new"], s["num_steps"]) == (2, 2, 3)  # average_csv: num_old = col - 2


def test_summarize_skips_absent_classes_and_checks_order(tmp_path):
    path = tmp_path / "results.csv"
    _write_csv(path, STEPS[:2] + [([0.8, 0.6, None, 0.3, 0.2], 0.475)])
    s = summarize_csv_rows(read_results_csv(path))
    assert s["old"] == pytest.approx(0.6)  # absent class 2 skipped (the reference crashed)
    rows = read_results_csv(path)
    with pytest.raises(CSSError, match="in order"):
        summarize_csv_rows([rows[0], rows[2]])
    with pytest.raises(CSSError, match="no rows"):
        summarize_csv_rows([])


def _summaries():
    """Per-step ConfusionMatrix summaries of a 2-step task: step 0 = {0, 1, 2}, step 1 adds 3."""
    cm0 = ConfusionMatrix(3)
    cm0.update(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 1, 1, 2, 1]))
    cm1 = ConfusionMatrix(4)
    cm1.update(torch.tensor([0, 0, 1, 1, 2, 3, 3, 0]), torch.tensor([0, 0, 1, 1, 2, 3, 0, 3]))
    return [cm0.summary(num_old=0), cm1.summary(num_old=3)]


def test_results_json_plot_and_final_matches_csv(tmp_path):
    summaries = _summaries()
    meta = build_metadata({"seed": 1, "lr": 0.01}, protocol="fixed", seed=1, world_size=2,
                          global_batch=24, precision="bf16")
    results = write_results_json(
        tmp_path / "results.json", summary_per_step=summaries,
        per_class_iou_per_step=[s["per_class"] for s in summaries],
        class_names=["background", "a", "b", "c"], metadata=meta, task="2-1", dataset="voc", method="lgkd",
    )
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["steps"][0]["summary"]["new"] is None  # NaN stored as null
    assert raw["metadata"]["config"] == {"seed": 1, "lr": 0.01}
    assert raw["metadata"]["world_size"] == 2 and raw["metadata"]["precision"] == "bf16"
    assert set(raw["metadata"]["versions"]) >= {"python", "torch", "torchvision", "numpy", "css"}
    loaded = read_results_json(tmp_path / "results.json")
    assert math.isnan(loaded["steps"][0]["summary"]["new"])

    # Hand values. Step 1 matrix rows: gt0 [2,0,0,1], gt1 [0,2,0,0], gt2 [0,0,1,0], gt3 [1,0,0,1]
    iou1 = [2 / 4, 1.0, 1.0, 1 / 3]
    final = loaded["final"]
    assert final["bg"] == pytest.approx(iou1[0], rel=1e-5)
    assert final["old"] == pytest.approx(1.0, rel=1e-5)
    assert final["new"] == pytest.approx(1 / 3, rel=1e-5)
    assert final["all"] == pytest.approx(sum(iou1) / 4, rel=1e-5)
    # step 0: gt0 [2,0,0], gt1 [0,2,1], gt2 [0,0,1] -> IoU 1, 2/3, 1/2
    assert final["avg"] == pytest.approx(((1 + 2 / 3 + 1 / 2) / 3 + sum(iou1) / 4) / 2, rel=1e-5)
    assert final["hiou"] == pytest.approx(2 * (1 / 3) / (1 + 1 / 3), rel=1e-5)
    assert results["final"]["all"] == final["all"]

    # the CSV written for the same steps gives the same final numbers (average_csv semantics)
    for t, s in enumerate(summaries):
        append_results_row(tmp_path / "results.csv", t, s["per_class"], 4, s["all"])
    from_csv = summarize_csv_rows(read_results_csv(tmp_path / "results.csv"))
    for key in ("bg", "old", "new", "all", "avg", "hiou"):
        assert from_csv[key] == pytest.approx(final[key], rel=1e-12)

    plot_miou_per_step(tmp_path / "miou.png", results)
    assert (tmp_path / "miou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metadata_helpers(tmp_path):
    assert git_commit(tmp_path) is None  # not a git repository
    assert collect_versions()["torch"] == torch.__version__


def test_format_table():
    text = format_table([
        {"run": "a", "bg": 0.9, "old": 0.71234, "new": math.nan, "all": 0.5, "avg": 0.6, "hiou": None},
        {"run": "group 1 (n=2)", "bg": (0.9, 0.01), "old": 0.7, "new": 0.2, "all": 0.5, "avg": 0.6, "hiou": 0.3},
    ])
    lines = text.splitlines()
    assert lines[0].split() == ["run", "bg", "old", "new", "all", "avg", "hIoU"]
    assert lines[2].split() == ["a", "90.00", "71.23", "-", "50.00", "60.00", "-"]
    assert "90.00 ± 1.00" in lines[3]
    assert len({len(line) for line in lines}) == 1  # fixed width


def test_atomic_helpers(tmp_path):
    atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"
    atomic_torch_save({"x": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt")["x"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "sub"]


def _fake_run(folder, *, seed, all_, lr=0.01):
    entries = [
        {"step": 0, "num_old": 0, "num_classes": 3, "summary": {}, "iou": [0.9, 0.8, 0.7], "mean_iou": 0.8},
        {"step": 1, "num_old": 3, "num_classes": 4, "summary": {}, "iou": [0.9, 0.6, 0.5, 0.4], "mean_iou": all_},
    ]
    config = {"seed": seed, "output_dir": str(folder), "name": folder.name, "lr": lr}
    results = build_results(entries, ["bg", "a", "b", "c"], {"config": config})
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))


def test_report_cli_groups_seeds(tmp_path, capsys):
    _fake_run(tmp_path / "s1", seed=1, all_=0.5)
    _fake_run(tmp_path / "s2", seed=2, all_=0.6)
    _fake_run(tmp_path / "other", seed=1, all_=0.7, lr=0.1)  # different config: not grouped
    code = report.main([str(tmp_path / "s1"), str(tmp_path / "s2"), str(tmp_path / "other")])
    out = capsys.readouterr().out
    assert code == 0
    assert "s1" in out and "other" in out
    assert "55.00 ± 7.07" in out  # mean ± sample std of 50 and 60
    assert "group 1 (n=2)" in out and "group 2" not in out

    assert report.main([str(tmp_path / "s1"), str(tmp_path / "s2"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["groups"][0]["n"] == 2
    assert doc["groups"][0]["mean"]["all"] == pytest.approx(0.55)
    assert doc["groups"][0]["std"]["all"] == pytest.approx(0.0707107, rel=1e-5)
    assert doc["runs"][0]["final"]["old"] == pytest.approx(0.55)


def test_report_cli_reads_csv(tmp_path, capsys):
    _write_csv(tmp_path / "results.csv")
    assert report.main([str(tmp_path / "results.csv")]) == 0
    assert "46.00" in capsys.readouterr().out


def test_report_cli_errors_exit_2(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "results.json" in capsys.readouterr().err


def test_report_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "css.report", str(tmp_path / "missing")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- full-coverage figures
def _entry(step, iou, full_iou=None):
    present = [v for v in iou[1:] if v is not None]
    entry = {"step": step, "num_classes": len(iou), "iou": iou, "mean_iou": sum(present) / len(present),
             "summary": {"oa": 0.5 + step / 10}}
    if full_iou is not None:
        fp = [v for v in full_iou[1:] if v is not None]
        entry["full"] = {"metric": "full", "iou": full_iou, "mean_iou": sum(fp) / len(fp),
                         "summary": {"oa": 0.6 + step / 10}}
    return entry


def test_the_full_final_is_computed_like_the_sampled_one_by_hand(tmp_path):
    # channel 0 synthetic background; base classes 1-2 (step 0 has 3 channels), new class 3
    entries = [_entry(0, [None, 0.5, 0.7], [None, 0.6, 0.8]), _entry(1, [None, 0.4, 0.6, 0.2], [None, 0.5, 0.7, 0.3])]
    doc = build_results(entries, ["bg", "a", "b", "c"], {}, background=False, metric="sampled")
    assert doc["metric"] == "sampled" and doc["full"]["metric"] == "full"
    full = doc["full"]["final"]
    assert math.isclose(full["old"], (0.5 + 0.7) / 2) and math.isclose(full["new"], 0.3)
    assert math.isclose(full["all"], (0.5 + 0.7 + 0.3) / 3)
    assert math.isclose(full["avg"], ((0.6 + 0.8) / 2 + (0.5 + 0.7 + 0.3) / 3) / 2)
    assert math.isclose(full["hiou"], 2 * 0.6 * 0.3 / 0.9) and math.isnan(full["bg"]) and full["oa"] == 0.7
    assert math.isclose(doc["final"]["all"], 0.4)  # the sampled figures are untouched
    path = tmp_path / "results.json"
    atomic_write_text(path, dumps_json(doc))
    back = read_results_json(path)
    assert math.isnan(back["full"]["final"]["bg"]) and back["full"]["final"]["oa"] == 0.7


def test_no_full_final_unless_every_step_has_it():
    entries = [_entry(0, [None, 0.5, 0.7]), _entry(1, [None, 0.4, 0.6, 0.2], [None, 0.5, 0.7, 0.3])]
    doc = build_results(entries, ["bg", "a", "b", "c"], {}, background=False)
    assert "full" not in doc and "metric" not in doc  # images name no metric


def test_the_log_line_names_each_metric():
    from css.results.recording import format_summary

    s = {"bg": math.nan, "old": 0.5, "new": 0.25, "all": 0.4, "hiou": 1 / 3, "oa": 0.9}
    assert format_summary(1, 9, s) == ("step 1 test (9 samples): bg   -   | old 50.00 | new 25.00 | all 40.00 | "
                                       "hIoU 33.33 | OA 90.00")
    sampled, full = format_summary(1, 9, dict(s, full=dict(s, all=0.45))).splitlines()
    assert sampled.startswith("step 1 test, metric sampled (9 samples): bg")
    assert full.startswith("step 1 test, metric full (every point): bg") and "all 45.00" in full


def test_a_nan_step_stays_nan_in_the_final_after_a_round_trip(tmp_path):
    # A step without any present class has a nan mean IoU, written as null; read back, it must not
    # drop out of avg (which would turn nan into the other steps' mean).
    entries = [_entry(0, [None, 0.5, 0.7]), _entry(1, [None, 0.4, 0.6, 0.2])]
    entries[0]["mean_iou"] = math.nan
    entries[1]["summary"]["oa"] = math.nan
    first = build_results(entries, ["bg", "a", "b", "c"], {}, background=False)
    assert math.isnan(first["final"]["avg"]) and math.isnan(first["final"]["oa"])
    path = tmp_path / "results.json"
    atomic_write_text(path, dumps_json(first))
    back = read_results_json(path)
    assert back["steps"][0]["mean_iou"] is None  # what a rebuild from disk starts from
    rebuilt = build_results(back["steps"], ["bg", "a", "b", "c"], {}, background=False)
    assert math.isnan(rebuilt["final"]["avg"]) and math.isnan(rebuilt["final"]["oa"])
    assert math.isclose(rebuilt["final"]["all"], first["final"]["all"])

"""Summary of a step with a synthetic background channel (point clouds): channel 0 is not a class."""

import math

import torch

from css.metrics import ConfusionMatrix
from css.pointcloud.channels import class_predictor
from css.results.jsonfile import build_results
from css.results.recording import format_summary
from css.results.summary import step_entry
from css.results.tables import format_table
from css.tasks.registry import get_task


def _cm():
    # 4 channels: 0 synthetic background, 1-2 old, 3 new. Rows = target, cols = prediction.
    cm = ConfusionMatrix(4)
    cm.matrix = torch.tensor([[2, 1, 0, 1],
                              [0, 3, 1, 0],
                              [0, 0, 4, 0],
                              [1, 0, 0, 3]], dtype=torch.int64)
    return cm


def test_summary_leaves_the_synthetic_background_out():
    s = _cm().summary(3, background=False)
    iou = [2 / 5, 3 / 5, 4 / 5, 3 / 5]  # TP / (GT + Pred - TP): bg 2/(4+3-2), c1 3/(4+4-3), ...
    assert math.isclose(s["old"], (iou[1] + iou[2]) / 2, rel_tol=1e-6)
    assert math.isclose(s["new"], iou[3], rel_tol=1e-6)
    assert math.isclose(s["all"], (iou[1] + iou[2] + iou[3]) / 3, rel_tol=1e-6)  # channel 0 not in "all"
    assert math.isclose(s["oa"], 12 / 16, rel_tol=1e-6)
    # channel 0 has ground truth here (future classes are background at step 1) and IoU 2/5, yet the
    # synthetic channel is not a class: no bg figure at any step, printed "-" like the last step's
    assert s["bg"] != s["bg"]
    assert "bg   -   | old" in format_summary(1, 4, s)
    with_bg = _cm().summary(3)
    assert math.isclose(with_bg["all"], sum(iou) / 4, rel_tol=1e-6)  # images: background is a class


def test_results_final_has_no_bg_and_oa_for_point_clouds():
    s = _cm().summary(3, background=False)
    entry = step_entry(1, s, s["per_class"])
    res = build_results([entry], ["bg", "a", "b", "c"], {}, background=False)
    assert res["final"]["bg"] != res["final"]["bg"]  # nan
    assert math.isclose(res["final"]["oa"], 0.75, rel_tol=1e-6)
    table = format_table([{"run": "r", **res["final"]}])
    assert table.splitlines()[0].split()[-1] == "OA" and "75.00" in table


def test_prediction_ignores_background_once_every_class_is_learnt():
    task = get_task("s3dis", "12-1")
    logits = torch.tensor([[[5.0], [1.0], [2.0]] + [[0.0]] * 11])  # (1, 14, 1): bg largest, then ch 2
    assert class_predictor(task, 0)(logits[:, :13]).item() == 0  # step 0: clutter is still future
    assert class_predictor(task, 1)(logits).item() == 2  # last step: bg is not a prediction


def test_results_csv_carries_oa_for_point_clouds(tmp_path):
    from css.results.csvfile import append_results_row, read_results_csv, summarize_csv_rows

    path = tmp_path / "results.csv"
    append_results_row(path, 0, [None, 0.5, 0.7], 4, 0.6, oa=0.8)
    append_results_row(path, 1, [None, 0.4, 0.6, 0.3], 4, 0.4333, oa=0.75)
    assert path.read_text().splitlines()[1] == "1,X,0.4,0.6,0.3,0.4333,oa=0.75"
    rows = read_results_csv(path)
    assert [r.oa for r in rows] == [0.8, 0.75] and rows[1].iou == ["X", 0.4, 0.6, 0.3]
    assert summarize_csv_rows(rows)["oa"] == 0.75
    append_results_row(tmp_path / "img.csv", 0, [0.9], 1, 0.9)  # images: the reference layout
    assert (tmp_path / "img.csv").read_text() == "0,0.9,0.9\n"


def test_results_entry_records_c_old_and_the_base_split():
    """num_old is C_old of the step (channels learnt before it), num_base the step-0 channels."""
    from css.results import recording

    task = get_task("s3dis", "8-1")  # synthetic background + 8 classes, then one class per step
    cm = ConfusionMatrix(task.num_classes(2))
    cm.matrix = torch.eye(task.num_classes(2), dtype=torch.int64)
    entry, _ = recording.step_entry(cm, task, 2, 11, None, None)
    assert (entry["num_old"], entry["num_base"], entry["num_classes"]) == (10, 9, 11)
    entry0, _ = recording.step_entry(ConfusionMatrix(9), task, 0, 11, None, None)
    assert (entry0["num_old"], entry0["num_base"]) == (0, 9)


def test_a_full_block_and_a_step_entry_share_one_figures_builder():
    """recording.full_block and summary.step_entry take their summary / iou / mean_iou from the one
    summary.metric_figures (same keys, same order, same numbers for the same matrix), and the
    full-coverage final is computed by build_results' own code from those blocks."""
    from css.results import recording
    from css.results.jsonfile import dumps_json
    from css.results.summary import class_ious, metric_figures, step_summary

    task = get_task("s3dis", "8-1")
    cm = ConfusionMatrix(task.num_classes(1))
    cm.matrix = torch.arange(cm.num_classes ** 2, dtype=torch.int64).reshape(cm.num_classes, -1)
    cm.matrix[4] = 0  # a class without ground truth: null IoU in both
    cm.full, cm.points, cm.blocks = cm, 123, 4  # the same matrix as its own full-coverage one
    entry, summary = recording.step_entry(cm, task, 1, 4, None, None)
    figures = metric_figures(step_summary(cm, task), class_ious(cm))
    assert list(entry["full"]) == ["metric", *figures, "num_points", "num_blocks"]
    assert {k: entry["full"][k] for k in figures} == {k: entry[k] for k in figures} == figures
    assert list(entry)[:len(figures) + 4] == ["step", "num_old", "num_base", "num_classes", *figures]
    assert summary["full"] == entry["summary"]
    doc = build_results([entry], task.channel_names(1), {}, background=False)
    assert dumps_json(doc["full"]["final"]) == dumps_json(doc["final"])

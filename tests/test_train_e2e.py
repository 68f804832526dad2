"""End-to-end runs of the step controller on tiny synthetic data (CPU): CLI, reports, resume,
skipping finished steps, --steps and --init-step0."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from css.config.build import load_config
from css.controller.start import parse_steps
from css.controller.steps import run_from_config
from css.errors import CheckpointError, ConfigError
from css.results.csvfile import read_results_csv

from _run_folder import crash_in_step1_epoch1
from _tiny import write_config

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.run([sys.executable, "-m", "css.train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_runs_two_steps_and_writes_reports(tmp_path):
    cfg = write_config(tmp_path)
    proc = run_cli("--modality", "image", "--config", cfg)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = tmp_path / "runs" / "tiny"
    for f in ("config.yaml", "log.txt", "results.csv", "results.json", "miou.png", "step0/model.pt", "step1/model.pt"):
        assert (run / f).is_file(), f
    assert not (run / "step1" / "resume.pt").exists()  # removed once the step is finished
    rows = read_results_csv(run / "results.csv")
    assert [r.step for r in rows] == [0, 1]
    # classes of step 1 not yet seen at step 0 (docs/protocol-2d.md#results-csv)
    assert rows[0].iou[3:] == ["x", "x"]
    results = json.loads((run / "results.json").read_text())
    assert set(results["final"]) >= {"bg", "old", "new", "all", "avg", "hiou"}
    assert results["metadata"]["world_size"] == 1 and results["metadata"]["protocol"] == "fixed"
    assert results["metadata"]["config"]["method"]["kd"] == "lgkd"  # resolved preset recorded
    step1 = torch.load(run / "step1" / "model.pt", weights_only=False)
    assert step1["classes_per_step"] == [3, 2] and step1["model"]["cls.1.weight"].shape[0] == 2
    assert "bg" in proc.stdout and "hIoU" in proc.stdout  # the final table is printed
    # Re-running the same command skips both finished steps.
    again = run_cli("--config", cfg)
    assert again.returncode == 0 and again.stdout.count("already finished") == 2


def test_cli_user_errors_exit_2_without_traceback(tmp_path):
    proc = run_cli("--config", tmp_path / "missing.yaml")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    cfg = write_config(tmp_path)
    proc = run_cli("--config", cfg, "train.lr=oops")
    assert proc.returncode == 2 and "train.lr" in proc.stderr
    proc = run_cli("--config", cfg, "--steps", "1")  # step 1 needs step 0's model
    assert proc.returncode == 2 and "step0" in proc.stderr and "--init-step0" in proc.stderr


def _final(run):
    return json.loads((run / "results.json").read_text())


@pytest.mark.parametrize("method", [None, {"name": "rw", "reg_importance": 100.0}])
def test_interrupted_run_resumes_to_identical_result(tmp_path, monkeypatch, method):
    """LGKD (pseudo-label thresholds) and RW (Fisher, path-integral windows and the previous
    step's penalty) continue exactly where the interrupted epoch left them."""
    extra = {"method": method} if method else {}
    full = load_config(write_config(tmp_path, name="full", **extra))
    run_from_config(full)
    # Interrupt the second run during step 1's second epoch (after its first epoch was saved).
    part = load_config(write_config(tmp_path, name="part", **extra))
    undo = crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(part)
    resume = tmp_path / "runs" / "part" / "step1" / "resume.pt"
    assert resume.is_file() and torch.load(resume, weights_only=False)["epoch"] == 1
    undo()
    if method is not None:  # a resume file of an earlier css (next-step state only) is refused
        state = torch.load(resume, weights_only=False)
        old = dict(state, regularizer=state["regularizer_progress"])
        del old["regularizer_progress"]
        torch.save(old, resume)
        with pytest.raises(CheckpointError, match=r"earlier css.*Delete .*resume.pt"):
            run_from_config(part)
        torch.save(state, resume)
    run_from_config(part)
    a, b = _final(tmp_path / "runs" / "full"), _final(tmp_path / "runs" / "part")
    assert [s["iou"] for s in a["steps"]] == [s["iou"] for s in b["steps"]]
    ha = torch.load(tmp_path / "runs" / "full" / "step1" / "model.pt", weights_only=False)["history"]
    hb = torch.load(tmp_path / "runs" / "part" / "step1" / "model.pt", weights_only=False)["history"]
    assert [h["terms"] for h in ha] == [h["terms"] for h in hb]
    ra = torch.load(tmp_path / "runs" / "full" / "step1" / "model.pt", weights_only=False)["regularizer"]
    rb = torch.load(tmp_path / "runs" / "part" / "step1" / "model.pt", weights_only=False)["regularizer"]
    assert (ra is None) == (rb is None) == (method is None)
    if ra is not None:  # the accumulators (Fisher, path-integral score) continued exactly
        for key in ("fisher", "score", "params"):
            assert ra[key].keys() == rb[key].keys()
            for name, value in ra[key].items():
                torch.testing.assert_close(rb[key][name], value, rtol=0, atol=0, msg=f"{key}.{name}")


def test_steps_range_and_init_step0(tmp_path):
    first = load_config(write_config(tmp_path, name="first"))
    run_from_config(first, steps="0")
    step0 = tmp_path / "runs" / "first" / "step0" / "model.pt"
    # A new run that starts from that step-0 checkpoint evaluates step 0 and trains step 1.
    second = load_config(write_config(tmp_path, name="second"))
    run_from_config(second, init_step0=str(step0))
    res = _final(tmp_path / "runs" / "second")
    assert [s["step"] for s in res["steps"]] == [0, 1]
    assert res["steps"][0]["iou"] == _final(tmp_path / "runs" / "first")["steps"][0]["iou"]
    saved = torch.load(tmp_path / "runs" / "second" / "step0" / "model.pt", weights_only=False)
    assert saved["trained"] is False


def test_run_folder_refuses_a_different_config(tmp_path):
    cfg = load_config(write_config(tmp_path, name="same"))
    run_from_config(cfg, steps="0")
    changed = load_config(write_config(tmp_path, name="same", train={"lr": 0.5}))
    with pytest.raises(ConfigError, match=r"different config \(train.lr: 0.01 -> 0.5\)"):
        run_from_config(changed, steps="0")
    # A key that a later css added (absent from the saved config) does not block the resume.
    saved = tmp_path / "runs" / "same" / "config.yaml"
    tree = yaml.safe_load(saved.read_text())
    del tree["method"]["pod_scales"]
    saved.write_text(yaml.safe_dump(tree))
    run_from_config(cfg, steps="0")


def test_parse_steps():
    assert parse_steps(None, 3) == [0, 1, 2]
    assert parse_steps("2-4", 6) == [2, 3, 4] and parse_steps("0,2", 3) == [0, 2]
    with pytest.raises(ConfigError, match="outside"):
        parse_steps("5", 3)
    with pytest.raises(ConfigError, match="e.g. 2-5"):
        parse_steps("a-b", 3)
    with pytest.raises(ConfigError, match="runs backwards.*--steps 0-2"):
        parse_steps("2-0", 3)  # the Python API too, not only the CLI


def test_evaluate_and_predict_from_a_run(tmp_path, capsys):
    from PIL import Image

    from css import evaluate as ev
    from css import predict as pr

    cfg = load_config(write_config(tmp_path, name="ep"))
    run_from_config(cfg)
    run = tmp_path / "runs" / "ep"
    out = tmp_path / "eval.json"
    assert ev.main([str(run), "--json", str(out)]) == 0
    recomputed = json.loads(out.read_text())
    recorded = _final(run)["steps"]
    assert [r["step"] for r in recomputed] == [0, 1]
    assert [r["iou"] for r in recomputed] == [s["iou"] for s in recorded]
    # A single step checkpoint evaluates the same way.
    assert ev.main([str(run / "step1" / "model.pt"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())[0]["iou"] == recorded[1]["iou"]
    assert "hIoU" in capsys.readouterr().out

    # What the run keeps for the HTML report (docs/report.md#what-a-run-keeps): each step's confusion
    # matrix, whose IoUs (TP / (GT + Pred - TP), worked out here) are the recorded ones, and four test
    # images drawn as input | ground truth | prediction | errors (64 px each, 2 px apart).
    for step in (0, 1):
        cm = np.load(run / f"step{step}" / "confusion.npy")
        tp, gt, pr_ = np.diag(cm).astype(float), cm.sum(1).astype(float), cm.sum(0).astype(float)
        iou = [float(t / (g + p - t)) if g > 0 else None for t, g, p in zip(tp, gt, pr_)]
        assert cm.shape == (3 + 2 * step, 3 + 2 * step)
        assert [None if v is None else round(v, 6) for v in iou] == \
            [None if v is None else round(v, 6) for v in recorded[step]["iou"]]
        manifest = json.loads((run / f"step{step}" / "samples" / "samples.json").read_text())
        assert [s["file"] for s in manifest["samples"]] == [f"sample{k}.png" for k in range(4)]
        assert len(manifest["colours"]) == 3 + 2 * step
        assert Image.open(run / f"step{step}" / "samples" / "sample0.png").size == (4 * 64 + 3 * 2, 64)
    kept = (run / "step1" / "confusion.npy").read_bytes()
    for step in (0, 1):  # a run folder made before these were kept: css.evaluate --write adds them
        (run / f"step{step}" / "confusion.npy").unlink()
        for f in (run / f"step{step}" / "samples").iterdir():
            f.unlink()
        (run / f"step{step}" / "samples").rmdir()
    assert ev.main([str(run), "--write"]) == 0
    assert (run / "step1" / "confusion.npy").read_bytes() == kept
    assert (run / "step0" / "samples" / "samples.json").is_file()

    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (50, 40), (200, 30, 30)).save(images / "a.png")
    Image.new("RGB", (64, 64), (20, 30, 200)).save(images / "b.jpg")
    assert pr.main(["--checkpoint", str(run / "step1" / "model.pt"), "--images", str(images),
                    "--out", str(tmp_path / "pred")]) == 0
    pred = Image.open(tmp_path / "pred" / "a_pred.png")
    assert pred.mode == "P" and pred.size == (50, 40)
    assert set(np.unique(np.asarray(pred))) <= set(range(5))  # dataset label ids of the 2-2 task
    assert Image.open(tmp_path / "pred" / "b_overlay.png").size == (64, 64)


def test_evaluate_errors(tmp_path):
    from css.errors import CSSError
    from css import evaluate as ev

    with pytest.raises(CSSError, match="does not exist"):
        ev.main([str(tmp_path / "nothing.pt")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CSSError, match="not a run folder"):
        ev.main([str(tmp_path / "empty")])

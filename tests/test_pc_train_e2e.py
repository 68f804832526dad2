"""End-to-end point-cloud runs of the step controller on tiny synthetic rooms (CPU): the CLI and
its reports, user errors, resume, the reference protocol's eval-mode training and re-evaluation
of a finished run (docs/pointcloud.md, docs/controller.md)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from css.engine import trainer as engine
from css.checkpoint import unwrap
from css.config.build import load_config
from css.controller.steps import run_from_config
from css.nn import BatchNormAct
from css.pointcloud.models import MCDropout
from css.results.csvfile import read_results_csv

from _pc_tiny import write_pc_config
from _run_folder import crash_in_step1_epoch1

ROOT = Path(__file__).resolve().parents[1]

# Keys only the image sections have (docs/config.md#sections): a point-cloud run must not record them.
IMAGE_DATA_KEYS = {"crop_size", "scale", "eval_mode"}
IMAGE_MODEL_KEYS = {"backbone", "output_stride", "pooling_size", "base_channels", "head_channels", "pretrained"}


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.run([sys.executable, "-m", "css.train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _final(run):
    return json.loads((run / "results.json").read_text())


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_cli_runs_two_point_cloud_steps_and_writes_reports(tmp_path):
    cfg = write_pc_config(tmp_path, modality=None)  # the modality comes from --modality
    proc = run_cli("--modality", "pointcloud", "--config", cfg)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = tmp_path / "runs" / "pc_tiny"
    for f in ("config.yaml", "log.txt", "results.csv", "results.json", "miou.png", "step0/model.pt", "step1/model.pt"):
        assert (run / f).is_file(), f
    assert not (run / "step1" / "resume.pt").exists()
    # 3-2: background channel + floor, wall, ceiling at step 0, then table and chair.
    rows = read_results_csv(run / "results.csv")
    assert [r.step for r in rows] == [0, 1]
    assert len(rows[0].iou) == 6 and rows[0].iou[4:] == ["x", "x"]
    results = _final(run)
    assert results["metadata"]["protocol"] == "fixed" and results["metadata"]["world_size"] == 1
    assert [s["step"] for s in results["steps"]] == [0, 1]
    assert all(_number(s["summary"]["oa"]) and 0 <= s["summary"]["oa"] <= 1 for s in results["steps"])
    final = results["final"]
    assert _number(final["oa"]) and 0 <= final["oa"] <= 1
    assert final["bg"] is None  # channel 0 is a synthetic background, not a class
    step1 = torch.load(run / "step1" / "model.pt", weights_only=False)
    assert step1["classes_per_step"] == [4, 2]
    assert tuple(step1["model"]["cls.1.weight"].shape) == (2, 128, 1)
    assert "cls.1.bias" not in step1["model"] and "cls.0.bias" not in step1["model"]  # bias-free DGCNN heads
    assert "OA" in proc.stdout and "hIoU" in proc.stdout  # the final table is printed
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["modality"] == "pointcloud" and saved["data"]["num_points"] == 128 and saved["model"]["k"] == 8
    assert not IMAGE_DATA_KEYS & set(saved["data"]), saved["data"]
    assert not IMAGE_MODEL_KEYS & set(saved["model"]), saved["model"]
    # Re-running the same command skips both finished steps.
    again = run_cli("--modality", "pointcloud", "--config", cfg)
    assert again.returncode == 0, again.stderr + again.stdout
    assert again.stdout.count("already finished") == 2


def test_cli_point_cloud_user_errors_exit_2_without_traceback(tmp_path):
    cfg = write_pc_config(tmp_path)
    proc = run_cli("--modality", "pointcloud", "--config", cfg, "data.crop_size=64")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "data.crop_size" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("--modality", "pointcloud", "--config", cfg, "method.pod=local")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "method.pod" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "pc_tiny" / "step0").exists()  # refused before anything ran


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(folder, run folder) of an uninterrupted tiny LGKD run, shared by the resume and the
    evaluation tests (neither changes it)."""
    tmp = tmp_path_factory.mktemp("pc_full")
    run_from_config(load_config(write_pc_config(tmp, name="full")))
    return tmp, tmp / "runs" / "full"


def test_interrupted_point_cloud_run_resumes_to_identical_result(finished, monkeypatch):
    """LGKD on points (pseudo-label thresholds from the old model, seeded point sampling and
    augmentation) continues exactly where the interrupted epoch left it."""
    tmp_path, full = finished  # the same synthetic cache folder and output folder as the full run
    part = load_config(write_pc_config(tmp_path, name="part"))
    undo = crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(part)
    resume = tmp_path / "runs" / "part" / "step1" / "resume.pt"
    assert resume.is_file() and torch.load(resume, weights_only=False)["epoch"] == 1
    undo()
    run_from_config(part)
    assert not resume.exists()
    a, b = _final(full), _final(tmp_path / "runs" / "part")
    assert [s["step"] for s in b["steps"]] == [0, 1]
    assert [s["iou"] for s in a["steps"]] == [s["iou"] for s in b["steps"]]
    for step in (0, 1):
        ca = torch.load(full / f"step{step}" / "model.pt", weights_only=False)
        cb = torch.load(tmp_path / "runs" / "part" / f"step{step}" / "model.pt", weights_only=False)
        assert [h["terms"] for h in ca["history"]] == [h["terms"] for h in cb["history"]], step
        assert len(cb["history"]) == 2
        if step == 1:
            torch.testing.assert_close(cb["thresholds"], ca["thresholds"], rtol=0, atol=0)


def _train_modes(tmp_path, monkeypatch, name, **sections):
    """{epoch: {(module type, training flag) seen in the forward passes of that epoch}} of a
    5-epoch step-0 run with one iteration per epoch."""
    seen: dict[int, set] = {}
    original = engine.Trainer._epoch

    def recording(self, epoch):
        modes = seen.setdefault(epoch, set())
        hooks = [m.register_forward_pre_hook(lambda mod, _: modes.add((type(mod).__name__, mod.training)))
                 for m in unwrap(self.model).modules() if isinstance(m, (BatchNormAct, MCDropout))]
        try:
            return original(self, epoch)
        finally:
            for h in hooks:
                h.remove()

    monkeypatch.setattr(engine.Trainer, "_epoch", recording)
    train = {"epochs": 5, "max_iters_per_epoch": 1, **sections.pop("train", {})}
    run_from_config(load_config(write_pc_config(tmp_path, name=name, train=train, **sections)), steps="0")
    monkeypatch.setattr(engine.Trainer, "_epoch", original)
    return seen


def _modes(training: bool) -> set:
    return {("BatchNormAct", training), ("MCDropout", training)}


def test_reference_protocol_trains_in_eval_mode_from_the_fourth_epoch(tmp_path, monkeypatch):
    """docs/pointcloud.md#protocol: the published code calls eval() in its first validation after
    epoch 3 and never train() again; train.legacy_eval_mode overrides it under either protocol."""
    legacy = _train_modes(tmp_path, monkeypatch, "legacy", protocol="reference")
    assert sorted(legacy) == [0, 1, 2, 3, 4]
    assert [legacy[e] for e in range(5)] == [_modes(True)] * 3 + [_modes(False)] * 2
    off = _train_modes(tmp_path, monkeypatch, "legacy_off", protocol="reference", train={"legacy_eval_mode": False})
    assert [off[e] for e in range(5)] == [_modes(True)] * 5
    fixed = _train_modes(tmp_path, monkeypatch, "fixed", protocol="fixed")
    assert [fixed[e] for e in range(5)] == [_modes(True)] * 5


def test_evaluate_a_finished_point_cloud_run_twice(finished, tmp_path, capsys):
    """The sampled test metric is seeded (data.eval_seed and the block index): css.evaluate gives
    the numbers the run recorded, every time."""
    from css import evaluate as ev

    run = finished[1]
    recorded = _final(run)["steps"]
    for attempt in range(2):
        out = tmp_path / f"eval{attempt}.json"
        assert ev.main([str(run), "--json", str(out)]) == 0
        recomputed = json.loads(out.read_text())
        assert [r["step"] for r in recomputed] == [0, 1]
        assert [r["iou"] for r in recomputed] == [s["iou"] for s in recorded]
        assert [r["summary"]["oa"] for r in recomputed] == [s["summary"]["oa"] for s in recorded]
        assert [r["num_test"] for r in recomputed] == [s["num_test"] for s in recorded]
    assert "OA" in capsys.readouterr().out


def test_a_point_cloud_run_keeps_its_confusion_and_sample_blocks(finished):
    """docs/report.md#what-a-run-keeps: the confusion matrix of the recorded (sampled) metric, whose
    IoUs worked out here are the recorded ones, and two test blocks' points with ground truth and
    prediction in model channels."""
    run = finished[1]
    recorded = _final(run)["steps"]
    for step, channels in ((0, 4), (1, 6)):
        cm = np.load(run / f"step{step}" / "confusion.npy")
        assert cm.shape == (channels, channels)
        tp, gt, pr = np.diag(cm).astype(float), cm.sum(1).astype(float), cm.sum(0).astype(float)
        iou = [round(float(t / (g + p - t)), 6) if g > 0 else None for t, g, p in zip(tp, gt, pr)]
        assert iou == [None if v is None else round(v, 6) for v in recorded[step]["iou"]]
        manifest = json.loads((run / f"step{step}" / "samples" / "samples.json").read_text())
        assert len(manifest["colours"]) == channels and manifest["samples"]
        for sample in manifest["samples"]:
            data = np.load(run / f"step{step}" / "samples" / sample["file"])
            assert sample["kind"] == "xyz" and data["xyz"].shape == (128, 3) == (sample["points"], 3)
            assert data["target"].shape == data["pred"].shape == (128,)
            assert set(np.unique(data["pred"])) <= set(range(channels))
            scored = data["target"] < channels
            assert math.isclose(sample["accuracy"], float((data["pred"][scored] == data["target"][scored]).mean()))

"""Whole scenes through the step controller (docs/pointcloud-scenes.md): the sparse UNet on the tiny
synthetic rooms, kept whole, for two steps from the CLI; what the run writes; an interrupted run
that resumes to the same result; whole-scene predictions read back; and the keys that do not go
with scenes. One CLI run is shared by every assertion."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from css.config.build import load_config
from css.controller.steps import run_from_config
from css.pointcloud import render
from css.pointcloud.store import BlockStore

from _pc_tiny import write_pc_config
from _run_folder import crash_in_step1_epoch1

ROOT = Path(__file__).resolve().parents[1]
# the tiny rooms of _pc_tiny whole, on a 0.2 m grid, cropped to 200 points, the small preset
SCENES = dict(data={"unit": "scene", "voxel_size": 0.2, "max_points": 200, "presence_fraction": 0.0,
                    "presence_min_points": 20},
              model={"arch": "sparse_unet", "preset": "small"},
              train={"batch_size": 2, "optimizer": "sgd", "lr": 0.05, "schedule": "poly", "epochs": 2,
                     "max_iters_per_epoch": 2, "eval_batch_size": 4})


def scene_config(tmp, **sections):
    merged = {k: dict(v) for k, v in SCENES.items()}
    for key, value in sections.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return write_pc_config(tmp, **merged)


def cli(module, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenes_run")
    cfg = scene_config(tmp, name="full")
    proc = cli("css.train", "--modality", "pointcloud", "--config", cfg)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return tmp, tmp / "runs" / "full", proc


def _results(run):
    return json.loads((run / "results.json").read_text())


def test_two_scene_steps_from_the_cli(finished):
    tmp, run, proc = finished
    results = _results(run)
    assert results["metric"] == "scene" and [s["step"] for s in results["steps"]] == [0, 1]
    test = BlockStore(next((tmp / "pc_data").glob("css-synthetic-pc-*")) / "test_scenes.h5")
    points = int(test.sizes.sum())
    for step, channels in ((0, 4), (1, 6)):
        entry = results["steps"][step]
        assert entry["num_test"] == len(test) == 1  # the scenes, as a block run counts blocks
        cm = np.load(run / f"step{step}" / "confusion.npy")
        # every point of every test scene exactly once (the synthetic rooms label every point)
        assert cm.shape == (channels, channels) and int(cm.sum()) == points
        tp, gt, pr = np.diag(cm).astype(float), cm.sum(1).astype(float), cm.sum(0).astype(float)
        iou = [round(float(t / (g + p - t)), 6) if g > 0 else None for t, g, p in zip(tp, gt, pr)]
        assert iou == [None if v is None else round(v, 6) for v in entry["iou"]]
        manifest = json.loads((run / f"step{step}" / "samples" / "samples.json").read_text())
        sample = manifest["samples"][0]
        assert sample["kind"] == "xyz" and sample["points"] == points and sample["id"] == test.ids[0]
        assert np.load(run / f"step{step}" / "samples" / sample["file"])["xyz"].shape == (min(points, 4096), 3)
    model = torch.load(run / "step1" / "model.pt", weights_only=False)
    assert model["classes_per_step"] == [4, 2] and "stem.0.weight" in model["model"]
    assert tuple(model["model"]["cls.1.weight"].shape) == (2, 32, 1)
    assert "every point of 1 scenes" in proc.stderr + proc.stdout
    again = cli("css.train", "--modality", "pointcloud", "--config", tmp / "full.yaml")
    assert again.returncode == 0 and again.stdout.count("already finished") == 2, again.stderr[-2000:]


def test_an_interrupted_scene_run_resumes_to_the_same_result(finished, monkeypatch):
    tmp, full, _ = finished
    part = load_config(scene_config(tmp, name="part"))
    undo = crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(part)
    resume = tmp / "runs" / "part" / "step1" / "resume.pt"
    assert resume.is_file() and torch.load(resume, weights_only=False)["epoch"] == 1
    undo()
    run_from_config(part)
    assert not resume.exists()
    a, b = _results(full), _results(tmp / "runs" / "part")
    assert [s["iou"] for s in a["steps"]] == [s["iou"] for s in b["steps"]]
    for step in (0, 1):
        ha = torch.load(full / f"step{step}" / "model.pt", weights_only=False)["history"]
        hb = torch.load(tmp / "runs" / "part" / f"step{step}" / "model.pt", weights_only=False)["history"]
        assert [h["terms"] for h in ha] == [h["terms"] for h in hb] and len(hb) == 2


def _read_ply(path):
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(path))
    return np.asarray(cloud.points), np.rint(np.asarray(cloud.colors) * 255).astype(np.int64)


def test_whole_scene_predictions_read_back_as_the_metric(finished, tmp_path):
    tmp, run, _ = finished
    out = tmp_path / "pred"
    proc = cli("css.predict", "--checkpoint", run / "step1" / "model.pt", "--split", "test", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = BlockStore(next((tmp / "pc_data").glob("css-synthetic-pc-*")) / "test_scenes.h5")
    coord, rgb = _read_ply(out / f"{test.ids[0]}_pred.ply")
    scene = test.block(0)
    np.testing.assert_allclose(coord, scene["coord"], atol=1e-6)  # every point of the scene, in its order
    colours = render.class_colours(6).astype(np.int64)
    match = (rgb[:, None, :] == colours[None]).all(2)
    assert (match.sum(1) == 1).all()
    pred = match.argmax(1)
    target = np.array([0, 1, 2, 3, 4, 5])[scene["label"] + 1]  # synthetic labels 0..4 -> channels 1..5
    matrix = np.zeros((6, 6), dtype=np.int64)
    np.add.at(matrix, (target, pred), 1)
    assert matrix.tolist() == np.load(run / "step1" / "confusion.npy").tolist()


@pytest.mark.parametrize("sections, message", [
    ({"model": {"arch": "dgcnn"}}, "model.arch: dgcnn does not read data.unit: scene"),
    ({"method": {"name": "3dpc-ciss"}}, "no whole-scene form"),
    ({"data": {"full_coverage": True}}, "already scores every point of every scene"),
    ({"data": {"voxel_size": 0}}, "data.voxel_size must be positive"),
])
def test_keys_that_do_not_go_with_scenes_fail_at_load(tmp_path, sections, message):
    from css.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(scene_config(tmp_path, **sections))


def test_a_bad_scene_key_exits_2_without_a_traceback(tmp_path):
    proc = cli("css.train", "--modality", "pointcloud", "--config", scene_config(tmp_path, data={"crop": "cube"}))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "data.crop" in proc.stderr, proc.stderr


@pytest.mark.parametrize("dataset, tasks", [("s3dis", ["12-1", "10-3", "8-5", "8-1"]),
                                            ("scannet", ["19-1", "17-3", "15-5", "15-1"])])
def test_the_scene_configs_line_up_with_the_block_tables(dataset, tasks):
    """Every task in both orders with LGKD, FT, MiB, PLOP and EWC, plus joint: whole scenes, the SpUNet
    size, and the class steps of the block config of the same name."""
    from css.modality.registry import get_modality

    folder = ROOT / "configs" / f"{dataset}_scenes"
    names = {p.stem for p in folder.glob("*.yaml")} - {"base"}
    expected = {f"{t}{o}_{m}" for t in tasks for o in ("", "_s1") for m in ("lgkd", "ft", "mib", "plop", "ewc")}
    assert names == expected | {"joint"}
    modality = get_modality("pointcloud")
    for name in sorted(names):
        cfg = load_config(folder / f"{name}.yaml")
        assert (cfg.data.unit, cfg.model.arch, cfg.model.preset, cfg.data.dataset) == ("scene", "sparse_unet",
                                                                                       "spunet", dataset)
        assert cfg.method.name == ("ft" if name == "joint" else name.rsplit("_", 1)[1])
        if name != "joint":
            blocks = load_config(ROOT / "configs" / dataset / f"{name.rsplit('_', 1)[0]}_lgkd.yaml")
            assert modality.task(cfg).steps == modality.task(blocks).steps, name


def test_css_evaluate_recomputes_the_scene_metric(finished, tmp_path, capsys):
    from css.evaluate import main

    _, run, _ = finished
    assert main([str(run), "--steps", "1", "--json", str(tmp_path / "e.json")]) == 0
    assert "metric: scene (every point of every test scene)" in capsys.readouterr().out
    (entry,) = json.loads((tmp_path / "e.json").read_text())
    assert entry["metric"] == "scene" and entry["iou"] == _results(run)["steps"][1]["iou"]
    from css.cli import run_cli

    assert run_cli(main, [str(run), "--metric", "full"]) == 2
    assert "runs on whole scenes" in capsys.readouterr().err


def test_the_html_report_shows_a_scene_sample_as_a_subset(finished, tmp_path):
    from css.htmlreport.page import write_report

    _, run, _ = finished
    index = write_report(tmp_path / "report", [run])
    sample = json.loads((run / "step1" / "samples" / "samples.json").read_text())["samples"][0]
    shown = min(sample["points"], sample["max_points"])
    title = f"{sample['id']}: {shown} of its {sample['points']} points"
    assert (title in Path(index).read_text()) == (shown < sample["points"])

"""python -m css.predict on point clouds (css/pointcloud/predict.py, docs/pointcloud-evaluation.md#predictions):
PLY files read back with open3d, colours against the palette, whole scenes, scans, clean errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from css import checkpoint as ck
from css.colours import CORRECT_RGB, IGNORED_RGB, WRONG_RGB, error_colours, label_colours
from css.config.build import load_config
from css.distributed import DistEnv
from css.errors import CSSError
from css.modality.registry import get_modality
from css.pointcloud import render
from css.pointcloud.predict import store_cloud
from css.pointcloud.store import BlockStore, write_split
from css.tasks.tables import S3DIS_CLASSES

from _pc_fixtures import S3DIS_TEST, make_s3dis
from _pc_tiny import write_pc_config

STEPS = [[0, 1, 2], [3], [4, 5]]
CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# step 1 channels: 0 background, 1 <- label 0, 2 <- 1, 3 <- 2, 4 <- 3; labels 4, 5, 7 are not
# learnt yet (background in the test ground truth), 255 stays ignored
STEP1 = {0: 1, 1: 2, 2: 3, 3: 4, 4: 0, 5: 0, 7: 0, 255: 255}


def _o3d():
    import open3d as o3d

    return o3d


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    cloud = _o3d().io.read_point_cloud(str(path))
    return np.asarray(cloud.points), np.rint(np.asarray(cloud.colors) * 255).astype(np.int64)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A step-1 DGCNN checkpoint (untrained, seeded) of the S3DIS-like fixture task."""
    tmp = tmp_path_factory.mktemp("predict")
    make_s3dis(tmp / "data")
    cfg = load_config(write_pc_config(tmp, data={"dataset": "s3dis", "root": str(tmp / "data"), "options": {},
                                                 "num_points": 512},
                                      task={"name": "mine", "steps": STEPS}))
    modality = get_modality("pointcloud")
    task = modality.task(cfg)
    torch.manual_seed(0)
    model = modality.build_model(cfg, task.classes_per_step(1), CPU)
    path = tmp / "step1" / "model.pt"
    path.parent.mkdir()
    ck.save_step_model(path, model, step=1, classes_per_step=task.classes_per_step(1),
                       task={"dataset": task.dataset, "name": task.name, "steps": task.steps},
                       extra={"config": cfg.to_dict()})
    return tmp, path, cfg, model, task


def predict(*args) -> int:
    from css.predict import main

    return main([str(a) for a in args])


def test_block_plys_read_back_with_the_palette_and_match_the_full_metric(setup, tmp_path, capsys):
    tmp, path, cfg, model, task = setup
    out = tmp_path / "out"
    assert predict("--checkpoint", path, "--clouds", tmp / "data" / "test.h5", "--out", out) == 0
    colours = render.class_colours(5)
    store = BlockStore(tmp / "data" / "test.h5")
    matrix = np.zeros((5, 5), dtype=np.int64)
    for i, block_id in enumerate(store.ids):
        block = store.block(i)
        coord, pred_rgb = read_ply(out / f"{block_id}_pred.ply")
        assert len(coord) == sum(S3DIS_TEST[i].values())
        assert np.array_equal(coord, block["coord"].astype(np.float64))
        # every colour is a palette colour; its row is the predicted channel
        match = (pred_rgb[:, None, :] == colours[None].astype(np.int64)).all(2)
        assert (match.sum(1) == 1).all()
        pred = match.argmax(1)
        target = np.array([STEP1[int(v)] for v in block["label"]])
        _, gt_rgb = read_ply(out / f"{block_id}_gt.ply")
        expected_gt = np.array([IGNORED_RGB if t == 255 else colours[t] for t in target])
        assert np.array_equal(gt_rgb, expected_gt)
        _, err_rgb = read_ply(out / f"{block_id}_error.ply")
        expected_err = np.array([IGNORED_RGB if t == 255 else CORRECT_RGB if p == t
                                 else WRONG_RGB for p, t in zip(pred, target)])
        assert np.array_equal(err_rgb, expected_err)
        for p, t in zip(pred, target):
            if t != 255:
                matrix[t, p] += 1
    # the prepared test blocks get the full-coverage metric's permutation: the same predictions
    dataset = get_modality("pointcloud").dataset(cfg, task, 1, "test")
    cm = get_modality("pointcloud").evaluate_full(model, dataset, cfg, task, 1, CPU)
    assert cm.matrix.tolist() == matrix.tolist()
    legend = json.loads((out / "legend.json").read_text())
    assert [c["name"] for c in legend["classes"]] == ["background", "ceiling", "floor", "wall", "beam"]
    assert [c["label"] for c in legend["classes"]] == [-1, 0, 1, 2, 3]
    assert [c["rgb"] for c in legend["classes"]] == colours.tolist()
    assert "ceiling" in (out / "legend.txt").read_text()
    assert "wrote 3 point cloud(s)" in capsys.readouterr().out


def _shared_store(path: Path) -> tuple[BlockStore, int]:
    """Scene "r" in two blocks that share 10 border points (same coordinates, colour and label)."""
    rng = np.random.default_rng(0)
    shared = np.column_stack([np.full(10, 1.0), rng.random(10), rng.random(10)]).astype(np.float32)
    a = np.column_stack([rng.random(40) * 0.99, rng.random(40), rng.random(40)]).astype(np.float32)
    b = np.column_stack([1.01 + rng.random(30), rng.random(30), rng.random(30)]).astype(np.float32)
    col = lambda n: rng.integers(0, 256, (n, 3), dtype=np.uint8)
    sc, ca, cb = col(10), col(40), col(30)
    blocks = [{"coord": np.concatenate([a, shared]), "color": np.concatenate([ca, sc]),
               "labels": {"reference": np.r_[np.zeros(40, int), np.ones(10, int)]}, "block_id": "r_block_0",
               "scene": "r", "origin": (0, 0)},
              {"coord": np.concatenate([shared, b]), "color": np.concatenate([sc, cb]),
               "labels": {"reference": np.r_[np.ones(10, int), np.full(30, 2)]}, "block_id": "r_block_1",
               "scene": "r", "origin": (1, 0)}]
    write_split(path, blocks, dataset="s3dis", split="test", class_names=list(S3DIS_CLASSES), block_size=1.0,
                stride=1.0, min_points=0)
    return BlockStore(path), 80


@pytest.mark.parametrize("height", [False, True], ids=["9ch", "height"])
def test_predict_feeds_the_model_the_features_of_the_dataset(setup, monkeypatch, height):
    """The inputs predict builds for a prepared block equal BlockDataset.sample's for the same block
    and point indices (css.pointcloud.data.sample_features, the one feature step of both); with the
    height channel counted from the whole block's lowest point, not the sample's."""
    from types import SimpleNamespace

    from css.pointcloud import predict as pc_predict
    from css.pointcloud.data import build_dataset, label_set, sample_features

    tmp, _, cfg, _, task = setup
    seen = {}

    def record(model, items, *, features, **kwargs):  # stands in for the model: keeps what it is given
        seen["features"], seen["items"] = features, list(items)
        return iter(())

    monkeypatch.setattr(pc_predict, "predict_items", record)
    ns = SimpleNamespace(data=SimpleNamespace(height_feature=height, eval_seed=cfg.data.eval_seed, num_points=64),
                         train=SimpleNamespace(eval_batch_size=2, precision="fp32"))
    path = tmp / "data" / "test.h5"
    clouds = pc_predict.prepared_clouds(path, blocks=None, scenes=None, label_set=label_set(BlockStore(path),
                                                                                            cfg.protocol))
    assert list(pc_predict.predict_clouds(None, clouds, cfg=ns, task=task, step=1, env=CPU, predict=None)) == []
    dataset = build_dataset("s3dis", tmp / "data", task=task, step=1, split="test", num_points=None,
                            protocol=cfg.protocol, height_feature=height)
    assert sorted(item.key for item in seen["items"]) == sorted(dataset.ids)
    draw = np.random.default_rng(0)
    for item in seen["items"]:
        ((block, _, _),) = item.blocks
        i = dataset.ids.index(item.key)
        # half the points, never the block's lowest: the height must still count from that one
        lowest = int(np.argmin(block["coord"][:, 2]))
        points = draw.permutation(np.delete(np.arange(item.size), lowest))[: item.size // 2]
        got = seen["features"](block, points)
        expected, _ = dataset.sample(dataset.load(i), points, None)
        assert got.shape == (9 + height, len(points))
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(got, sample_features(dataset.load(i), points, height_feature=height),
                                   rtol=0, atol=0)


def test_a_whole_scene_merges_border_points(tmp_path):
    store, unique = _shared_store(tmp_path / "test.h5")
    cloud = store_cloud(store, "r", [0, 1], "reference")
    assert len(cloud.coord) == unique and len(cloud.label) == unique
    first, second = cloud.blocks
    assert len(first) == 50 and len(second) == 40
    assert sorted(set(first[40:]) & set(second[:10])) == sorted(set(first[40:]))  # the 10 shared points
    assert len(set(first) | set(second)) == unique
    assert np.array_equal(cloud.coord[first], store.block(0)["coord"].astype(np.float64))
    assert np.array_equal(cloud.label[second], store.block(1)["label"])


def test_scenes_and_scans(setup, tmp_path, capsys):
    tmp, path, _, _, _ = setup
    _shared_store(tmp_path / "shared.h5")
    out = tmp_path / "out"
    assert predict("--checkpoint", path, "--clouds", tmp_path / "shared.h5", "--scenes", "r", "--out", out,
                   "--png") == 0
    coord, _ = read_ply(out / "r_pred.ply")
    assert len(coord) == 80 and (out / "r_gt.ply").is_file() and (out / "r.png").read_bytes()[:4] == b"\x89PNG"
    rng = np.random.default_rng(1)
    scans = tmp_path / "scans"
    scans.mkdir()
    pts = rng.random((300, 3)) * [2.5, 1.5, 2.0] + [100.0, 50.0, 0.0]
    np.savez(scans / "labelled.npz", coord=pts, color=rng.integers(0, 256, (300, 3)), label=rng.integers(0, 4, 300))
    np.savez(scans / "plain.npz", coord=pts[:100])
    capsys.readouterr()
    assert predict("--checkpoint", path, "--clouds", scans, "--out", out) == 0
    coord, _ = read_ply(out / "labelled_pred.ply")
    assert np.allclose(coord, pts) and (out / "labelled_error.ply").is_file()
    assert (out / "plain_pred.ply").is_file() and not (out / "plain_gt.ply").exists()
    assert "plain: 100 points ->" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--clouds", "{tmp}/missing.h5"], "missing.h5 does not exist"),
    (["--clouds", "{tmp}/notes.txt"], "unknown point-cloud format '.txt'"),
    (["--clouds", "{tmp}/empty"], "holds no point clouds"),
    (["--clouds", "{data}/test.h5", "--blocks", "nope_block_0"], "has no block 'nope_block_0'"),
    (["--clouds", "{data}/test.h5", "--scenes", "nowhere"], "has no scene 'nowhere'"),
    (["--clouds", "{tmp}/bad.npz", "--blocks", "x"], "none was given"),
    (["--clouds", "{tmp}/bad.npz"], "has no array 'coord'"),
    (["--images", "{tmp}/x.png"], "is a pointcloud model but --images was given"),
])
def test_clean_errors_name_the_input(setup, tmp_path, args, message):
    tmp, path, _, _, _ = setup
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "bad.npz", xyz=np.zeros((3, 3)))
    args = [a.format(tmp=tmp_path, data=tmp / "data") for a in args]
    with pytest.raises(CSSError, match=message):
        predict("--checkpoint", path, *args, "--out", tmp_path / "o")


def test_the_cli_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "css.predict", "--checkpoint", str(tmp_path / "none.pt"),
                           "--clouds", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "none.pt does not exist" in proc.stderr


def test_split_reads_the_prepared_split_of_the_checkpoint_config(setup, tmp_path):
    tmp, path, _, _, _ = setup
    out = tmp_path / "out"
    store = BlockStore(tmp / "data" / "test.h5")
    assert predict("--checkpoint", path, "--split", "test", "--blocks", store.ids[1], "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{store.ids[1]}_{kind}.ply" for kind in ("pred", "gt", "error")] + ["legend.json", "legend.txt"])


def test_palette_and_error_colours_by_hand():
    colours = render.class_colours(22)
    assert colours[0].tolist() == [80, 80, 80]
    assert colours[1].tolist() == [0x1F, 0x77, 0xB4] and colours[4].tolist() == [0xD6, 0x27, 0x28]
    assert colours[21].tolist() == colours[1].tolist()  # 20 colours, then again
    assert label_colours(np.array([2, 255, -1]), colours).tolist() == [
        colours[2].tolist(), list(IGNORED_RGB), list(IGNORED_RGB)]
    err = error_colours(np.array([1, 2, 3]), np.array([1, 3, 255]), 5)
    assert err.tolist() == [list(CORRECT_RGB), list(WRONG_RGB), list(IGNORED_RGB)]

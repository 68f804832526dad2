"""Config sections per modality, the optimiser/schedule choices and the point-cloud method rules."""

import math

import pytest
import torch

from css.pointcloud.config import PointDataConfig, PointModelConfig, PointTrainConfig
from css.config.build import from_dict, load_config
from css.engine.settings import TrainSettings
from css.engine.schedules import build_optimizer, build_schedule, poly_lambda, step_lambda
from css.errors import ConfigError
from css.methods.resolve import resolve_method


def test_pointcloud_sections_and_defaults():
    cfg = from_dict({"modality": "pointcloud", "data": {"dataset": "s3dis", "num_points": 1024}})
    assert isinstance(cfg.data, PointDataConfig) and isinstance(cfg.model, PointModelConfig)
    assert isinstance(cfg.train, PointTrainConfig)
    # the 3DPC-CISS schedule is the point-cloud default
    t = cfg.train
    assert (t.optimizer, t.schedule, t.lr, t.weight_decay, t.lr_step, t.lr_gamma, t.epochs, t.batch_size) == \
        ("adam", "step", 1e-3, 1e-4, 50, 0.5, 100, 32)
    assert cfg.data.num_points == 1024 and cfg.model.k == 20 and cfg.model.dropout == 0.3
    saved = cfg.to_dict()
    assert "crop_size" not in saved["data"] and "backbone" not in saved["model"]
    # an image config keeps its sections and defaults
    img = from_dict({})
    assert img.train.optimizer == "sgd" and img.train.schedule == "poly" and img.data.crop_size == 512


@pytest.mark.parametrize("data,key,other", [
    ({"modality": "pointcloud", "data": {"crop_size": 64}}, "data.crop_size", "image"),
    ({"modality": "pointcloud", "model": {"backbone": "resnet18"}}, "model.backbone", "image"),
    ({"modality": "image", "data": {"num_points": 512}}, "data.num_points", "pointcloud"),
    ({"model": {"k": 16}}, "model.k", "pointcloud"),
])
def test_key_of_the_other_modality_is_named(data, key, other):
    with pytest.raises(ConfigError) as err:
        from_dict(data, source="x.yaml")
    msg = str(err.value)
    assert key in msg and f"{other}-only" in msg and "x.yaml" in msg


def test_unknown_key_still_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'data.num_points'"):
        from_dict({"modality": "pointcloud", "data": {"num_point": 5}})


def test_point_values_checked():
    with pytest.raises(ConfigError, match="model.k"):
        from_dict({"modality": "pointcloud", "data": {"num_points": 16}, "model": {"k": 20}})
    with pytest.raises(ConfigError, match="train.optimizer"):
        from_dict({"modality": "pointcloud", "train": {"optimizer": "rmsprop"}})
    with pytest.raises(ConfigError, match="method.pod"):
        from_dict({"modality": "pointcloud", "method": {"name": "plop", "pod": "local"}})


def test_point_presets_leave_pod_off_and_user_pod_is_refused():
    cfg = from_dict({"modality": "pointcloud"})
    for name in ("plop", "lgkd"):
        cfg.method.name = name
        m = resolve_method(cfg.method, dataset="s3dis", modality="pointcloud")
        assert m.pod == "none" and m.kd == ("lgkd" if name == "lgkd" else "none")
        assert resolve_method(cfg.method, dataset="voc", modality="image").pod == "local"
    cfg.method.pod = "local"
    with pytest.raises(ConfigError, match="method.pod"):
        resolve_method(cfg.method, dataset="s3dis", modality="pointcloud")


def test_every_shipped_pointcloud_config_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("s3dis/*.yaml")) + sorted(root.glob("scannet/*.yaml"))
    assert len(files) >= 2 * (4 * 2 * 6 + 2)  # 4 splits x 2 orders x 6 methods, base and joint
    splits = {"s3dis": ["12-1", "10-3", "8-5", "8-1"], "scannet": ["19-1", "17-3", "15-5", "15-1"]}
    for f in files:
        cfg = load_config(f)
        assert cfg.modality == "pointcloud" and cfg.train.optimizer == "adam" and cfg.train.batch_size == 32
        assert cfg.data.dataset == f.parent.name
        resolve_method(cfg.method, dataset=cfg.data.dataset, protocol=cfg.protocol, modality=cfg.modality)
    # Every table row (FT, F&A, EWC, LwF, 3DPC-CISS, LGKD) for every split and both class orders.
    for dataset, names in splits.items():
        for split in names:
            for order in ("", "_s1"):
                for method in ("ft", "fa", "ewc", "lwf", "3dpc-ciss", "lgkd"):
                    cfg = load_config(root / dataset / f"{split}{order}_{method}.yaml")
                    # The LwF row is the paper's LwF* (docs/pointcloud-baselines.md#lwf-3dpc).
                    preset = "lwf-3dpc" if method == "lwf" else method
                    assert (cfg.task.name, cfg.method.name) == (f"{split}{order}", preset)
                    if method == "ewc":  # the published EWC* weight on points, not the image code's 100
                        assert cfg.method.reg_importance == 1.0


# --- optimiser and schedule ---------------------------------------------------------------------

def test_step_schedule_by_epochs():
    f = step_lambda(iters_per_epoch=3, step_epochs=2, gamma=0.5)
    # iterations 0..5 are epochs 0-1 (factor 1), 6..11 epochs 2-3 (0.5), 12.. epochs 4-5 (0.25)
    assert [f(i) for i in (0, 5, 6, 11, 12, 17, 18)] == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]
    s = TrainSettings(epochs=6, lr=1.0, batch_size=2, schedule="step", lr_step=2, lr_gamma=0.5)
    assert build_schedule(s, 3, 18)(6) == 0.5


def test_poly_schedule_unchanged():
    s = TrainSettings(epochs=1, lr=1.0, batch_size=2)
    f = build_schedule(s, 10, 10)
    assert f(0) == 1 and math.isclose(f(5), 0.5 ** 0.9) and f(10) == 0
    assert poly_lambda(10, 0.9)(5) == f(5)


def test_adam_with_coupled_weight_decay_and_sgd_nesterov():
    model = torch.nn.Linear(3, 2)
    adam = build_optimizer(model, TrainSettings(epochs=1, lr=1e-3, batch_size=2, optimizer="adam",
                                                weight_decay=1e-4))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["weight_decay"] == 1e-4
    assert not adam.defaults.get("decoupled_weight_decay", False)
    sgd = build_optimizer(model, TrainSettings(epochs=1, lr=0.1, batch_size=2))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9

"""Config loading: inheritance, overrides, validation errors (css.config)."""

from pathlib import Path

import pytest
import yaml

from css.config.schema import Config, step_value
from css.config.build import load_config, save_config
from css.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "a" / "base.yaml", {"seed": 1, "train": {"lr": 0.5, "epochs": 3, "step0": {"lr": 0.9}},
                                         "data": {"dataset": "ade", "scale": [0.5, 2.0]}})
    child = write(tmp_path / "a" / "child.yaml", {"base": "base.yaml", "train": {"epochs": 7},
                                                  "data": {"scale": [1.0, 1.0]}})
    cfg = load_config(child, ["train.lr=0.25", "method.prev_kd=5", "task.name=100-50"])
    assert cfg.seed == 1 and cfg.train.epochs == 7 and cfg.train.lr == 0.25
    assert cfg.train.step0.lr == 0.9  # mappings merge key by key
    assert cfg.data.scale == [1.0, 1.0]  # lists are replaced
    assert cfg.data.dataset == "ade" and cfg.method.prev_kd == 5.0 and cfg.task.name == "100-50"
    assert step_value(cfg, "lr", 0) == 0.9 and step_value(cfg, "lr", 1) == 0.25
    assert step_value(cfg, "batch_size", 0) == cfg.train.batch_size  # no step-0 override


def test_unknown_key_names_closest(tmp_path):
    f = write(tmp_path / "c.yaml", {"train": {"learning_rate": 0.1, "lr": 0.1}})
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "train.learning_rate" in str(e.value) and str(f) in str(e.value)
    with pytest.raises(ConfigError, match=r"did you mean 'method.prev_kd'"):
        load_config(None, ["method.prev_kdd=1"])
    with pytest.raises(ConfigError, match=r"did you mean 'train'"):
        load_config(None, ["trian.lr=1"])


@pytest.mark.parametrize("override, needle", [
    ("train.lr=abc", "train.lr: expected a number"),
    ("train.epochs=1.5", "train.epochs: expected an integer"),
    ("data.overlap=maybe", "data.overlap: expected true or false"),
    ("model.norm=groupnorm", "model.norm: 'groupnorm' is not one of iabn_sync, iabn, bn"),
    ("train.precision=fp8", "train.precision"),
    ("train.batch_size=0", "train.batch_size must be positive"),
    ("model.output_stride=32", "output_stride must be 8 or 16"),
    ("trainlr", "must look like key.sub=value"),
])
def test_bad_values(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_missing_file_and_loop(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "x.yaml", {"base": "y.yaml"})
    write(tmp_path / "y.yaml", {"base": "x.yaml"})
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "x.yaml")
    write(tmp_path / "bad.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "bad.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.lr=0.3", "task.steps=[[0, 1], [2]]"])
    save_config(cfg, tmp_path / "r.yaml")
    again = load_config(tmp_path / "r.yaml")
    assert again == cfg and isinstance(again, Config)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_shipped_configs_load(path):
    cfg = load_config(ROOT / path)
    assert cfg.method.name
    assert cfg.train.batch_size > 0


def test_user_example_config_is_lgkd_voc_15_1():
    cfg = load_config(ROOT / "configs" / "voc_15-1.yaml")
    assert (cfg.data.dataset, cfg.task.name, cfg.method.name) == ("voc", "15-1", "lgkd")
    assert (cfg.method.prev_kd, cfg.method.novel_kd) == (1.0, 0.0)  # docs/protocol-2d.md#hyper-parameters
    assert (cfg.train.step0.batch_size, cfg.train.batch_size) == (16, 24)  # 2 GPUs x (8, 12)
    assert (cfg.train.step0.lr, cfg.train.lr, cfg.train.epochs) == (0.01, 0.001, 30)


@pytest.mark.parametrize("norm", ["iabn", "iabn_sync"])
def test_bf16_with_inplace_abn_is_refused_with_a_fix(norm):
    # InPlaceABN has no bfloat16 kernels (its CUDA forward fails mid-run); say so before training.
    with pytest.raises(ConfigError, match=rf"train.precision: bf16 .*model.norm: {norm}.*fp16.*model.norm=bn"):
        load_config(None, ["train.precision=bf16", f"model.norm={norm}"])
    assert load_config(None, ["train.precision=bf16", "model.norm=bn"]).train.precision == "bf16"
    assert load_config(None, ["train.precision=fp16", f"model.norm={norm}"]).model.norm == norm


@pytest.mark.parametrize("value", ["[]", "[1, 0]"])
def test_pod_scales_must_be_positive(value):
    with pytest.raises(ConfigError, match=r"method.pod_scales must be a non-empty list of positive integers"):
        load_config(None, [f"method.pod_scales={value}"])
    assert load_config(None, ["method.pod_scales=[1, 2]"]).method.pod_scales == [1, 2]

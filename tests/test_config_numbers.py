"""Number keys in YAML files and overrides: scientific notation, whole numbers for int keys, NaN and
infinity refused (docs/config.md#numbers)."""

from pathlib import Path

import pytest

from css.config.build import load_config
from css.errors import ConfigError


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("raw, expected", [
    ("1e-3", 0.001), ("2E5", 200000.0), ("-1e-4", -0.0001), ("1e+3", 1000.0), ("1.5e3", 1500.0),
    (".5e1", 5.0), ("1.0e-3", 0.001), ("0.25", 0.25), ("3", 3.0),
])
def test_float_keys_take_scientific_notation(tmp_path, raw, expected):
    cfg = load_config(None, [f"train.weight_decay={raw}", f"method.loss_kd={raw}", f"data.scale=[{raw}, 2]"])
    assert cfg.train.weight_decay == expected and type(cfg.train.weight_decay) is float
    assert cfg.method.loss_kd == expected and cfg.data.scale == [expected, 2.0]
    f = _file(tmp_path, f"train:\n  weight_decay: {raw}\nmethod:\n  prev_kd: {raw}\n")
    cfg = load_config(f)
    assert cfg.train.weight_decay == expected and cfg.method.prev_kd == expected


def test_lr_in_scientific_notation(tmp_path):
    """The issue's case: train.lr=1e-3 was refused ("expected a number, got '1e-3'")."""
    assert load_config(None, ["train.lr=1e-3", "train.step0.lr=5E-2"]).train.lr == 0.001
    cfg = load_config(_file(tmp_path, "train:\n  lr: 1e-3\n  step0:\n    lr: 5E-2\n"))
    assert cfg.train.lr == 0.001 and cfg.train.step0.lr == 0.05  # float | None key


@pytest.mark.parametrize("raw, expected", [("1e3", 1000), ("2E2", 200), ("1.0e+3", 1000), ("1.5e1", 15),
                                           ("12345678901234567e0", 12345678901234567), ("30", 30)])
def test_int_keys_take_whole_numbers_in_scientific_notation(tmp_path, raw, expected):
    cfg = load_config(None, [f"train.epochs={raw}", f"seed={raw}", f"train.max_iters_per_epoch={raw}"])
    assert cfg.train.epochs == expected and type(cfg.train.epochs) is int
    assert cfg.seed == expected and cfg.train.max_iters_per_epoch == expected  # int | None key
    cfg = load_config(_file(tmp_path, f"train:\n  epochs: {raw}\n  step0:\n    batch_size: {raw}\n"))
    assert cfg.train.epochs == expected and cfg.train.step0.batch_size == expected


@pytest.mark.parametrize("raw", ["1.5", "1e-3", "2.5e0", "1.5e-1"])
def test_int_keys_refuse_fractions(tmp_path, raw):
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        load_config(None, [f"train.epochs={raw}"])
    f = _file(tmp_path, f"train:\n  epochs: {raw}\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer") as e:
        load_config(f)
    assert str(f) in str(e.value)


@pytest.mark.parametrize("raw", [".nan", ".NaN", ".inf", "-.inf", "+.inf", "nan", "inf", "-inf", "NaN",
                                 "Infinity", "'.nan'"])
@pytest.mark.parametrize("key", ["train.lr", "method.loss_kd", "train.step0.lr", "train.epochs", "seed",
                                 "train.max_iters_per_epoch", "method.reg_iterations"])
def test_nan_and_infinity_are_refused_for_every_number_key(tmp_path, key, raw):
    with pytest.raises(ConfigError, match="not a finite number") as e:
        load_config(None, [f"{key}={raw}"])
    assert key in str(e.value)
    *parents, last = key.split(".")
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f"{'  ' * len(parents)}{last}: {raw}\n"
    f = _file(tmp_path, text)
    with pytest.raises(ConfigError, match="not a finite number") as e:
        load_config(f)
    assert key in str(e.value) and str(f) in str(e.value)


def test_nan_in_a_list_of_numbers_is_refused():
    with pytest.raises(ConfigError, match=r"data\.scale\[1\]: .*not a finite number"):
        load_config(None, ["data.scale=[0.5, .nan]"])


@pytest.mark.parametrize("raw", ["abc", "e5", "1e", "1e3.5", "0x1p3", "1_0e3"])
def test_other_strings_are_not_numbers(raw):
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number"):
        load_config(None, [f"train.lr={raw}"])


def test_string_keys_keep_scientific_text():
    assert load_config(None, ["task.name=1e3"]).task.name == "1e3"

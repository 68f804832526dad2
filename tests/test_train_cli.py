"""``python -m css.train`` argument handling: overrides anywhere on the line, a backwards --steps
range and a missing --init-step0 file (docs/controller.md#command-line)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import css.controller.steps
from css import train
from css.errors import CheckpointError, ConfigError

from _tiny import write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def calls(monkeypatch):
    """Replace the controller: record what css.train hands it."""
    seen = []
    monkeypatch.setattr(css.controller.steps, "run_from_config",
                        lambda cfg, **kw: seen.append((cfg, kw)))
    return seen


def test_overrides_after_and_between_options(tmp_path, calls):
    cfg = write_config(tmp_path)
    assert train.main(["--config", str(cfg), "--steps", "0", "train.lr=0.1"]) == 0
    got, kw = calls[-1]
    assert got.train.lr == 0.1 and kw["steps"] == "0"
    assert train.main(["seed=3", "--config", str(cfg), "train.lr=0.2", "--steps", "0-1", "train.epochs=5",
                       "--modality", "image", "name=x"]) == 0
    got, kw = calls[-1]
    assert (got.seed, got.train.lr, got.train.epochs, got.name, kw["steps"]) == (3, 0.2, 5, "x", "0-1")


@pytest.mark.parametrize("steps", ["2-0", "1-0", "0,3-1"])
def test_backwards_steps_range_is_an_error(tmp_path, calls, steps):
    cfg = write_config(tmp_path)
    with pytest.raises(ConfigError) as e:
        train.main(["--config", str(cfg), "--steps", steps])
    assert "--steps" in str(e.value) and "backwards" in str(e.value) and not calls
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("steps", ["0-1", "1-1", "0,1", "1", None])
def test_forward_steps_pass_to_the_controller(tmp_path, calls, steps):
    argv = ["--config", str(write_config(tmp_path))] + (["--steps", steps] if steps else [])
    assert train.main(argv) == 0 and calls[-1][1]["steps"] == steps


def test_missing_init_step0_is_named_before_a_run_folder_exists(tmp_path, calls):
    cfg = write_config(tmp_path)
    missing = tmp_path / "nope" / "model.pt"
    with pytest.raises(CheckpointError, match="^" + re.escape(f"--init-step0 {missing}: file not found")):
        train.main(["--config", str(cfg), "--init-step0", str(missing)])
    with pytest.raises(CheckpointError, match="is a folder"):
        train.main(["--config", str(cfg), "--init-step0", str(tmp_path)])
    backbone = tmp_path / "end_base_model_checkpoint.tar"
    torch.save({"params": {}}, backbone)  # readable: an empty file is refused too (test_failed_start)
    pair = f"{backbone},{tmp_path / 'cls.tar'}"  # the point-cloud 'BACKBONE,CLASSIFIER' form
    with pytest.raises(CheckpointError, match=r"\(.*cls\.tar\): file not found"):
        train.main(["--config", str(cfg), "--init-step0", pair])
    assert not calls and not (tmp_path / "runs").exists()
    torch.save({"params": {}}, tmp_path / "cls.tar")
    assert train.main(["--config", str(cfg), "--init-step0", pair]) == 0
    assert calls[-1][1]["init_step0"] == pair


def test_cli_reports_missing_init_step0_with_exit_2(tmp_path):
    cfg = write_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-m", "css.train", "--config", str(cfg), "--init-step0", "gone.pth",
                           "--steps", "0", "train.lr=0.1"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--init-step0 gone.pth: file not found" in proc.stderr
    assert not (tmp_path / "runs").exists()

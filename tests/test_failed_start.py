"""A start that fails leaves no half-made run folder, through the CLI (exit status 2, one clean line),
for both modalities (docs/controller.md#failed-starts); --init-step0 over a finished step 0 needs
--replace-step0, and a regularised method refuses an imported step 0 without the regulariser's state
(docs/controller.md#command-line)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from css.config.build import load_config
from css.controller.steps import run_from_config
from css.errors import ConfigError

from _pc_fixtures import make_s3dis
from _pc_tiny import write_pc_config
from _run_folder import digest, finished_run, make_config, results
from _tiny import TINY, write_config

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.run([sys.executable, "-m", "css.train", *map(str, args)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_clean_refusal(proc, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for phrase in phrases:
        assert phrase in proc.stderr, (phrase, proc.stderr[-3000:])


def test_a_missing_image_data_root_leaves_no_run_folder(tmp_path):
    missing = tmp_path / "no_such_voc"
    cfg = write_config(tmp_path, name="voc", data={"dataset": "voc", "root": str(missing), "options": {}},
                       task={"name": "15-5"})
    proc = cli(tmp_path, "--config", cfg)
    assert_clean_refusal(proc, f"voc dataset root (data.root) not found: {missing}")
    assert not (tmp_path / "runs").exists()


def test_a_bad_data_value_found_while_building_the_dataset_leaves_no_run_folder(tmp_path):
    """data.options is checked only when the voc split is built (after the run folder was prepared)."""
    (tmp_path / "voc").mkdir()
    cfg = write_config(tmp_path, name="opts", data={"dataset": "voc", "root": str(tmp_path / "voc"),
                                                    "options": {"size": 3}}, task={"name": "15-5"})
    proc = cli(tmp_path, "--config", cfg, "--steps", "0")
    assert_clean_refusal(proc, "the voc dataset takes no data.options, got ['size']")
    assert not (tmp_path / "runs").exists()


def _damaged(path: Path, kind: str) -> Path:
    if kind == "garbage":  # what torch reads as a legacy pickle: "invalid load key"
        path.write_bytes(b"not a checkpoint")
    else:  # a download cut short: a zip archive without its directory
        torch.save({"model": {"w": torch.zeros(64)}}, path)
        path.write_bytes(path.read_bytes()[:200])
    return path


@pytest.mark.parametrize("modality", ["image", "pointcloud"])
@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_an_unreadable_init_step0_file_leaves_no_run_folder(tmp_path, modality, kind):
    """The message names the flag and the file, says what --init-step0 takes and how to fix it."""
    bad = _damaged(tmp_path / "step0.pth", kind)
    config = write_config(tmp_path) if modality == "image" else write_pc_config(tmp_path)
    arg = str(bad)
    if modality == "pointcloud":  # the 3DPC-CISS pair, whose classifier file is the damaged one
        backbone = tmp_path / "end_base_model_checkpoint.tar"
        torch.save({"params": {}}, backbone)
        arg = f"{backbone},{bad}"
    proc = cli(tmp_path, "--config", config, "--init-step0", arg)
    where = f"--init-step0 {arg}" + (f" ({bad})" if modality == "pointcloud" else "")
    assert_clean_refusal(proc, f"{where}: cannot read checkpoint {bad}: ",
                         "invalid load key" if kind == "garbage" else "central directory",
                         "--init-step0 takes a torch checkpoint of a step-0 model: runs/NAME/step0/model.pt or a "
                         "released step-0 file", "Fix: download the file again",
                         "or point --init-step0 at the right file")
    assert "mmap" not in proc.stderr  # the plain load's complaint, not the mmap attempt's
    assert not (tmp_path / "runs").exists()


def test_an_unreadable_init_step0_file_through_python_names_what_is_expected(tmp_path, capfd):
    """run_from_config(init_step0=...) skips the CLI's check: the importer's own message gives the fix,
    without the warning that the file 'needs full unpickling'."""
    from css.errors import CheckpointError

    bad = _damaged(tmp_path / "step0.pth", "garbage")
    with pytest.raises(CheckpointError) as info:
        run_from_config(load_config(write_config(tmp_path)), init_step0=str(bad))
    text = str(info.value)
    assert text.startswith(f"cannot read checkpoint {bad} (invalid load key")
    assert "Expected a css step checkpoint (RUN/stepT/model.pt), an LGKD/PLOP/MiB checkpoint" in text
    assert "Fix: download the file again" in text and "--init-step0" in text
    out, err = capfd.readouterr()  # the run's log goes to the console ("css" does not propagate)
    assert "full unpickling" not in out + err
    assert not (tmp_path / "runs").exists()


def test_a_missing_point_cloud_split_leaves_no_run_folder(tmp_path):
    make_s3dis(tmp_path / "s3dis")
    (tmp_path / "s3dis" / "test.h5").unlink()
    cfg = write_pc_config(tmp_path, name="pc", data={"dataset": "s3dis", "root": str(tmp_path / "s3dis"),
                                                     "options": {}}, task={"name": "12-1"})
    proc = cli(tmp_path, "--config", cfg, "--steps", "0")
    assert_clean_refusal(proc, f"s3dis test split {tmp_path / 's3dis' / 'test.h5'} not found")
    assert not (tmp_path / "runs").exists()


def test_an_existing_run_folder_is_kept_after_a_failed_start(tmp_path):
    """Only a folder this command made is removed: an earlier run's files stay."""
    cfg = write_config(tmp_path, name="kept", data={"dataset": "voc", "root": str(tmp_path / "gone"),
                                                    "options": {}}, task={"name": "15-5"})
    run = tmp_path / "runs" / "kept"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    assert cli(tmp_path, "--config", cfg).returncode == 2
    assert (run / "notes.txt").read_text() == "mine"


# --- --init-step0 on a finished step 0 -----------------------------------------------------------

@pytest.fixture(scope="module")
def full(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    return tmp, finished_run(tmp, "image")


def test_init_step0_over_a_finished_step0_is_refused(full, tmp_path):
    tmp, run = full
    model0 = run / "step0" / "model.pt"
    before = {p.name: digest(p) for p in run.rglob("*.pt")}
    with pytest.raises(ConfigError) as e:
        run_from_config(make_config("image", tmp, "full"), init_step0=str(model0))
    text = str(e.value)
    assert f"step 0 of run folder {run} is already finished ({model0})" in text
    assert "add --replace-step0" in text and "steps [1] were trained from it" in text
    assert {p.name: digest(p) for p in run.rglob("*.pt")} == before and not (run / "run.lock").exists()


def test_replace_step0_imports_and_retrains_the_later_steps(full, tmp_path):
    tmp, run = full
    import shutil

    copy = tmp / "runs" / "replaced"
    shutil.copytree(run, copy)
    other = tmp_path / "other.pt"  # another step-0 model: the finished one with its head zeroed
    obj = torch.load(run / "step0" / "model.pt", weights_only=False)
    heads = [k for k in obj["model"] if k.startswith("cls.")]
    assert heads
    obj["model"] = {k: (torch.zeros_like(v) if k in heads else v) for k, v in obj["model"].items()}
    torch.save(obj, other)
    run_from_config(make_config("image", tmp, "replaced"), init_step0=str(other), replace_step0=True)
    for step in (0, 1):
        assert (copy / f"step{step}" / "model.pt.replaced").is_file()
    new0 = torch.load(copy / "step0" / "model.pt", weights_only=False)
    assert new0["trained"] is False
    assert all(torch.equal(new0["model"][k], obj["model"][k]) for k in obj["model"])
    assert torch.load(copy / "step1" / "model.pt", weights_only=False)["trained"] is True
    assert [s["step"] for s in results(copy)["steps"]] == [0, 1]  # one entry per step, of the new models


def test_replace_step0_needs_init_step0(tmp_path):
    from css import train

    with pytest.raises(ConfigError, match="--replace-step0 replaces a finished step 0 with the model of --init-step0"):
        train.main(["--config", str(write_config(tmp_path)), "--replace-step0"])
    assert not (tmp_path / "runs").exists()


# --- --init-step0 with EWC, RW, PI -----------------------------------------------------------------

def _method_config(tmp: Path, name: str, method: str) -> Path:
    cfg = {**TINY, "name": name, "method": {"name": method}, "output_dir": str(tmp / "runs")}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("method", ["ewc", "pi"])
def test_a_regularised_method_refuses_an_import_without_its_state(full, tmp_path, method):
    """The lgkd run's step-0 model records no regulariser state: EWC/PI would train step 1 without
    their penalty, so the CLI refuses before it makes a run folder."""
    _, run = full
    proc = cli(tmp_path, "--config", _method_config(tmp_path, "reg", method), "--init-step0",
               run / "step0" / "model.pt")
    assert_clean_refusal(proc, f"--init-step0 {run / 'step0' / 'model.pt'}: method '{method}' trains step 1",
                         f"100 x {method.upper()}", "a css checkpoint trained without a regulariser",
                         "leave out --init-step0")
    assert not (tmp_path / "runs").exists()


def test_a_regularised_method_keeps_the_state_of_an_imported_css_step0(tmp_path):
    """A css step 0 trained with EWC carries its Fisher and parameters: imported, step 1 trains with
    exactly that penalty state."""
    from css.config.build import load_config

    run_from_config(load_config(_method_config(tmp_path, "src", "ewc")), steps="0")
    model0 = tmp_path / "runs" / "src" / "step0" / "model.pt"
    saved = torch.load(model0, weights_only=False)["regularizer"]
    assert saved["kind"] == "ewc"
    run_from_config(load_config(_method_config(tmp_path, "dst", "ewc")), init_step0=str(model0))
    dst = tmp_path / "runs" / "dst"
    got = torch.load(dst / "step0" / "model.pt", weights_only=False)["regularizer"]
    assert got["kind"] == "ewc" and got["fisher"].keys() == saved["fisher"].keys()
    assert all(torch.equal(got["fisher"][k], saved["fisher"][k]) for k in saved["fisher"])
    history = torch.load(dst / "step1" / "model.pt", weights_only=False)["history"]
    assert len(history) == 2 and all("reg" in e["terms"] and e["terms"]["reg"] > 0 for e in history)


def test_an_error_once_training_began_keeps_the_new_run_folder_and_its_log(tmp_path, monkeypatch):
    """Only a failure before training began removes the folder: a non-finite loss in the first
    iteration of a new run (no resume.pt yet) leaves log.txt with the error for the user to read."""
    from css.methods import objective as methods
    from css.errors import TrainingError

    real = methods.Objective.__call__

    def nan_loss(self, new, old, labels, **kwargs):
        loss, terms = real(self, new, old, labels, **kwargs)
        return loss * float("nan"), terms

    monkeypatch.setattr(methods.Objective, "__call__", nan_loss)
    cfg = write_config(tmp_path, name="nan")
    from css.config.build import load_config

    with pytest.raises(TrainingError, match="non-finite loss at step 0, epoch 1"):
        run_from_config(load_config(cfg), steps="0")
    run = tmp_path / "runs" / "nan"
    assert not list(run.glob("step*/resume.pt"))  # nothing was saved, yet the folder stays
    assert (run / "log.txt").is_file() and (run / "config.yaml").is_file()
    assert "step 0: " in (run / "log.txt").read_text()  # what the run logged before the error
    assert not (run / "run.lock").exists()

"""Config identity lives in the checkpoints (docs/controller.md#config-identity), and --redo-from
retrains step T and later under a new config, keeping the steps before T (docs/controller.md#redo-from).
Both modalities."""

import pytest
import yaml

from css.controller import steps as controller
from css.controller.steps import run_from_config
from css.errors import CSSError

from _run_folder import (BASE_LR, MODALITIES, copy_run, crash_in_step1_epoch1, digest, finished_run, ious,
                         make_config, no_training, results, saved_config)


@pytest.fixture(scope="module", params=MODALITIES)
def full(request, tmp_path_factory):
    """(modality, folder, finished 2-step run folder)."""
    tmp = tmp_path_factory.mktemp(f"full_{request.param}")
    return request.param, tmp, finished_run(tmp, request.param)


def _cfg(full, tmp, name, **sections):
    modality, root, _ = full
    return make_config(modality, tmp, name, root / "pc_data", **sections)


def _lr_change(full) -> tuple[float, float, str]:
    old = BASE_LR[full[0]]
    return old, old / 2, rf"train.lr: {old!r} -> {old / 2!r}"


@pytest.mark.parametrize("damage", ["deleted", "empty"])
def test_a_lost_config_yaml_does_not_hide_a_changed_key(full, tmp_path, damage):
    run = copy_run(full[2], tmp_path, "run")
    if damage == "deleted":
        (run / "config.yaml").unlink()
    else:
        (run / "config.yaml").write_text("")
    old, new, change = _lr_change(full)
    with pytest.raises(CSSError, match=rf"different config \({change}\)") as err:
        run_from_config(_cfg(full, tmp_path, "run", train={"lr": new}))
    assert str(run / "step1" / "model.pt") in str(err.value) and "--redo-from" in str(err.value)


@pytest.mark.parametrize("damage", ["empty", "corrupt", "truncated", "deleted"])
def test_an_unreadable_config_yaml_is_rebuilt_and_the_run_resumes(full, tmp_path, monkeypatch, damage):
    run = copy_run(full[2], tmp_path, "run")
    path = run / "config.yaml"
    text = path.read_text()
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text({"empty": "", "corrupt": "train: {lr: [0.01\n", "truncated": text[: len(text) // 2]}[damage])
    no_training(monkeypatch)
    before = len((run / "log.txt").read_text())
    run_from_config(_cfg(full, tmp_path, "run"))
    warnings = [line for line in (run / "log.txt").read_text()[before:].splitlines() if " WARNING " in line]
    assert any(str(path) in line for line in warnings), warnings  # the warning names the file
    rebuilt = yaml.safe_load(path.read_text())
    recorded = saved_config(run / "step1" / "model.pt")
    for key in ("name", "output_dir"):  # the copy's own name and folder
        rebuilt.pop(key), recorded.pop(key)
    assert rebuilt == recorded


def test_keys_that_do_not_change_results_may_change(full, tmp_path, monkeypatch):
    """The folder is the name (a copied run resumes under its new name and output_dir); workers,
    the logging interval, the device, the cache folder and the data folder do not change results."""
    run = copy_run(full[2], tmp_path, "moved")
    no_training(monkeypatch)
    before = len((run / "log.txt").read_text())
    cfg = _cfg(full, tmp_path, "moved", device="auto", data={"num_workers": 1, "cache_dir": str(tmp_path / "c")},
               train={"log_interval": 1})
    run_from_config(cfg)
    assert (run / "log.txt").read_text()[before:].count("already finished") == 2


def test_an_interrupted_step_records_its_config_in_resume_pt(full, tmp_path, monkeypatch):
    cfg = _cfg(full, tmp_path, "part")
    crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(cfg)
    run = tmp_path / "runs" / "part"
    (run / "config.yaml").unlink()
    (run / "step0" / "model.pt").rename(run / "step0.pt")  # only resume.pt can tell
    old, new, change = _lr_change(full)
    with pytest.raises(CSSError, match=rf"different config \({change}\)") as err:
        run_from_config(_cfg(full, tmp_path, "part", train={"lr": new}), steps="1")
    assert str(run / "step1" / "resume.pt") in str(err.value)


def test_redo_from_keeps_earlier_steps_and_records_each_steps_config(full, tmp_path, monkeypatch):
    modality, root, original = full
    run = copy_run(original, tmp_path, "redo")
    old, new, change = _lr_change(full)
    lowered = _cfg(full, tmp_path, "redo", train={"lr": new})
    with pytest.raises(CSSError, match=rf"different config \({change}\).*--redo-from T"):
        run_from_config(lowered)
    step0, step1 = digest(run / "step0" / "model.pt"), digest(run / "step1" / "model.pt")
    # Interrupted during the redone step, then the same command again: it resumes, it does not restart.
    undo = crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(lowered, redo_from=1)
    assert digest(run / "step1" / "model.pt.replaced") == step1 and not (run / "step1" / "model.pt").exists()
    assert [s["step"] for s in results(run)["steps"]] == [0]
    undo()
    run_from_config(lowered, redo_from=1)
    assert "step 1: resuming from" in (run / "log.txt").read_text()
    assert digest(run / "step0" / "model.pt") == step0  # kept
    assert saved_config(run / "step1" / "model.pt")["train"]["lr"] == new
    # Independently: a fresh run with train.step0.lr = the old rate and train.lr = the new one.
    step0_override = {"lr": old, **({"epochs": 2} if modality == "image" else {})}
    run_from_config(_cfg(full, tmp_path, "fresh", train={"lr": new, "step0": step0_override}))
    assert ious(run) == ious(tmp_path / "runs" / "fresh")
    assert ious(run)[0] == ious(original)[0] and digest(run / "step1" / "model.pt") != step1
    steps = results(run)["steps"]
    assert steps[0]["config_hash"] == results(original)["steps"][0]["config_hash"]
    assert steps[1]["config_hash"] != steps[0]["config_hash"]
    assert steps[0]["config_changes"] == [] and steps[1]["config_changes"] == [f"train.lr: {old!r} -> {new!r}"]
    # The same command once more, and the plain command with the new rate: nothing is retrained.
    no_training(monkeypatch)
    run_from_config(lowered, redo_from=1)
    run_from_config(lowered)
    # The old rate is now the different config (step 1 was trained with the new one).
    with pytest.raises(CSSError, match=rf"different config \(train.lr: {new!r} -> {old!r}\)"):
        run_from_config(_cfg(full, tmp_path, "redo"))


def test_redo_from_refuses_changes_outside_the_training_keys(full, tmp_path):
    run = copy_run(full[2], tmp_path, "redo")
    model = {"head_channels": 8} if full[0] == "image" else {"k": 6}
    key = "model.head_channels" if full[0] == "image" else "model.k"
    with pytest.raises(CSSError, match=rf"--redo-from 1 may change the training keys.*not {key}"):
        run_from_config(_cfg(full, tmp_path, "redo", model=model), redo_from=1)
    with pytest.raises(CSSError, match=r"--redo-from 5: step 5 is not among the steps"):
        run_from_config(_cfg(full, tmp_path, "redo"), redo_from=5)
    assert (run / "step1" / "model.pt").is_file()  # refused before anything moved


def test_train_cli_passes_redo_from(tmp_path, monkeypatch):
    from css import train

    seen = {}
    monkeypatch.setattr(controller, "run_from_config", lambda cfg, **kw: seen.update(kw))
    make_config("image", tmp_path, "cli")
    assert train.main(["--config", str(tmp_path / "cli.yaml"), "--redo-from", "1"]) == 0
    assert seen["redo_from"] == 1


def test_switching_on_full_coverage_is_not_a_config_change():
    """data.full_coverage only adds an evaluation (docs/pointcloud-evaluation.md#full-coverage): a run may
    resume with it switched on; a training key beside it still counts."""
    from css.config import identity

    saved = {"modality": "pointcloud", "data": {"full_coverage": None, "num_points": 2048}, "train": {"lr": 0.001}}
    now = {"modality": "pointcloud", "data": {"full_coverage": True, "num_points": 2048}, "train": {"lr": 0.001}}
    assert identity.changes(saved, now) == []
    assert identity.config_hash(saved) == identity.config_hash(now)
    now["data"]["num_points"] = 4096
    assert identity.changes(saved, now) == [("data.num_points", 2048, 4096)]

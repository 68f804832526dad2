"""Recovery of a run folder (docs/controller.md#recovery), both modalities: a truncated or empty
resume.pt restarts its step, a truncated model.pt names the file to delete, temporary files of an
interrupted save are removed, a finished step is known from its checkpoint (a lost or corrupt
results.json is rebuilt by re-evaluation, not by retraining), and ``css.evaluate RUN --write``
rebuilds the results files from the checkpoints."""

import json
import logging
import os
import socket
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from css import evaluate as ev
from css.controller.steps import run_from_config
from css.distributed import DistEnv
from css.engine.trainer import Trainer
from css.engine.settings import TrainSettings
from css.errors import CheckpointError, CSSError

from _run_folder import (MODALITIES, copy_run, crash_in_step1_epoch1, digest, finished_run, ious, make_config,
                         no_training, results, truncate)


@pytest.fixture(scope="module", params=MODALITIES)
def full(request, tmp_path_factory):
    """(modality, folder, finished 2-step run folder)."""
    tmp = tmp_path_factory.mktemp(f"full_{request.param}")
    return request.param, tmp, finished_run(tmp, request.param)


def _cfg(full, tmp, name, **sections):
    return make_config(full[0], tmp, name, full[1] / "pc_data", **sections)


def _new_log(run, before: int) -> str:
    return (run / "log.txt").read_text()[before:]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_resume_pt_restarts_its_step(full, tmp_path, monkeypatch, damage):
    cfg = _cfg(full, tmp_path, "part")
    undo = crash_in_step1_epoch1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(cfg)
    undo()
    run = tmp_path / "runs" / "part"
    resume = run / "step1" / "resume.pt"
    if damage == "empty":
        resume.write_bytes(b"")
    else:
        truncate(resume)
    damaged = digest(resume)
    before = len((run / "log.txt").read_text())
    run_from_config(cfg)
    log = _new_log(run, before)
    assert f"{resume} is truncated or corrupt" in log and "restarting step 1 from its beginning" in log
    assert digest(run / "step1" / "resume.pt.corrupt") == damaged and not resume.exists()
    assert "resuming from" not in log
    # Restarted from its beginning, step 1 gives what the uninterrupted run gave.
    assert ious(run) == ious(full[2])


def test_the_trainer_moves_an_unreadable_resume_file_aside(tmp_path, caplog):
    """The engine's own guard (also for a file damaged after the controller's check)."""
    resume = tmp_path / "resume.pt"
    trainer = Trainer(model=torch.nn.Linear(2, 2), old_model=None,
                      objective=SimpleNamespace(thresholds=None, regularizer=None),
                      dataset=TensorDataset(torch.zeros(8, 2), torch.zeros(8)),
                      env=DistEnv(0, 1, 0, torch.device("cpu")),
                      settings=TrainSettings(epochs=2, lr=0.1, batch_size=4), resume_file=resume)
    state = trainer.resume.state(1, trainer.history, {"config_hash": "abc"})
    assert state["config_hash"] == "abc" and state["epoch"] == 1
    resume.write_bytes(b"PK\x03\x04 not a whole file")
    with caplog.at_level(logging.WARNING, logger="css"):
        assert trainer.try_resume() is False
    assert (tmp_path / "resume.pt.corrupt").is_file() and not resume.exists()
    assert "resume.pt is truncated or corrupt" in caplog.text and trainer.start_epoch == 0
    torch.save(state, resume)
    assert trainer.try_resume() is True and trainer.start_epoch == 1


@pytest.mark.parametrize("step", [0, 1])
def test_a_truncated_model_pt_names_the_file_to_delete(full, tmp_path, step):
    run = copy_run(full[2], tmp_path, "run")
    model = run / f"step{step}" / "model.pt"
    truncate(model)
    with pytest.raises(CheckpointError) as err:
        run_from_config(_cfg(full, tmp_path, "run"))
    msg = str(err.value)
    assert f"{model} is truncated or corrupt" in msg and f"Delete {model} to retrain step {step}" in msg
    assert ("add --redo-from 0" in msg) == (step == 0)  # step 1 was trained from step 0
    if step == 1:  # doing what it says retrains step 1, as the original run did
        model.unlink()
        run_from_config(_cfg(full, tmp_path, "run"))
        assert ious(run) == ious(full[2])


def test_temporary_files_of_an_interrupted_save_are_removed(full, tmp_path, monkeypatch):
    run = copy_run(full[2], tmp_path, "run")
    orphans = [run / ".results.json.k2j4h1ab.tmp", run / "step1" / ".model.pt.x8c1m2zq.tmp",
               run / "step0" / ".resume.pt.0a9b8c7d.tmp"]
    for path in orphans:
        path.write_bytes(b"half a save")
    keep = run / "step1" / "notes.tmp"  # not a css temporary file
    keep.write_text("mine")
    no_training(monkeypatch)
    before = len((run / "log.txt").read_text())
    run_from_config(_cfg(full, tmp_path, "run"))
    assert not any(p.exists() for p in orphans) and keep.is_file()
    assert "removed 3 temporary file(s)" in _new_log(run, before)


@pytest.mark.parametrize("damage", ["deleted", "corrupt", "csv_deleted", "csv_corrupt", "entry_missing"])
def test_lost_results_are_rebuilt_without_retraining(full, tmp_path, monkeypatch, damage):
    run = copy_run(full[2], tmp_path, "run")
    original_json, original_csv = results(full[2]), (full[2] / "results.csv").read_text()
    models = {s: digest(run / f"step{s}" / "model.pt") for s in (0, 1)}
    if damage == "deleted":
        (run / "results.json").unlink()
    elif damage == "corrupt":
        (run / "results.json").write_text('{"steps": [{"step": 0, "io')
    elif damage == "csv_deleted":
        (run / "results.csv").unlink()
    elif damage == "csv_corrupt":
        (run / "results.csv").write_text("0,0.5,0.7\n1,0.2,o")
    else:  # a kill between saving model.pt and recording its results
        data = json.loads((run / "results.json").read_text())
        data["steps"] = data["steps"][:1]
        (run / "results.json").write_text(json.dumps(data))
    no_training(monkeypatch)
    before = len((run / "log.txt").read_text())
    run_from_config(_cfg(full, tmp_path, "run"), steps="1")  # step 0 is rebuilt too, outside --steps
    assert {s: digest(run / f"step{s}" / "model.pt") for s in (0, 1)} == models
    assert ious(run) == [s["iou"] for s in original_json["steps"]]
    assert [s["num_test"] for s in results(run)["steps"]] == [s["num_test"] for s in original_json["steps"]]
    assert (run / "results.csv").read_text() == original_csv
    assert ((run / "results.json.corrupt").is_file()) == (damage == "corrupt")
    log = _new_log(run, before)
    expected = {"deleted": 2, "corrupt": 2, "entry_missing": 1}.get(damage, 0)
    assert log.count("re-evaluating it to rebuild the entry") == expected


def test_evaluate_write_rebuilds_the_results_files(full, tmp_path, capsys):
    run = copy_run(full[2], tmp_path, "run")
    original_json, original_csv = results(full[2]), (full[2] / "results.csv").read_text()
    (run / "results.json").unlink()
    (run / "results.csv").write_text("garbage\n")
    (run / "config.yaml").write_text("data: {root: [\n")  # unreadable: the checkpoints' config is used
    assert ev.main([str(run), "--write"]) == 0
    rebuilt = results(run)
    assert [s["iou"] for s in rebuilt["steps"]] == [s["iou"] for s in original_json["steps"]]
    assert [s["config_hash"] for s in rebuilt["steps"]] == [s["config_hash"] for s in original_json["steps"]]
    assert rebuilt["final"] == original_json["final"]
    assert rebuilt["metadata"]["world_size"] == 1 and rebuilt["metadata"]["protocol"] == "fixed"
    assert (run / "results.csv").read_text() == original_csv
    assert "wrote" in capsys.readouterr().out
    # A folder another run holds is not written.
    (run / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "x"}))
    with pytest.raises(CSSError, match="in use by another run"):
        ev.main([str(run), "--write"])
    with pytest.raises(CSSError, match="--write rebuilds the results of a run folder"):
        ev.main([str(run / "step1" / "model.pt"), "--write"])


def test_results_csv_from_the_json_entries_is_the_reference_layout(tmp_path):
    """recording.write_entries_csv writes the reference layout (docs/protocol-2d.md#results-csv): x for
    unseen classes, X for absent ones, oa= for point clouds; append_results_row, through the same
    row rule, writes the same file row by row."""
    from css.results import recording
    from css.results.csvfile import append_results_row

    entries = [{"step": 0, "iou": [0.9, None, 0.25], "mean_iou": 0.575, "summary": {"oa": 0.8}},
               {"step": 1, "iou": [0.8, 0.1, 0.2, 0.3, None], "mean_iou": 0.35, "summary": {"oa": 0.7}}]
    for with_oa, tails in ((False, ("", "")), (True, (",oa=0.8", ",oa=0.7"))):
        expected, got = tmp_path / f"a{with_oa}.csv", tmp_path / f"b{with_oa}.csv"
        recording.write_entries_csv(got, entries, 6, with_oa=with_oa)
        assert got.read_text() == f"0,0.9,X,0.25,x,x,x,0.575{tails[0]}\n1,0.8,0.1,0.2,0.3,X,x,0.35{tails[1]}\n"
        for e in entries:
            append_results_row(expected, e["step"], e["iou"], 6, e["mean_iou"],
                               oa=e["summary"]["oa"] if with_oa else None)
        assert got.read_text() == expected.read_text()

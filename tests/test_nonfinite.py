"""An inf/NaN loss stops training with a TrainingError that names the terms and where, keeps the last
finished epoch's resume.pt, and train.skip_nonfinite skips a few such batches
(docs/controller.md#non-finite-losses)."""

import logging

import pytest
import torch

import css.methods.objective
from css import train
from css.cli import run_cli
from css.config.method import MethodConfig
from css.distributed import DistEnv
from css.engine.trainer import Trainer
from css.engine.settings import TrainSettings
from css.errors import CSSError, TrainingError
from css.methods.objective import Objective
from css.methods.resolve import resolve_method

from _tiny import write_config
from test_engine import TinySeg, _data


def _poison(monkeypatch, bad_calls, term="ce", value=float("nan")):
    """Make the objective's loss (and its term ``term``) non-finite on the given 1-based calls."""
    real = Objective.__call__
    count = {"n": 0}

    def call(self, new, old, labels, **kwargs):
        loss, terms = real(self, new, old, labels, **kwargs)
        count["n"] += 1
        if count["n"] in bad_calls:
            loss = loss * value
            terms = dict(terms, **{term: terms.get(term, loss.detach()) * value})
        return loss, terms

    monkeypatch.setattr(css.methods.objective.Objective, "__call__", call)
    return count


def _trainer(tmp_path, **settings):
    # 16 samples, batch 4: 4 iterations per epoch
    objective = Objective(resolve_method(MethodConfig(name="ft"), dataset="voc"), step=0, num_old=0, num_current=2)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    return Trainer(model=TinySeg(0), old_model=None, objective=objective, dataset=_data(), env=env,
                   settings=TrainSettings(epochs=2, lr=0.01, batch_size=4, seed=0, step=0, **settings),
                   resume_file=tmp_path / "resume.pt")


def test_nonfinite_loss_is_a_training_error(tmp_path, monkeypatch):
    _poison(monkeypatch, {6})  # epoch 2, iteration 2
    trainer = _trainer(tmp_path)
    with pytest.raises(TrainingError) as info:
        trainer.fit()
    assert isinstance(info.value, CSSError)
    msg = str(info.value)
    for part in ("ce=nan", "step 0", "epoch 2/2", "iteration 2", str(tmp_path / "resume.pt"), "resumes",
                 "train.lr", "train.skip_nonfinite=1"):
        assert part in msg, (part, msg)
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["epoch"] == 1


def test_inf_in_the_first_epoch_says_the_step_restarts(tmp_path, monkeypatch):
    _poison(monkeypatch, {1}, term="kd", value=float("inf"))
    with pytest.raises(TrainingError, match=r"epoch 1/2, iteration 1 \(kd=inf\).*restarts step 0"):
        _trainer(tmp_path).fit()
    assert not (tmp_path / "resume.pt").exists()


def test_skip_nonfinite_skips_one_batch(tmp_path, monkeypatch, caplog):
    _poison(monkeypatch, {6})
    trainer = _trainer(tmp_path, skip_nonfinite=1)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with caplog.at_level(logging.WARNING, logger="css"):
        history = trainer.fit()
    assert [h.nonfinite for h in history] == [0, 1] and [h.skipped for h in history] == [0, 1]
    assert [h.iterations for h in history] == [4, 4]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert all(torch.isfinite(torch.tensor(v)) for h in history for v in h.terms.values())
    # the schedule steps on the skipped batch too: 8 scheduler steps in all
    assert trainer.scheduler.last_epoch == 8
    assert any("batch skipped" in r.getMessage() and "ce=nan" in r.getMessage() for r in caplog.records)


def test_skip_nonfinite_budget_is_per_step(tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 7})  # one bad batch in each epoch: the second exceeds the budget of 1
    with pytest.raises(TrainingError, match=r"epoch 2/2, iteration 3.*after skipping 1 such batch.*"
                                            r"train.skip_nonfinite=2"):
        _trainer(tmp_path, skip_nonfinite=1).fit()
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["epoch"] == 1


def test_cli_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    cfg = write_config(tmp_path)  # step 0: 2 epochs of 3 iterations
    _poison(monkeypatch, {5})  # epoch 2, iteration 2
    assert run_cli(train.main, ["--config", str(cfg), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "non-finite loss at step 0, epoch 2/2, iteration 2" in lines[0] and "ce=nan" in lines[0]
    resume = tmp_path / "runs" / "tiny" / "step0" / "resume.pt"
    assert str(resume) in lines[0]
    assert torch.load(resume, weights_only=False)["epoch"] == 1


def test_cli_skip_nonfinite_finishes(tmp_path, monkeypatch, capsys):
    cfg = write_config(tmp_path)
    _poison(monkeypatch, {5})
    assert run_cli(train.main, ["--config", str(cfg), "--steps", "0", "train.skip_nonfinite=1"]) == 0
    assert (tmp_path / "runs" / "tiny" / "step0" / "model.pt").is_file()


def test_rerun_with_skip_nonfinite_resumes(tmp_path, monkeypatch, capsys):
    """The fix the error suggests is accepted on resume (a free key, docs/controller.md#config-identity)."""
    cfg = write_config(tmp_path)
    count = _poison(monkeypatch, {5, 7})  # the first run stops at call 5; the resumed epoch 2 is calls 6-8
    assert run_cli(train.main, ["--config", str(cfg), "--steps", "0"]) == 2
    assert run_cli(train.main, ["--config", str(cfg), "--steps", "0", "train.skip_nonfinite=1"]) == 0, \
        capsys.readouterr().err
    assert count["n"] == 8  # resumed after epoch 1: epoch 2 ran once more, not the whole step
    assert (tmp_path / "runs" / "tiny" / "step0" / "model.pt").is_file()


def test_negative_skip_nonfinite_is_a_config_error(tmp_path):
    from css.config.build import load_config
    from css.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.skip_nonfinite must be >= 0"):
        load_config(write_config(tmp_path, train={"skip_nonfinite": -1}))

"""The optimiser and the learning-rate schedule as the Trainer and the controller use them, against
the reference values worked out by hand (docs/protocol-2d.md#optimiser-and-schedule,
docs/config.md#optimisers): SGD with Nesterov momentum 0.9 and weight decay 1e-4 on every parameter
(norms, biases and every classifier head included, one learning rate for all, as the reference's
body / head / cls groups have), poly 0.9 stepped after every iteration over epochs x iterations, and
for point clouds Adam with coupled L2 and a StepLR by epochs."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from css.engine import trainer as engine
from css.config.build import load_config
from css.controller.steps import run_from_config
from css.distributed import DistEnv
from css.engine.trainer import Trainer
from css.engine.settings import TrainSettings

from _tiny import write_config

CPU = DistEnv(0, 1, 0, torch.device("cpu"))


class Scalar(nn.Module):
    """out = w * x + b: with loss = mean(out) and x = 1 the gradients are exactly 1 for w and b."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([-1.0], dtype=torch.float64))

    def forward(self, x):
        out = self.w * x + self.b
        return SimpleNamespace(logits=out, logits_small=out, features={})


class MeanObjective:
    thresholds = None
    regularizer = None
    needs_thresholds = False
    needs_old_model = False

    def __init__(self):
        self.optimizer, self.lrs = None, []

    def __call__(self, out, old, y, inputs=None):
        if self.optimizer is not None:
            self.lrs.append(self.optimizer.param_groups[0]["lr"])
        loss = out.logits.mean()
        return loss, {"ce": loss.detach()}


def _trainer(tmp_path, **settings) -> Trainer:
    data = TensorDataset(torch.ones(12, 1, dtype=torch.float64), torch.zeros(12))
    return Trainer(model=Scalar(), old_model=None, objective=MeanObjective(), dataset=data, env=CPU,
                   settings=TrainSettings(batch_size=4, seed=0, **settings), resume_file=tmp_path / "resume.pt")


def _record_lrs(trainer: Trainer) -> list[float]:
    """The lr of every update, read by the objective at each iteration (before that update)."""
    trainer.objective.optimizer = trainer.optimizer
    return trainer.objective.lrs


def test_sgd_nesterov_weight_decay_and_poly_per_iteration_by_hand(tmp_path):
    """2 epochs x 3 iterations (12 samples, batch 4): 6 updates with lr_i = 0.1 (1 - i/6)^0.9 of
    PyTorch's Nesterov SGD with L2 weight decay (d = g + wd p; buf = m buf + d; p -= lr (d + m buf))."""
    trainer = _trainer(tmp_path, epochs=2, lr=0.1, weight_decay=1e-4)
    lrs = _record_lrs(trainer)
    history = trainer.fit()
    want_lrs = [0.1 * (1 - i / 6) ** 0.9 for i in range(6)]
    assert lrs == pytest.approx(want_lrs, rel=1e-12)
    assert [h.lr for h in history] == pytest.approx([0.1 * 0.5 ** 0.9, 0.0], abs=1e-15)
    for name, start in (("w", 2.0), ("b", -1.0)):
        p, buf = start, None
        for lr in want_lrs:
            d = 1.0 + 1e-4 * p  # gradient 1, weight decay on the bias too
            buf = d if buf is None else 0.9 * buf + d
            p -= lr * (d + 0.9 * buf)
        assert getattr(trainer.model, name).item() == pytest.approx(p, rel=1e-12), name


def test_step_schedule_by_epochs_for_point_clouds(tmp_path):
    """StepLR by epochs (the point-cloud reference: every 50 epochs x 0.5; here every 2): the lr of
    iteration i is lr 0.5 ** (epoch(i) // 2), 3 iterations per epoch, with Adam and coupled L2."""
    trainer = _trainer(tmp_path, epochs=5, lr=1e-3, optimizer="adam", schedule="step", lr_step=2,
                       lr_gamma=0.5, weight_decay=1e-4)
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 1e-4
    lrs = _record_lrs(trainer)
    trainer.fit()
    assert lrs == [1e-3] * 6 + [5e-4] * 6 + [2.5e-4] * 3


def test_the_controller_trains_every_parameter_with_the_reference_settings(tmp_path, monkeypatch):
    """Through the controller: one SGD group over every trainable parameter of DeepLabV3 (the union
    of the reference's body, head and cls groups, which share lr and weight decay), momentum 0.9,
    Nesterov, weight decay 1e-4, no dampening; the step's own lr (train.step0.lr at step 0); poly
    over epochs x iterations, with iterations = floor(N / batch) (drop_last): the logged lr after
    each epoch is lr (1 - e/E)^0.9."""
    seen = {}
    fit = engine.Trainer.fit

    def keep(self, *args, **kwargs):
        seen[self.settings.step] = self
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(engine.Trainer, "fit", keep)
    train = {"batch_size": 8, "lr": 0.01, "epochs": 2, "max_iters_per_epoch": None, "step0": {"epochs": 3, "lr": 0.02}}
    run_from_config(load_config(write_config(tmp_path, train=train)))
    for step, lr, epochs in ((0, 0.02, 3), (1, 0.01, 2)):
        trainer = seen[step]
        model = trainer.model
        (group,) = trainer.optimizer.param_groups
        assert isinstance(trainer.optimizer, torch.optim.SGD)
        assert (group["momentum"], group["nesterov"], group["weight_decay"], group["dampening"]) == (0.9, True, 1e-4, 0)
        assert group["initial_lr"] == lr
        reference = model.param_groups(lr)  # body, head, cls as the reference builds them
        assert [g["name"] for g in reference] == ["body", "head", "cls"]
        assert all(g["lr"] == lr and g["weight_decay"] == 1e-4 for g in reference)
        assert {id(p) for g in reference for p in g["params"]} == {id(p) for p in group["params"]}
        assert len(model.cls) == step + 1  # the old heads train too (no lr_old in the scripts)
        assert {id(p) for p in model.parameters()} == {id(p) for p in group["params"]}
        n = len(trainer.dataset)
        assert trainer.iters_per_epoch == n // 8 and trainer.max_iters == epochs * (n // 8)
        logged = [h.lr for h in trainer.history]
        assert logged == pytest.approx([lr * (1 - e / epochs) ** 0.9 for e in range(1, epochs + 1)], abs=1e-12)
        assert not math.isnan(logged[0])

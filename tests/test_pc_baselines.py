"""The 3-D baselines besides the 3DPC-CISS loss (docs/pointcloud-baselines.md): freeze and add
(fa), joint training with the reference's best-epoch selection on the test set, and a CLI run of
3dpc-ciss on the tiny synthetic rooms."""

import json
import math

import pytest
import torch
from torch import nn

from css.engine import best_epoch
from css.controller import steps as controller
from css.engine.best_epoch import BestOnTest, best_path, selects_best_on_test
from css.config.method import MethodConfig
from css.config.build import load_config
from css.controller.steps import run_from_config
from css.engine.settings import TrainSettings
from css.engine.schedules import build_optimizer
from css.errors import ConfigError
from css.heads import IncrementalHead, IncrementalModel
from css.methods.objective import Objective
from css.methods.resolve import resolve_method
from css.pointcloud.models import build_model

from _pc_tiny import write_pc_config
from _tiny import write_config


# --- freeze and add ----------------------------------------------------------------------------

def test_fa_preset_is_ft_with_a_frozen_body_on_both_modalities():
    for dataset, modality in (("s3dis", "pointcloud"), ("voc", "image")):
        fa = resolve_method(MethodConfig(name="fa"), dataset=dataset, modality=modality)
        ft = resolve_method(MethodConfig(name="ft"), dataset=dataset, modality=modality)
        assert fa.freeze_body is True and ft.freeze_body is False
        assert {k: v for k, v in vars(fa).items() if k not in ("name", "freeze_body")} == \
               {k: v for k, v in vars(ft).items() if k not in ("name", "freeze_body")}
    assert resolve_method(MethodConfig(name="freeze-and-add"), dataset="s3dis", modality="pointcloud").name == "fa"
    obj = Objective(fa, step=1, num_old=2, num_current=3)
    assert not obj.needs_old_model and "only the new head learns" in obj.describe()


def test_freeze_keeps_the_body_in_eval_mode_and_trains_only_the_new_head():
    model = build_model([4, 2], k=4)
    with pytest.raises(ValueError, match="new head"):
        build_model([4], k=4).freeze_all_but_new_head()
    model.freeze_all_but_new_head()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["cls.1.weight"]
    model.train()  # what the engine calls every epoch
    assert model.training and model.cls[1].training
    assert not any(m.training for name, m in model.named_modules() if name and not name.startswith("cls.1"))
    opt = build_optimizer(model, TrainSettings(epochs=1, lr=1e-3, batch_size=2, optimizer="adam"))
    assert [p for g in opt.param_groups for p in g["params"]] == [model.cls[1].weight]
    model.eval()
    assert not any(m.training for m in model.modules())


def test_freeze_on_a_generic_incremental_model_keeps_batch_norm_statistics():
    class Tiny(IncrementalModel):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv1d(3, 4, 1), nn.BatchNorm1d(4), nn.Dropout(0.5))
            self.cls = IncrementalHead(4, [2, 1], dims=1)

        def forward(self, x):
            return self.cls(self.body(x))

    torch.manual_seed(0)
    model = Tiny()
    model.freeze_all_but_new_head()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x = torch.randn(4, 3, 5)
    assert torch.equal(model(x), model(x))  # dropout off in the frozen body
    out = model(x)
    out.sum().backward()
    assert model.cls[0].weight.grad is None and model.cls[1].weight.grad is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running stats and num_batches_tracked untouched


def _record_hand_over(monkeypatch):
    """Records model(t)'s new head as handed over, before training."""
    seen = {}
    original = controller.hand_over

    def wrapped(*args, **kwargs):
        model, old, prev = original(*args, **kwargs)
        seen[args[3]] = {k: v.clone() for k, v in model.state_dict().items()}
        seen["frozen"] = model.body_frozen
        return model, old, prev

    monkeypatch.setattr(controller, "hand_over", wrapped)
    return seen


def _assert_fa_step(run, seen):
    step0 = torch.load(run / "step0" / "model.pt", weights_only=False)["model"]
    step1 = torch.load(run / "step1" / "model.pt", weights_only=False)["model"]
    assert seen["frozen"]
    for k, v in step0.items():
        assert torch.equal(step1[k], v), k  # body, old head and every BN statistic bit-identical
    new = [k for k in step1 if k.startswith("cls.1.")]
    assert new and all(not torch.equal(step1[k], seen[1][k]) for k in new)  # the new head learnt


def test_fa_point_cloud_step_changes_only_the_new_head(tmp_path, monkeypatch):
    seen = _record_hand_over(monkeypatch)
    run_from_config(load_config(write_pc_config(tmp_path, name="fa", method={"name": "fa"})))
    _assert_fa_step(tmp_path / "runs" / "fa", seen)


def test_fa_image_step_changes_only_the_new_head(tmp_path, monkeypatch):
    seen = _record_hand_over(monkeypatch)
    cfg = write_config(tmp_path, name="fa_img", method={"name": "fa", "prev_kd": None, "novel_kd": None})
    run_from_config(load_config(cfg))
    _assert_fa_step(tmp_path / "runs" / "fa_img", seen)


# --- joint training: best epoch on the test set --------------------------------------------------

def test_best_on_test_resolution(tmp_path):
    cfg = load_config(write_pc_config(tmp_path, protocol="reference"))
    assert selects_best_on_test(cfg, 1) and not selects_best_on_test(cfg, 2)
    cfg.protocol = "fixed"
    assert not selects_best_on_test(cfg, 1)
    cfg.train.select_best_on_test = True
    assert selects_best_on_test(cfg, 2)
    cfg.protocol, cfg.train.select_best_on_test = "reference", False
    assert not selects_best_on_test(cfg, 1)
    cfg.train.select_best_on_test, cfg.modality = None, "image"
    assert not selects_best_on_test(cfg, 1)  # the 3DPC-CISS behaviour only


def test_best_on_test_every_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="train.best_on_test_every"):
        load_config(write_pc_config(tmp_path, train={"best_on_test_every": 0}))


def test_best_on_test_hook_keeps_the_best_and_survives_a_restart(tmp_path):
    model = nn.Linear(2, 1)
    scores = iter([0.5, 0.8, float("nan"), 0.8, 0.3])
    path = tmp_path / "best_on_test.pt"
    hook = BestOnTest(lambda m: next(scores), every=2, path=path, identity="abc")
    states = {}
    for epoch in range(1, 11):
        with torch.no_grad():
            model.weight.fill_(epoch)
        states[epoch] = model.weight.clone()
        hook(epoch, model)
    # Evaluated at epochs 2, 4, 6, 8, 10: 0.5, 0.8, nan, 0.8 (a tie keeps the earlier), 0.3.
    assert hook.best_epoch == 4 and hook.best["score"] == 0.8
    again = BestOnTest(lambda m: 0.0, every=2, path=path, identity="abc")  # a new process after a kill
    assert again.best_epoch == 4
    assert again.restore(model) == 4 and torch.equal(model.weight, states[4])
    other = BestOnTest(lambda m: 0.0, every=2, path=path, identity="another config")
    assert other.best_epoch is None and other.restore(model) is None
    assert best_path(tmp_path / "step0" / "resume.pt") == tmp_path / "step0" / "best_on_test.pt"


def test_a_best_file_of_an_earlier_attempt_is_dropped(tmp_path):
    """A best file whose epoch is not before the first epoch trained now comes from an earlier attempt
    of the step (restart from epoch 0, --redo-from, a resume file moved aside): it must not win."""
    model = nn.Linear(2, 1)
    path = tmp_path / "best_on_test.pt"
    first = BestOnTest(lambda m: 0.9, every=3, path=path, identity="abc")
    for epoch in range(1, 7):
        first(epoch, model)
    assert first.best_epoch == 3  # 0.9 at epoch 3; epoch 6 ties and the earlier one stays
    # The same config restarts the step from epoch 0: the first call is epoch 1.
    restart = BestOnTest(lambda m: 0.2, every=3, path=path, identity="abc")
    assert restart.best_epoch == 3  # loaded, not yet known to be stale
    restart(1, model)
    assert restart.best_epoch is None
    restart(2, model), restart(3, model)
    assert restart.best_epoch == 3 and restart.best["score"] == 0.2  # a lower score than the stale 0.9
    # A resume after epoch 4 keeps a best of epoch 3 (written by this attempt before the kill).
    resumed = BestOnTest(lambda m: 0.1, every=3, path=path, identity="abc")
    resumed(5, model)
    assert resumed.best_epoch == 3 and resumed.best["score"] == 0.2


def test_best_on_test_scores_with_the_sampled_metric_only(tmp_path, monkeypatch):
    """data.full_coverage is for the step's report: the best-epoch evaluations do not pay for it."""
    from css.pointcloud.modality import PointCloudModality

    seen = []
    real = PointCloudModality.evaluate

    def spy(self, model, dataset, cfg, task, step, env):
        seen.append(cfg.data.full_coverage)
        return real(self, model, dataset, cfg, task, step, env)

    monkeypatch.setattr(PointCloudModality, "evaluate", spy)
    cfg = write_pc_config(tmp_path, name="jointfull", task={"name": "offline"}, method={"name": "ft"},
                          train={"epochs": 2, "best_on_test_every": 1}, data={"full_coverage": True},
                          protocol="reference")
    run_from_config(load_config(cfg))
    assert seen == [False, False, True]  # epochs 1 and 2 choose, the step's report has full coverage


def _scripted_joint_run(tmp_path, monkeypatch, scores, **sections):
    """A joint (offline) run; the test mIoUs of the hook are ``scores``; returns (run folder,
    model.pt's weights, {epoch: weights when evaluated}, last epoch's weights)."""
    it = iter(scores)
    monkeypatch.setattr(controller, "step_summary", lambda cm, task: {"all": next(it)})
    evaluated = {}
    original_call = best_epoch.BestOnTest.__call__

    def record(self, epoch, model):
        if epoch % self.every == 0:
            evaluated[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return original_call(self, epoch, model)

    monkeypatch.setattr(best_epoch.BestOnTest, "__call__", record)
    last = {}
    original_fit = controller.Trainer.fit

    def fit(self, *args, **kwargs):
        out = original_fit(self, *args, **kwargs)
        last.update({k: v.clone() for k, v in self.model.state_dict().items()})
        return out

    monkeypatch.setattr(controller.Trainer, "fit", fit)
    name = sections.pop("name", "joint")
    train = {"epochs": 3, "best_on_test_every": 1, **sections.pop("train", {})}
    cfg = write_pc_config(tmp_path, name=name, task={"name": "offline"}, method={"name": "ft"}, train=train,
                          **sections)
    run_from_config(load_config(cfg))
    run = tmp_path / "runs" / name
    saved = torch.load(run / "step0" / "model.pt", weights_only=False)["model"]
    return run, saved, evaluated, last


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_joint_reference_keeps_the_best_test_epoch(tmp_path, monkeypatch):
    run, saved, evaluated, last = _scripted_joint_run(tmp_path, monkeypatch, [0.5, 0.8, 0.3], protocol="reference")
    assert sorted(evaluated) == [1, 2, 3]
    assert _same(saved, evaluated[2]) and not _same(saved, last)  # epoch 3 is worse: epoch 2 is kept
    assert not (run / "step0" / "best_on_test.pt").exists()  # the step's checkpoint holds it now
    log = (run / "log.txt").read_text()
    assert "the step's model is epoch 2" in log


def test_joint_fixed_keeps_the_last_epoch(tmp_path, monkeypatch):
    run, saved, evaluated, last = _scripted_joint_run(tmp_path, monkeypatch, [], protocol="fixed")
    assert evaluated == {} and _same(saved, last)  # no evaluation on the test set during training


def test_joint_best_epoch_survives_an_interruption(tmp_path, monkeypatch):
    from css.engine import trainer as engine

    original = engine.Trainer._epoch

    def crash(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(engine.Trainer, "_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        _scripted_joint_run(tmp_path, monkeypatch, [0.5, 0.8], protocol="reference", name="cut")
    assert (tmp_path / "runs" / "cut" / "step0" / "best_on_test.pt").is_file()
    monkeypatch.setattr(engine.Trainer, "_epoch", original)
    # The resumed step only trains and evaluates epoch 3 (worse): epoch 2 from the file is kept.
    run, saved, evaluated, last = _scripted_joint_run(tmp_path, monkeypatch, [0.3], protocol="reference",
                                                      name="cut")
    assert sorted(evaluated) == [3] and not _same(saved, last)
    full, full_saved, full_evaluated, _ = _scripted_joint_run(tmp_path, monkeypatch, [0.5, 0.8, 0.3],
                                                              protocol="reference", name="full")
    assert _same(saved, full_evaluated[2]) and _same(saved, full_saved)  # as if never interrupted


# --- 3dpc-ciss end to end ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["fixed", "reference"])
def test_ciss_two_steps_from_the_cli_finish_with_finite_terms(tmp_path, protocol):
    from test_pc_train_e2e import run_cli

    cfg = write_pc_config(tmp_path, name="ciss", protocol=protocol, method={"name": "3dpc-ciss", "ciss_centres": 32})
    proc = run_cli("--config", cfg)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = tmp_path / "runs" / "ciss"
    step1 = torch.load(run / "step1" / "model.pt", weights_only=False)
    history = step1["history"]
    assert len(history) == 2
    for entry in history:
        assert set(entry["terms"]) == {"ce", "gft", "total"}
        assert all(math.isfinite(v) for v in entry["terms"].values())
        assert entry["terms"]["total"] == pytest.approx(entry["terms"]["ce"] + entry["terms"]["gft"], rel=1e-6)
    assert step1["config"]["method"]["ciss_pooled_neighbours"] is (protocol == "reference")
    results = json.loads((run / "results.json").read_text())
    assert [s["step"] for s in results["steps"]] == [0, 1]
    assert "GFT" in (run / "log.txt").read_text()

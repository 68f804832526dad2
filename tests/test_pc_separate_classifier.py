"""The separate [background, novel] classifier of the 3DPC-CISS FT, F&A and EWC baselines
(docs/pointcloud-baselines.md#separate-classifier): the CE over the background and novel channels
only, the old class rows kept bit for bit under Adam with weight decay, the background row
restarted, and a CLI run whose step-1 checkpoint keeps step 0's class rows."""

import math

import pytest
import torch

from css.config.method import MethodConfig
from css.engine.settings import TrainSettings
from css.errors import ConfigError
from css.methods.objective import Objective
from css.methods.resolve import resolve_method
from css.losses.classification import separate_classifier_ce
from css.nn import SegOutput
from css.pointcloud.models import build_model
from css.engine.schedules import build_optimizer

from _pc_tiny import write_pc_config


def _lse(*values):
    return math.log(sum(math.exp(v) for v in values))


def test_cross_entropy_over_background_and_novel_by_hand():
    # Channels [bg 0, A 1, B 2 | D 3, E 4] (num_old 3); point 0 is E, point 1 background, point 2 ignored.
    logits = torch.tensor([[[1.0, 0.5, 7.0], [9.0, 9.0, 9.0], [-3.0, 4.0, 0.0], [0.0, 2.0, 0.0], [2.0, -1.0, 0.0]]])
    labels = torch.tensor([[4, 0, 255]])
    # Softmax over [bg, D, E] only: point 0 [1, 0, 2] -> E; point 1 [0.5, 2, -1] -> bg. The mean
    # counts the ignored point too, like every css cross-entropy (docs/protocol-2d-losses.md#reductions).
    expected = (-(2.0 - _lse(1.0, 0.0, 2.0)) - (0.5 - _lse(0.5, 2.0, -1.0))) / 3
    got = separate_classifier_ce(logits.requires_grad_(True), labels, num_old=3)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got.backward()
    assert torch.all(logits.grad[:, 1:3] == 0)  # the old class channels are not outputs of it
    with pytest.raises(ValueError, match="old-class labels"):
        separate_classifier_ce(logits, torch.tensor([[1, 0, 255]]), num_old=3)


def test_objective_uses_it_only_at_incremental_steps():
    m = resolve_method(MethodConfig(name="ft", separate_classifier=True), dataset="s3dis", modality="pointcloud")
    logits = torch.randn(2, 5, 6)
    labels = torch.randint(0, 2, (2, 6)) * 4  # background or E
    step1 = Objective(m, step=1, num_old=3, num_current=5)
    total, _ = step1(SegOutput(logits, logits, {}), None, labels)
    assert total.item() == pytest.approx(separate_classifier_ce(logits, labels, num_old=3).item(), rel=1e-6)
    assert "over [background, novel]" in step1.describe()
    step0 = Objective(m, step=0, num_old=0, num_current=5)
    total0, _ = step0(SegOutput(logits, logits, {}), None, labels)
    assert total0.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def _adam_steps(model, steps=3):
    opt = build_optimizer(model, TrainSettings(epochs=1, lr=0.01, batch_size=2, optimizer="adam", weight_decay=1e-4))
    x = torch.randn(2, 9, 32)
    for _ in range(steps):
        opt.zero_grad()
        model(x).logits.square().mean().backward()  # a loss that reaches every row
        opt.step()


@pytest.mark.parametrize("freeze", [False, True])
def test_old_class_rows_stay_bit_identical_and_the_background_row_restarts(freeze):
    torch.manual_seed(0)
    model = build_model([4, 2, 3], k=4)  # step 2: heads of steps 0 and 1 are old
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if freeze:
        model.freeze_all_but_new_head()
    model.separate_classifier()
    assert set(model.state_dict()) == set(before)  # the pins are not saved with the model
    head0 = model.cls[0].weight
    assert not torch.equal(head0[0], before["cls.0.weight"][0])  # a fresh background row
    std = math.sqrt(2.0 / head0.shape[1])
    assert 0.5 * std < head0[0].std().item() < 1.5 * std  # Kaiming-normal, fan-in 128
    assert head0.requires_grad and not model.cls[1].weight.requires_grad and model.cls[2].weight.requires_grad
    restarted = head0[0].detach().clone()
    model.train()
    _adam_steps(model)
    after = model.state_dict()
    assert torch.equal(after["cls.0.weight"][1:], before["cls.0.weight"][1:])
    assert torch.equal(after["cls.1.weight"], before["cls.1.weight"])
    assert not torch.equal(after["cls.0.weight"][0], restarted)  # the background row trains
    assert not torch.equal(after["cls.2.weight"], before["cls.2.weight"])
    body = [k for k in before if not k.startswith("cls.")]
    assert all(torch.equal(after[k], before[k]) for k in body) is freeze


@pytest.mark.parametrize("keys, modality, match", [
    (dict(name="ft", separate_classifier=True), "image", "needs a synthetic background"),
    (dict(name="lgkd", separate_classifier=True), "pointcloud", "method.kd: 'lgkd'"),
    (dict(name="lwf-3dpc", separate_classifier=True), "pointcloud", "method lwf-3dpc"),
    (dict(name="mib", separate_classifier=True), "pointcloud", "method.kd: 'unkd'"),
])
def test_refused_where_its_loss_is_not_the_objective(keys, modality, match):
    with pytest.raises(ConfigError, match=match):
        resolve_method(MethodConfig(**keys), dataset="s3dis", modality=modality)


@pytest.mark.parametrize("method", ["ft", "fa", "ewc"])
def test_two_steps_from_the_cli_keep_step0_class_rows(tmp_path, method):
    from test_pc_train_e2e import run_cli

    cfg = write_pc_config(tmp_path, name=method, method={"name": method, "separate_classifier": True})
    proc = run_cli("--config", cfg)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = tmp_path / "runs" / method
    step0 = torch.load(run / "step0" / "model.pt", weights_only=False)["model"]
    step1 = torch.load(run / "step1" / "model.pt", weights_only=False)
    assert torch.equal(step1["model"]["cls.0.weight"][1:], step0["cls.0.weight"][1:])
    assert not torch.equal(step1["model"]["cls.0.weight"][0], step0["cls.0.weight"][0])
    assert step1["config"]["method"]["separate_classifier"] is True
    assert all(math.isfinite(v) for e in step1["history"] for v in e["terms"].values())
    assert "over [background, novel]" in (run / "log.txt").read_text()

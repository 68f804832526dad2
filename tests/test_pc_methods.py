"""Every method preset trains per point: one iteration of step 1 with a real DGCNN and its frozen
old model (the objective, its backward, the regulariser's update and penalty)."""

import math

import pytest
import torch

from css.config.method import MethodConfig
from css.controller.handover import freeze
from css.methods.objective import Objective
from css.methods.resolve import method_names, resolve_method
from css.pointcloud.models import build_model

HEADS = [4, 2]  # synthetic background + 3 classes, then 2 new classes


@pytest.mark.parametrize("name", sorted(method_names()))
def test_every_preset_runs_one_point_cloud_iteration(name):
    torch.manual_seed(0)
    old = build_model(HEADS[:1], k=4)
    model = build_model(HEADS, k=4)
    model.load_state_dict(old.state_dict(), strict=False)
    m = resolve_method(MethodConfig(name=name), dataset="s3dis", modality="pointcloud")
    assert m.pod == "none"  # Local POD is image-only
    reg_state = None
    if m.regularizer not in (None, "none"):
        # the previous step's state: a step-0 regulariser that saw one gradient
        step0 = Objective(m, step=0, num_old=0, num_current=4)
        step0.attach_regularizer(old, None)
        out = old.train()(torch.randn(2, 9, 32))
        out.logits.sum().backward()
        step0.after_backward(old)
        reg_state = step0.regularizer.state_dict()
    freeze(old)
    obj = Objective(m, step=1, num_old=4, num_current=6)
    obj.attach_regularizer(model, reg_state)
    x = torch.randn(2, 9, 32)
    labels = torch.zeros(2, 32, dtype=torch.long)
    labels[:, :10] = 4
    labels[:, 10:14] = 5
    labels[0, -3:] = 255
    with torch.no_grad():
        old_out = old(x) if obj.needs_old_model else None
    if obj.needs_thresholds:
        obj.compute_thresholds([(old_out.logits, labels)])
    out = model.train()(x)
    total, terms = obj(out, old_out, labels, inputs=x)
    assert math.isfinite(float(total.detach()))
    if m.kd == "lgkd":
        assert "kd" in terms and "pod" not in terms
    if m.loss_de:
        assert "de" in terms  # ILT: the 448-d per-point descriptor
    total.backward()
    assert model.cls[1].weight.grad is not None and torch.isfinite(model.cls[1].weight.grad).all()
    obj.after_backward(model)
    reg = obj.regularizer_loss(model)
    if m.regularizer not in (None, "none"):
        assert reg is not None and math.isfinite(float(reg))

"""EWC as the 3DPC-CISS paper ran it ("EWC*", docs/pointcloud-baselines.md#ewc): the Fisher of each
parameter tensor min-max normalised on its own, and the classifier left out of the penalty. The
values are worked out by hand on a tiny model."""

import pytest
import torch
from torch import nn

from css.config.method import MethodConfig
from css.methods.objective import Objective
from css.methods.resolve import resolve_method


class Tiny(nn.Module):
    """A body and one head per step, named like the segmentation models (``cls.{i}``)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(1, 1, bias=False)
        self.cls = nn.ModuleList([nn.Linear(1, 2, bias=False)])


def _objective(step, **keys):
    m = resolve_method(MethodConfig(name="ewc", reg_importance=1.0, **keys), dataset="s3dis", modality="pointcloud")
    return Objective(m, step=step, num_old=0 if step == 0 else 2, num_current=2 if step == 0 else 3)


def _step0_state(**keys):
    """Step 0: one iteration whose gradients are body 2, head (1, 3); alpha 0.9 -> F = 0.9 g^2."""
    model = Tiny()
    with torch.no_grad():
        model.body.weight.fill_(1.0)
        model.cls[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
    obj = _objective(0, **keys)
    obj.attach_regularizer(model, None)
    model.body.weight.grad = torch.tensor([[2.0]])
    model.cls[0].weight.grad = torch.tensor([[1.0], [3.0]])
    obj.after_backward(model)
    return model, obj.regularizer.state_dict()


def _penalty(**keys):
    model, state = _step0_state(**keys)
    with torch.no_grad():  # step 1 moves the body by 1 and the head rows by (1, 2)
        model.body.weight.add_(1.0)
        model.cls[0].weight.add_(torch.tensor([[1.0], [2.0]]))
    obj = _objective(1, **keys)
    obj.attach_regularizer(model, state)
    return obj, obj.regularizer_loss(model).item()


def test_global_normalisation_by_hand():
    # F = 0.9 * (4 | 1, 9) = (3.6 | 0.9, 8.1); global min 0.9, max 8.1: (0.375 | 0, 1).
    # Penalty 0.375 * 1 + 0 * 1 + 1 * 4 = 4.375.
    assert _penalty()[1] == pytest.approx(4.375, rel=1e-6)


def test_per_tensor_normalisation_by_hand():
    # Per tensor: the body alone has no spread and is positive -> 1; the head (0.9, 8.1) -> (0, 1).
    # Penalty 1 * 1 + 0 * 1 + 1 * 4 = 5.
    obj, value = _penalty(reg_per_tensor=True)
    assert value == pytest.approx(5.0, rel=1e-6)
    assert "per-tensor normalised" in obj.describe()


def test_classifier_left_out_by_hand():
    # Only the body: its Fisher 3.6 normalises to 1 (no spread); penalty 1 * 1 = 1, under either
    # normalisation. The head's Fisher is not even accumulated.
    model, state = _step0_state(reg_skip_classifier=True)
    assert set(state["fisher"]) == set(state["params"]) == {"body.weight"}
    for keys in (dict(), dict(reg_per_tensor=True)):
        obj, value = _penalty(reg_skip_classifier=True, **keys)
        assert value == pytest.approx(1.0, rel=1e-6)
        assert "classifier excluded" in obj.describe()


def test_defaults_are_the_image_code_s():
    m = resolve_method(MethodConfig(name="ewc"), dataset="voc")
    assert (m.reg_per_tensor, m.reg_skip_classifier, m.reg_normalize) == (False, False, True)

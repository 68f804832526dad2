"""The step hand-over (css.controller.handover): old model = model(t-1), frozen, eval mode; model(t) carries
model(t-1)'s body and old heads; the new head is initialised after the load; bad checkpoints refused."""

import math
from types import SimpleNamespace

import pytest
import torch

from css import checkpoint as ck
from css.config.build import from_dict
from css.distributed import DistEnv
from css.errors import CheckpointError
from css.controller.handover import hand_over, load_step
from css.image.modality import ImageModality

ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
CFG = from_dict({"model": {"backbone": "resnet18", "norm": "bn", "base_channels": 8, "head_channels": 16}})


class Task:
    name = "t"
    heads = [[3], [3, 2], [3, 2, 1]]

    def classes_per_step(self, step):
        return list(self.heads[step])


def _saved_step(run_dir, step, mutate=None):
    torch.manual_seed(step + 1)
    model = ImageModality().build_model(CFG, Task().classes_per_step(step), ENV)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # weights unlike any fresh initialisation
    state = model.state_dict()
    if mutate:
        mutate(state)
    obj = {"format": "css", "version": 1, "step": step, "classes_per_step": Task().classes_per_step(step),
           "task": {}, "model": state}
    ck.model_path(run_dir, step).parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, ck.model_path(run_dir, step))
    return state


@pytest.mark.parametrize("balanced", [False, True])
def test_hand_over(tmp_path, balanced):
    prev = _saved_step(tmp_path, 0)
    model, old, saved = hand_over(ImageModality(), CFG, Task(), 1, tmp_path, ENV, init_balanced=balanced)
    assert saved["step"] == 0
    # the old model is model(0), frozen and in eval mode
    for k, v in old.state_dict().items():
        assert torch.equal(v, prev[k]), k
    assert not old.training and all(not p.requires_grad for p in old.parameters())
    assert all(not m.training for m in old.modules())
    # model(1): every key of model(0) equal, except the background bias under balanced init
    state = model.state_dict()
    assert model.training and all(p.requires_grad for p in model.parameters())
    for k, v in prev.items():
        if balanced and k == "cls.0.bias":
            continue
        assert torch.equal(state[k], v), k
    assert state["cls.1.weight"].shape[0] == 2
    if balanced:
        # initialised AFTER the load: from the loaded background row, not a fresh one
        b = float(prev["cls.0.bias"][0]) - math.log(3)
        assert torch.equal(state["cls.1.weight"], prev["cls.0.weight"][0:1].expand(2, -1, -1, -1))
        assert torch.allclose(state["cls.1.bias"], torch.full((2,), b))
        assert math.isclose(float(state["cls.0.bias"][0]), b, rel_tol=1e-6)
        assert torch.equal(state["cls.0.bias"][1:], prev["cls.0.bias"][1:])
    else:
        assert not torch.equal(state["cls.1.weight"], prev["cls.0.weight"][0:1].expand(2, -1, -1, -1))


def test_hand_over_refuses_missing_and_unexpected_keys(tmp_path):
    key = next(k for k in _saved_step(tmp_path, 0) if k.startswith("body."))
    _saved_step(tmp_path, 0, mutate=lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match="does not fit"):
        hand_over(ImageModality(), CFG, Task(), 1, tmp_path, ENV, init_balanced=False)
    _saved_step(tmp_path, 0, mutate=lambda s: s.__setitem__("extra.weight", torch.zeros(1)))
    with pytest.raises(CheckpointError, match="does not fit"):
        hand_over(ImageModality(), CFG, Task(), 1, tmp_path, ENV, init_balanced=False)


def test_hand_over_needs_the_previous_step(tmp_path):
    with pytest.raises(CheckpointError, match="run step 1 first"):
        hand_over(ImageModality(), CFG, Task(), 2, tmp_path, ENV, init_balanced=False)


def test_load_step_checks_heads_and_step(tmp_path):
    _saved_step(tmp_path, 1)
    model, saved = load_step(ImageModality(), CFG, Task(), 1, ck.model_path(tmp_path, 1), ENV)
    assert model.classes_per_step == [3, 2] and saved["step"] == 1
    with pytest.raises(CheckpointError, match="not of step 2"):
        load_step(ImageModality(), CFG, Task(), 2, ck.model_path(tmp_path, 1), ENV)
    other = SimpleNamespace(name="other", classes_per_step=lambda s: [4, 1])
    with pytest.raises(CheckpointError, match="has heads"):
        load_step(ImageModality(), CFG, other, 1, ck.model_path(tmp_path, 1), ENV)

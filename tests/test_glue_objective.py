"""The step objective on the real DeepLabV3 (the narrow ResNet-18 of the tests), attention maps
included (docs/protocol-2d-losses.md#local-pod, docs/protocol-2d-model.md#classifier): the maps PLOP and LGKD
distil have the shapes of the architecture, every one of them (and the stride-16 logits) enters
Local POD, and the gradients of the whole objective are finite and reach the body through the maps.
"""

import math

import pytest
import torch

from css import losses as L
from css.config.method import MethodConfig
from css.image.models import build_model
from css.methods.objective import Objective
from css.methods.resolve import resolve_method
from css.nn import SegOutput

C_OLD, C_CUR = 3, 5  # 2-2 of 4 classes, step 1: bg + 2 old, 2 new


def _models():
    torch.manual_seed(0)
    kw = dict(backbone="resnet18", norm="bn", base_channels=8, head_channels=16, output_stride=16)
    old = build_model([C_OLD], **kw).eval()
    new = build_model([C_OLD, C_CUR - C_OLD], **kw)
    new.load_state_dict(old.state_dict(), strict=False)  # the hand-over: the new head stays random
    for p in old.parameters():
        p.requires_grad_(False)
    return old, new.train()


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 64, 64, generator=g)
    y = torch.randint(0, C_CUR, (2, 64, 64), generator=g)
    y[y < C_OLD] = 0  # old classes are background in the labels of step 1
    y[:, :4, :4] = 255
    return x, y


def _objective(name: str) -> Objective:
    m = resolve_method(MethodConfig(name=name), dataset="voc")
    return Objective(m, step=1, num_old=C_OLD, num_current=C_CUR, protocol="fixed")


def test_attention_maps_have_the_shapes_of_the_architecture():
    old, new = _models()
    x, _ = _batch()
    out = new(x)
    # ResNet-18 with base 8: stages of 8, 16, 32, 64 channels at strides 4, 8, 16, 16 (output
    # stride 16: the last stage is dilated), then the 16-channel head output at stride 16.
    shapes = [tuple(a.shape) for a in out.features["attentions"]]
    assert shapes == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 4, 4), (2, 16, 4, 4)]
    assert tuple(out.logits_small.shape) == (2, C_CUR, 4, 4) and tuple(out.logits.shape) == (2, C_CUR, 64, 64)
    with torch.no_grad():
        assert [tuple(a.shape) for a in old(x).features["attentions"]] == shapes


@pytest.mark.parametrize("name", ["plop", "lgkd"])
def test_every_attention_map_and_the_logits_enter_local_pod(name):
    """Old and new maps made equal, then one layer moved: POD becomes that layer's term, weighted
    by its factor (0.01, logits 0.0005), the schedule sqrt(C_cur / n_new) and 1 / (number of layers)."""
    old, new = _models()
    x, y = _batch()
    objective = _objective(name)
    with torch.no_grad():
        old_out = old(x)
        new_out = new(x)
    objective.compute_thresholds([(old_out.logits, y)])
    maps = [a.clone() for a in old_out.features["attentions"]]
    # New logits whose two new channels are 0 collapse onto the old ones: POD's logits layer is 0.
    same_logits = torch.cat([old_out.logits_small, torch.zeros(2, C_CUR - C_OLD, 4, 4)], dim=1)

    def pod(moved: int | None) -> float:
        atts = [a + (0.5 * torch.randn_like(a) if i == moved else 0) for i, a in enumerate(maps)]
        small = same_logits + (0.5 * torch.randn_like(same_logits) if moved == len(maps) else 0)
        out = SegOutput(new_out.logits, small, {"attentions": atts, "body": new_out.features["body"]})
        return float(objective(out, old_out, y)[1]["pod"]), atts, small

    assert pod(None)[0] == 0.0
    n_layers = len(maps) + 1
    schedule = math.sqrt(C_CUR / (C_CUR - C_OLD))
    for i in range(n_layers):
        torch.manual_seed(10 + i)
        value, atts, small = pod(i)
        assert value > 0, f"layer {i} does not reach Local POD"
        old_map = (maps + [old_out.logits_small])[i]
        new_map = (atts + [small])[i]
        factor = 0.0005 if i == len(maps) else 0.01
        alone = float(L.local_pod([old_map], [new_map], factors=[1.0], num_current=C_CUR,
                                  num_new=C_CUR - C_OLD, schedule=False))
        assert value == pytest.approx(factor * schedule * alone / n_layers, rel=1e-5), i


def test_the_whole_objective_has_finite_gradients_that_reach_the_body_through_the_maps():
    old, new = _models()
    x, y = _batch()
    objective = _objective("lgkd")
    with torch.no_grad():
        old_out = old(x)
    objective.compute_thresholds([(old_out.logits, y)])
    total, terms = objective(new(x), old_out, y)
    assert set(terms) == {"ce", "kd", "pod"} and all(torch.isfinite(v) for v in terms.values())
    total.backward()
    grads = {n: p.grad for n, p in new.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
    # POD alone: the first stage gets a gradient only through its own attention map and the later
    # layers; with the maps detached it would get none from this term.
    new.zero_grad(set_to_none=True)
    out = new(x)
    pod = L.local_pod(list(old_out.features["attentions"]), list(out.features["attentions"]), factors=[0.01] * 5,
                      num_current=C_CUR, num_new=C_CUR - C_OLD)
    pod.backward()
    first = [p.grad for n, p in new.named_parameters() if n.startswith("body.mod2")]
    assert first and all(g is not None for g in first) and any(g.abs().sum() > 0 for g in first)
    assert all(p.grad is None for n, p in new.named_parameters() if n.startswith("cls."))  # no logits layer here

"""Method presets (docs/methods.md#presets) and the per-step objective
(docs/protocol-2d.md#loss-composition)."""

import math
from types import SimpleNamespace

import pytest
import torch

from css import losses as L
from css.config.method import MethodConfig
from css.errors import ConfigError
from css.methods.objective import Objective, downsample_labels
from css.methods.resolve import resolve_method


def test_presets_match_reference_table():
    lgkd = resolve_method(MethodConfig(name="LGKD"), dataset="voc")
    assert (lgkd.kd, lgkd.loss_kd, lgkd.kd_resolution) == ("lgkd", 1.0, "small")
    assert (lgkd.pod, lgkd.pod_factor, lgkd.pod_logits, lgkd.pod_logits_factor) == ("local", 0.01, True, 0.0005)
    assert (lgkd.pseudo, lgkd.pseudo_threshold, lgkd.adaptive_factor, lgkd.init_balanced) == ("entropy", 0.001, True, True)
    assert (lgkd.prev_kd, lgkd.novel_kd, lgkd.classification) == (10.0, 2.0, "ce")  # argparser defaults
    ade = resolve_method(MethodConfig(name="lgkd"), dataset="ade")
    assert (ade.pod_factor, ade.pod_logits_factor) == (0.001, 0.00001)
    # The reference PLOP preset ignores the dataset; the fixed protocol does not
    # (docs/protocol-2d.md#corrected-by-fixed).
    assert resolve_method(MethodConfig(name="plop"), dataset="ade").pod_factor == 0.01
    assert resolve_method(MethodConfig(name="plop"), dataset="ade", protocol="fixed").pod_factor == 0.001
    mib = resolve_method(MethodConfig(name="MiB"), dataset="voc")
    assert (mib.classification, mib.kd, mib.loss_kd, mib.init_balanced) == ("unce", "unkd", 10.0, True)
    assert resolve_method(MethodConfig(name="ilt"), dataset="voc").loss_de == 100.0
    lwfmc = resolve_method(MethodConfig(name="lwf-mc"), dataset="voc")
    assert (lwfmc.classification, lwfmc.icarl_importance) == ("bce", 10.0)
    for name in ("ewc", "rw", "pi"):
        r = resolve_method(MethodConfig(name=name), dataset="voc")
        assert (r.regularizer, r.reg_importance) == (name, 100.0)
    ft = resolve_method(MethodConfig(name="ft"), dataset="voc")
    assert (ft.kd, ft.pod, ft.pseudo, ft.loss_kd) == ("none", "none", "none", 0.0)


def test_preset_never_overwrites_user_values():
    m = resolve_method(MethodConfig(name="plop", pod_factor=0.123, pseudo="none", init_balanced=False), dataset="voc")
    assert (m.pod_factor, m.pseudo, m.init_balanced) == (0.123, "none", False)
    m = resolve_method(MethodConfig(name="lgkd", pod_logits_factor=0.5), dataset="ade")
    assert m.pod_logits_factor == 0.5 and m.pod_factor == 0.001


def test_unknown_method():
    with pytest.raises(ConfigError, match="Did you mean 'lgkd'"):
        resolve_method(MethodConfig(name="lgdk"), dataset="voc")


def test_downsample_labels_picks_stride_pixels():
    y = torch.arange(64 * 64).reshape(1, 64, 64)
    small = downsample_labels(y, (4, 4))
    assert torch.equal(small, y[:, ::16, ::16])  # docs/protocol-2d-losses.md#lgkd: label pixel (16i, 16j)
    pts = torch.arange(10).reshape(1, 10)
    assert torch.equal(downsample_labels(pts, (10,)), pts)


def _out(logits_small, size, feats=None):
    logits = torch.nn.functional.interpolate(logits_small, size=size, mode="bilinear", align_corners=False)
    return SimpleNamespace(logits=logits, logits_small=logits_small, features=feats or {})


def test_lgkd_objective_composes_losses_as_reference():
    torch.manual_seed(0)
    c_old, c_cur = 3, 5
    att_new = [torch.randn(2, 4, 4, 4, requires_grad=True)]
    att_old = [torch.randn(2, 4, 4, 4)]
    new = _out(torch.randn(2, c_cur, 4, 4, requires_grad=True), (16, 16), {"attentions": att_new})
    old = _out(torch.randn(2, c_old, 4, 4), (16, 16), {"attentions": att_old})
    labels = torch.randint(0, c_cur, (2, 16, 16))
    labels[labels < c_old] = 0
    labels[:, 0, 1] = 255
    m = resolve_method(MethodConfig(name="lgkd", prev_kd=5.0, novel_kd=1.0), dataset="voc")
    obj = Objective(m, step=1, num_old=c_old, num_current=c_cur)
    assert obj.needs_old_model and obj.needs_thresholds
    th = obj.compute_thresholds([(old.logits, labels)])
    total, terms = obj(new, old, labels)
    # Rebuild the reference composition by hand (docs/protocol-2d.md#loss-composition, docs/protocol-2d-losses.md#lgkd-runs).
    pl, f = L.pseudo_label(labels, old.logits, th, num_old=c_old, num_current=c_cur)
    ce = L.cross_entropy(new.logits, pl, element_weight=f)
    kd = L.lgkd(new.logits_small, old.logits_small, labels[:, ::4, ::4], prev_weight=5.0, novel_weight=1.0)
    pod = L.local_pod(att_old + [old.logits_small], att_new + [new.logits_small], factors=[0.01, 0.0005],
                      num_current=c_cur, num_new=c_cur - c_old)
    assert torch.allclose(terms["ce"], ce) and torch.allclose(terms["kd"], kd) and torch.allclose(terms["pod"], pod)
    assert torch.allclose(total, ce + kd + pod)
    total.backward()
    assert new.logits_small.grad is not None and att_new[0].grad is not None


def test_step0_objective_is_plain_ce():
    m = resolve_method(MethodConfig(name="lgkd"), dataset="voc")
    obj = Objective(m, step=0, num_old=0, num_current=4)
    assert not obj.needs_old_model and not obj.needs_thresholds
    new = _out(torch.randn(1, 4, 2, 2), (8, 8))
    y = torch.randint(0, 4, (1, 8, 8))
    total, terms = obj(new, None, y)
    assert set(terms) == {"ce"} and torch.allclose(total, L.cross_entropy(new.logits, y))


def test_mib_and_lwf_objectives():
    torch.manual_seed(1)
    new = _out(torch.randn(2, 4, 2, 2), (8, 8))
    old = _out(torch.randn(2, 3, 2, 2), (8, 8))
    y = torch.randint(0, 4, (2, 8, 8))
    mib = Objective(resolve_method(MethodConfig(name="mib"), dataset="voc"), step=1, num_old=3, num_current=4)
    total, terms = mib(new, old, y)
    assert torch.allclose(terms["ce"], L.unbiased_ce(new.logits, y, num_old=3))
    assert torch.allclose(terms["kd"], 10 * L.unbiased_kd(new.logits, old.logits))
    lwf = Objective(resolve_method(MethodConfig(name="lwf"), dataset="voc"), step=1, num_old=3, num_current=4)
    _, terms = lwf(new, old, y)
    assert torch.allclose(terms["kd"], 100 * L.kd(new.logits, old.logits))
    mc = Objective(resolve_method(MethodConfig(name="lwf-mc"), dataset="voc"), step=1, num_old=3, num_current=4)
    _, terms = mc(new, old, y)
    assert torch.allclose(terms["icarl"], 10 * 3 * L.icarl_distillation(new.logits, old.logits))
    assert torch.allclose(terms["ce"], L.bce_with_ignore(new.logits, y))


def test_point_cloud_logits_work_through_objective():
    torch.manual_seed(2)
    n = 64
    new = SimpleNamespace(logits=torch.randn(2, 4, n, requires_grad=True), features={})
    new.logits_small = new.logits
    old = SimpleNamespace(logits=torch.randn(2, 3, n), features={})
    old.logits_small = old.logits
    y = torch.randint(0, 4, (2, n))
    y[y < 3] = 0
    obj = Objective(resolve_method(MethodConfig(name="lgkd-only", prev_kd=1.0, novel_kd=1.0), dataset="s3dis"),
                    step=1, num_old=3, num_current=4)
    total, terms = obj(new, old, y)
    assert torch.allclose(terms["kd"], L.lgkd(new.logits, old.logits, y, prev_weight=1.0, novel_weight=1.0))
    total.backward()
    assert math.isfinite(float(total))


def test_pod_scales_reach_local_pod_and_small_maps_say_which_key_to_change():
    torch.manual_seed(3)
    att_new, att_old = [torch.randn(2, 4, 2, 2, requires_grad=True)], [torch.randn(2, 4, 2, 2)]
    new = _out(torch.randn(2, 5, 2, 2, requires_grad=True), (8, 8), {"attentions": att_new})
    old = _out(torch.randn(2, 3, 2, 2), (8, 8), {"attentions": att_old})
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, :2] = 4
    default = Objective(resolve_method(MethodConfig(name="plop", pseudo="none"), dataset="voc"),
                        step=1, num_old=3, num_current=5)
    with pytest.raises(ValueError, match=r"scale 4 does not fit.*method.pod_scales"):
        default(new, old, labels)
    m = resolve_method(MethodConfig(name="plop", pseudo="none", pod_scales=[1, 2]), dataset="voc")
    assert m.pod_scales == [1, 2]
    total, terms = Objective(m, step=1, num_old=3, num_current=5)(new, old, labels)
    expected = L.local_pod(att_old + [old.logits_small], att_new + [new.logits_small], factors=[0.01, 0.0005],
                           num_current=5, num_new=2, scales=(1, 2))
    assert torch.allclose(terms["pod"], expected)


# docs/methods.md#kd-weight
@pytest.mark.parametrize("name", ["ft", "ewc", "plop", "lwf-mc"])
def test_kd_weight_alone_turns_on_plain_kd(name):
    m = resolve_method(MethodConfig(name=name, loss_kd=10.0), dataset="voc")
    assert (m.kd, m.loss_kd) == ("kd", 10.0)
    obj = Objective(m, step=1, num_old=3, num_current=4)
    assert obj.use_kd and obj.needs_old_model and "10 x KD" in obj.describe()
    # The loss is CE + 10 x KD (docs/protocol-2d-losses.md#kd), not CE alone.
    g = torch.Generator().manual_seed(0)
    new_logits, old_logits = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 3, 3, 3, generator=g)
    labels = torch.randint(0, 4, (2, 3, 3), generator=g)
    if m.pseudo == "entropy":  # plop: pseudo-labels and POD are not what this test is about
        m.pseudo, m.pod = "none", "none"
        obj = Objective(m, step=1, num_old=3, num_current=4)
    total, terms = obj(SimpleNamespace(logits=new_logits, logits_small=new_logits, features={}),
                       SimpleNamespace(logits=old_logits, logits_small=old_logits, features={}), labels)
    kd = 10.0 * L.kd(new_logits, old_logits)
    torch.testing.assert_close(terms["kd"], kd)
    torch.testing.assert_close(total, terms["ce"] + kd + terms.get("icarl", torch.zeros(())))


def test_kd_weight_keeps_a_presets_own_distillation_and_zero_weight_stays_off():
    assert resolve_method(MethodConfig(name="mib", loss_kd=5.0), dataset="voc").kd == "unkd"
    assert resolve_method(MethodConfig(name="ft", loss_kd=5.0, kd="lgkd"), dataset="voc").kd == "lgkd"
    assert resolve_method(MethodConfig(name="ft", loss_kd=0.0), dataset="voc").kd == "none"
    assert resolve_method(MethodConfig(name="ft"), dataset="voc").kd == "none"
    assert resolve_method(MethodConfig(name="lgkd", kd="none"), dataset="voc").kd == "none"  # = PLOP


def test_kd_none_with_a_kd_weight_is_refused():
    with pytest.raises(ConfigError) as e:
        resolve_method(MethodConfig(name="ft", loss_kd=10.0, kd="none"), dataset="voc")
    msg = str(e.value)
    assert "method.kd" in msg and "method.loss_kd: 10" in msg and "contradict" in msg
    assert "remove method.kd" in msg and "loss_kd: 0" in msg
    with pytest.raises(ConfigError, match="contradict"):
        resolve_method(MethodConfig(name="lgkd", loss_kd=1.0, kd="none"), dataset="voc")

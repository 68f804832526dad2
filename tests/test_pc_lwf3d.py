"""LwF as the 3DPC-CISS paper ran it, preset lwf-3dpc (docs/pointcloud-baselines.md#lwf-3dpc).

The expected values are worked out with scalar ``math`` from the published definition, not with
the functions under test: one batch of three points, old model [bg 0, A 1, B 2] (num_old 3), new
model [bg 0, A 1, B 2, D 3]; labels D, background, ignored.
"""

import json
import math

import pytest
import torch

from css import losses as L
from css.config.method import MethodConfig
from css.errors import ConfigError
from css.methods.objective import Objective
from css.methods.resolve import resolve_method
from css.nn import SegOutput

from _pc_tiny import write_pc_config

NEW = [[9.0, 0.0, 2.0, 1.0], [9.0, 1.0, 0.0, 3.0], [9.0, 2.0, 2.0, 2.0]]
OLD = [[5.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 3.0, 1.0]]
LABELS = [3, 0, 255]


def _lse(values):
    return math.log(sum(math.exp(v) for v in values))


def _soft_kd(first, t):
    """T^2 x mean over the three points of -sum_c q_c log p_c over channels first..2."""
    total = 0.0
    for new, old in zip(NEW, OLD):
        o = [v / t for v in old[first:3]]
        n = [v / t for v in new[first:3]]
        q = [math.exp(v - _lse(o)) for v in o]
        total -= sum(qc * (nc - _lse(n)) for qc, nc in zip(q, n))
    return total / 3 * t * t


# CE without the background channel (softmax over channels 1..3):
CE_POINT0 = -(1.0 - _lse([0.0, 2.0, 1.0]))  # D: its logit 1 among [A 0, B 2, D 1]
CE_POINT1_AS_B = -(0.0 - _lse([1.0, 0.0, 3.0]))  # background trained as B, the last old class
# CE with the background channel (an intermediate step): D at point 0, background at point 1.
CE_FULL = (-(1.0 - _lse(NEW[0])) - (9.0 - _lse(NEW[1]))) / 2


def _batch():
    new = torch.tensor(NEW).T.unsqueeze(0).requires_grad_(True)  # (1, 4, 3)
    old = torch.tensor(OLD).T.unsqueeze(0)
    return new, old, torch.tensor([LABELS])


def _objective(protocol="fixed", step=1, num_steps=2, **keys):
    m = resolve_method(MethodConfig(name="lwf-3dpc", **keys), dataset="s3dis", protocol=protocol, modality="pointcloud")
    return Objective(m, step=step, num_old=3, num_current=4, protocol=protocol, num_steps=num_steps)


def _terms(obj):
    new, old, labels = _batch()
    total, terms = obj(SegOutput(new, new, {}), SegOutput(old, old, {}), labels)
    return new, total, terms


def test_soft_kd_by_hand():
    new, old, _ = _batch()
    assert _soft_kd(1, 2.0) == pytest.approx(3.291299297, rel=1e-9)  # the hand sum of the note above
    assert L.soft_kd(new, old, temperature=2.0).item() == pytest.approx(_soft_kd(1, 2.0), rel=1e-6)
    assert L.soft_kd(new, old, temperature=2.0, first=0).item() == pytest.approx(_soft_kd(0, 2.0), rel=1e-6)
    assert L.soft_kd(new, old, temperature=1.0).item() == pytest.approx(_soft_kd(1, 1.0), rel=1e-6)
    for bad in (dict(temperature=0.0), dict(temperature=2.0, first=3)):
        with pytest.raises(ValueError):
            L.soft_kd(new, old, **bad)


def test_fixed_last_step_ignores_background_points():
    new, total, terms = _terms(_objective("fixed"))
    assert terms["ce"].item() == pytest.approx(CE_POINT0, rel=1e-6)  # the one novel point alone
    assert terms["kd"].item() == pytest.approx(_soft_kd(1, 2.0), rel=1e-6)
    assert total.item() == pytest.approx(CE_POINT0 + _soft_kd(1, 2.0), rel=1e-6)
    total.backward()
    # The published model has no background row: nothing reaches channel 0 at the last step.
    assert torch.all(new.grad[:, 0] == 0) and torch.any(new.grad[:, 1:] != 0)


def test_reference_trains_background_points_as_the_last_old_class_and_changes_nothing_else():
    ref = _objective("reference")
    assert ref.m.lwf_reference_background is True
    _, _, terms = _terms(ref)
    assert terms["ce"].item() == pytest.approx((CE_POINT0 + CE_POINT1_AS_B) / 2, rel=1e-6)
    assert terms["kd"].item() == pytest.approx(_soft_kd(1, 2.0), rel=1e-6)
    # The switch alone, under protocol fixed, gives the same terms; off under reference, fixed's.
    _, _, on = _terms(_objective("fixed", lwf_reference_background=True))
    _, _, off = _terms(_objective("reference", lwf_reference_background=False))
    assert on["ce"].item() == pytest.approx(terms["ce"].item(), rel=1e-6)
    assert off["ce"].item() == pytest.approx(CE_POINT0, rel=1e-6)
    assert on["kd"].item() == off["kd"].item() == terms["kd"].item()


def test_intermediate_step_keeps_the_background_channel():
    obj = _objective("reference", step=1, num_steps=3)
    new, _, terms = _terms(obj)
    assert terms["ce"].item() == pytest.approx(CE_FULL, rel=1e-6)  # no label shift either
    assert terms["kd"].item() == pytest.approx(_soft_kd(0, 2.0), rel=1e-6)
    assert "with background" in obj.describe()
    last = _objective("reference", step=2, num_steps=3)
    assert "without background, background points as the last old class" in last.describe()


def test_temperature_and_weight_keys():
    _, _, terms = _terms(_objective("fixed", lwf_temperature=1.0, loss_kd=3.0))
    assert terms["kd"].item() == pytest.approx(3.0 * _soft_kd(1, 1.0), rel=1e-6)
    assert terms["ce"].item() == pytest.approx(CE_POINT0, rel=1e-6)


def test_preset_resolution():
    for protocol in ("fixed", "reference"):
        m = resolve_method(MethodConfig(name="lwf*"), dataset="scannet", protocol=protocol, modality="pointcloud")
        assert (m.name, m.loss_kd, m.kd, m.lwf_temperature, m.classification, m.init_balanced) == \
            ("lwf-3dpc", 1.0, "soft", 2.0, "ce", False)
        assert m.lwf_reference_background is (protocol == "reference")
    lwf = resolve_method(MethodConfig(name="lwf"), dataset="s3dis", modality="pointcloud")
    # css's LwF is unchanged, and the lwf-3dpc keys stay null elsewhere (a resolved config resolves again).
    assert (lwf.loss_kd, lwf.kd, lwf.lwf_temperature, lwf.lwf_reference_background) == (100.0, "kd", None, None)
    assert Objective(_objective().m, step=0, num_old=0, num_current=3).needs_old_model is False


@pytest.mark.parametrize("keys, modality, match", [
    (dict(name="lwf-3dpc"), "image", "on images choose lwf"),
    (dict(name="lwf", lwf_temperature=2.0), "pointcloud", "method.lwf_temperature: a setting of method lwf-3dpc"),
    (dict(name="ft", lwf_reference_background=True), "pointcloud", "method.lwf_reference_background"),
    (dict(name="lwf", kd="soft"), "pointcloud", "method.kd: 'soft' is the distillation of method lwf-3dpc"),
    (dict(name="lwf-3dpc", classification="bce"), "pointcloud", "method.classification: 'bce'"),
    (dict(name="lwf-3dpc", pseudo="entropy"), "pointcloud", "method.pseudo"),
    (dict(name="lwf-3dpc", lwf_temperature=-1.0), "pointcloud", "method.lwf_temperature: -1.0"),
])
def test_preset_errors_name_the_key(keys, modality, match):
    with pytest.raises(ConfigError, match=match.replace("*", r"\*")):
        resolve_method(MethodConfig(**keys), dataset="s3dis", protocol="fixed", modality=modality)


@pytest.mark.parametrize("protocol", ["fixed", "reference"])
def test_two_steps_from_the_cli(tmp_path, protocol):
    from test_pc_train_e2e import run_cli

    cfg = write_pc_config(tmp_path, name="lwf3d", protocol=protocol, method={"name": "lwf-3dpc"})
    proc = run_cli("--config", cfg)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = tmp_path / "runs" / "lwf3d"
    step1 = torch.load(run / "step1" / "model.pt", weights_only=False)
    assert step1["config"]["method"]["lwf_reference_background"] is (protocol == "reference")
    for entry in step1["history"]:
        assert set(entry["terms"]) == {"ce", "kd", "total"}
        assert all(math.isfinite(v) for v in entry["terms"].values())
        assert entry["terms"]["kd"] > 0
    assert [s["step"] for s in json.loads((run / "results.json").read_text())["steps"]] == [0, 1]
    assert "soft KD (T 2)" in (run / "log.txt").read_text()


@pytest.mark.parametrize("modality, dataset", [("pointcloud", "s3dis"), ("image", "voc")])
@pytest.mark.parametrize("protocol", ["fixed", "reference"])
def test_every_preset_resolves_to_itself_again(modality, dataset, protocol):
    # The controller resolves the method of a saved (already resolved) config again.
    from css.methods.resolve import method_names

    for name in method_names():
        try:
            once = resolve_method(MethodConfig(name=name), dataset=dataset, protocol=protocol, modality=modality)
        except ConfigError:
            continue  # a point-cloud-only preset on images
        assert resolve_method(once, dataset=dataset, protocol=protocol, modality=modality) == once, name

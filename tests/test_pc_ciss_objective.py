"""The 3dpc-ciss preset through the Objective (docs/pointcloud-ciss.md#wiring, #configuration):
preset resolution, the loss of tiny hand-made batches with labels and values worked out by hand,
every protocol switch changing only what it should, the multi-step rule, and the old model's
per-sample seeded MC dropout."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from css.config.method import MethodConfig
from css.errors import ConfigError
from css.methods.objective import Objective
from css.methods.resolve import resolve_method
from css.pointcloud.models import build_model, sample_seeds

IGN = 255
NUM_OLD, NUM_CUR = 3, 4  # old model [bg 0, A 1, B 2]; the step adds the novel class N = 3

# Two blocks of four points (B = 2, N = 4); squared distances worked out by hand:
#   block 0: a0-a1 0.04, a0-a2 0.25, a1-a2 0.29, a3 is >= 6.25 from all;
#   block 1: b1-b2 0.05, b0-b3 0.3625, the rest >= 6.37.
# Per block (self first, K = 3): a0 [a1, a2], a1 [a0, a2], a2 [a0, a1], a3 [a2, a1];
#   b0 [b3, b2], b1 [b2, b3], b2 [b1, b3], b3 [b0, b2].
# Pooled over both blocks: a0 [b0 (0.0025), a1], a1 [b0 (0.0225), a0], a2 [b3 (0.01), a0 (0.25)],
#   a3 [b2 (0.01), b1 (0.04)], b0 [a0, a1], b1 [a3, b2], b2 [a3, b1], b3 [a2, a0 (0.36)].
XYZ = torch.tensor([[[1.0, 1.0, 1.0], [1.2, 1.0, 1.0], [1.0, 1.5, 1.0], [3.0, 3.0, 1.0]],
                    [[1.05, 1.0, 1.0], [3.0, 3.2, 1.0], [3.1, 3.0, 1.0], [1.0, 1.6, 1.0]]])
# Step labels: a0 and b1 novel (3), b3 ignored in the ground truth, the rest "not novel" (0).
LABELS = torch.tensor([[3, 0, 0, 0], [0, 3, 0, IGN]])
# Old predictions: a0 A, a1 bg, a2 B, a3 A | b0 A, b1 bg, b2 bg, b3 B.
OLD_PRED = torch.tensor([[1, 0, 2, 1], [1, 0, 0, 2]])
# Mixed labels (old bg -> ignore): [3, ign, 2, 1 | 1, 3, ign, 255]; a1 and b2 are to be filled.


def _inputs(xyz=XYZ):
    batch, n, _ = xyz.shape
    rest = torch.arange(batch * 6 * n, dtype=torch.float32).view(batch, 6, n) / 10  # rgb, normalised xyz
    return torch.cat([xyz.transpose(1, 2), rest], dim=1)


def _new_logits(batch=2, n=4, channels=NUM_CUR):
    c = torch.arange(channels).view(1, channels, 1)
    p = torch.arange(n).view(1, 1, n)
    b = torch.arange(batch).view(batch, 1, 1)
    return ((c * (p + 1) + b) % 5).float() / 2


def _old_logits(pred, channels=NUM_OLD):
    return 10.0 * torch.nn.functional.one_hot(pred, channels).permute(0, 2, 1).float()


def _features(batch=2, n=4):
    """(new, old) 2-channel descriptors; their differences f_new - f_old are a0 (0, 0), a1 (2, -4),
    b0 (1, 1), b3 (3, 1) (the others do not enter the GFT with one centre and two points)."""
    old = torch.arange(batch * 2 * n, dtype=torch.float32).view(batch, 2, n)
    delta = torch.zeros(batch, 2, n)
    delta[0, :, 1] = torch.tensor([2.0, -4.0])
    if batch > 1:
        delta[1, :, 0] = torch.tensor([1.0, 1.0])
        delta[1, :, 3] = torch.tensor([3.0, 1.0])
    delta[0, :, 2] = torch.tensor([7.0, 7.0])  # a2 is not in a0's group of two: must not count
    return old + delta, old


# GFT by hand: one centre per block (FPS starts at index 0: a0, b0), groups of two (self and the
# nearest point of the block: a1, b3). R_new - R_old = ((D_j - D_c) + 0) / 2 per feature channel,
# 0 on the 3 coordinate channels: block 0 (1, -2), block 1 (1, 0); mean over 2 x 1 x (3 + 2) values.
GFT = (1 + 4 + 1 + 0) / 10


def _ce(logits, labels, keep_background=False):
    """Mean over the labelled points of -log softmax (without channel 0 unless keep_background)."""
    first = 0 if keep_background else 1
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for n in range(labels.shape[1]):
            y = int(labels[b, n])
            if y == IGN:
                continue
            z = [float(logits[b, c, n]) for c in range(first, logits.shape[1])]
            total += math.log(sum(math.exp(v) for v in z)) - z[y - first]
            count += 1
    return total / max(count, 1)


def _method(protocol="fixed", dataset="s3dis", ciss_threshold=None, **keys):
    """The resolved preset with K = 3, one GFT centre of two points; ``ciss_threshold`` is set after
    resolution, so that the test value -1 (no point certain) gets past the key's check."""
    keys = {"ciss_neighbours": 3, "ciss_centres": 1, "ciss_gft_neighbours": 2, **keys}
    m = resolve_method(MethodConfig(name="3dpc-ciss", **keys), dataset=dataset, protocol=protocol,
                       modality="pointcloud")
    return m if ciss_threshold is None else dataclasses.replace(m, ciss_threshold=ciss_threshold)


def _run(method, *, protocol="fixed", step=1, num_steps=2, old_pred=OLD_PRED, labels=LABELS, xyz=XYZ):
    batch, n = labels.shape
    new_f, old_f = _features(batch, n)
    new = SimpleNamespace(logits=_new_logits(batch, n), features={"body": new_f})
    old = SimpleNamespace(logits=_old_logits(old_pred), features={"body": old_f})
    obj = Objective(method, step=step, num_old=NUM_OLD, num_current=NUM_CUR, protocol=protocol, num_steps=num_steps)
    total, terms = obj(new, old, labels, inputs=_inputs(xyz))
    assert set(terms) == {"ce", "gft"}
    torch.testing.assert_close(total, terms["ce"] + terms["gft"])
    return new.logits, terms


CERTAIN, UNCERTAIN = 1e9, -1.0  # every U is finite and >= 0 here: these make all points certain / uncertain

FIXED = [[3, 1, 2, 1], [1, 3, 2, IGN]]  # a1 <- a0 (A); b2 <- b1 (bg: nothing) then <- b3 (B)


# --- resolution --------------------------------------------------------------------------------

def test_preset_resolution_per_protocol_and_dataset():
    m = resolve_method(MethodConfig(name="3dpc-ciss"), dataset="s3dis", protocol="fixed", modality="pointcloud")
    assert (m.ciss_threshold, m.ciss_neighbours, m.ciss_gft_neighbours, m.ciss_gft_weight) == (0.0065, 12, 12, 1.0)
    assert m.ciss_centres is None  # ceil(N / 4): 512 for 2048 points
    assert not any([m.ciss_pooled_neighbours, m.ciss_reference_offset, m.ciss_overwrite_novel,
                    m.ciss_reference_nan, m.ciss_reference_unannotated])
    assert (m.init_balanced, m.loss_kd, m.regularizer, m.pseudo, m.freeze_body) == (False, 0.0, "none", "none", False)
    r = resolve_method(MethodConfig(name="3dpc-ciss"), dataset="scannet", protocol="reference", modality="pointcloud")
    assert r.ciss_threshold == 0.0045
    assert all([r.ciss_pooled_neighbours, r.ciss_reference_offset, r.ciss_overwrite_novel, r.ciss_reference_nan,
                r.ciss_reference_unannotated])
    s = resolve_method(MethodConfig(name="3dpc-ciss"), dataset="s3dis", protocol="reference", modality="pointcloud")
    assert s.ciss_pooled_neighbours and not s.ciss_reference_unannotated  # the unannotated layout is ScanNet's
    # A value the user gives wins over the protocol.
    u = resolve_method(MethodConfig(name="3dpc-ciss", ciss_threshold=0.01, ciss_pooled_neighbours=False),
                       dataset="s3dis", protocol="reference", modality="pointcloud")
    assert u.ciss_threshold == 0.01 and u.ciss_pooled_neighbours is False and u.ciss_reference_offset


def test_preset_errors_name_the_key():
    with pytest.raises(ConfigError, match="method.name: '3dpc-ciss' is a point-cloud method"):
        resolve_method(MethodConfig(name="3dpc-ciss"), dataset="voc", modality="image")
    with pytest.raises(ConfigError, match="method.ciss_threshold: a setting of method 3dpc-ciss.*'lwf'"):
        resolve_method(MethodConfig(name="lwf", ciss_threshold=0.1), dataset="s3dis", modality="pointcloud")
    for key, value in (("ciss_neighbours", 1), ("ciss_centres", 0), ("ciss_gft_weight", -1.0),
                       ("ciss_threshold", float("nan"))):
        with pytest.raises(ConfigError, match=f"method.{key}"):
            resolve_method(MethodConfig(name="3dpc-ciss", **{key: value}), dataset="s3dis", modality="pointcloud")


def test_too_many_centres_is_a_config_error():
    with pytest.raises(ConfigError, match="method.ciss_centres: 5 centres per block.*4 points"):
        _run(_method(ciss_threshold=CERTAIN, ciss_centres=5))


# --- the loss by hand --------------------------------------------------------------------------

def test_fixed_all_certain_by_hand():
    logits, terms = _run(_method(ciss_threshold=CERTAIN))
    assert math.isclose(float(terms["ce"]), _ce(logits, torch.tensor(FIXED)), rel_tol=1e-6)
    assert math.isclose(float(terms["gft"]), GFT, rel_tol=1e-6)


def test_gft_weight_scales_only_the_gft():
    logits, terms = _run(_method(ciss_threshold=CERTAIN, ciss_gft_weight=2.5))
    assert math.isclose(float(terms["gft"]), 2.5 * GFT, rel_tol=1e-6)
    assert math.isclose(float(terms["ce"]), _ce(logits, torch.tensor(FIXED)), rel_tol=1e-6)


def test_fixed_all_uncertain_keeps_only_novel_ground_truth():
    # Uncertain points offer nothing and are relabelled from their neighbours: everything but the
    # novel ground truth ends ignored.
    logits, terms = _run(_method(ciss_threshold=UNCERTAIN))
    expected = torch.tensor([[3, IGN, IGN, IGN], [IGN, 3, IGN, IGN]])
    assert math.isclose(float(terms["ce"]), _ce(logits, expected), rel_tol=1e-6)


@pytest.mark.parametrize("switch, threshold, expected", [
    # pooled: a1 <- b0 (A), b2 <- a3 (A): only b2 changes.
    ("ciss_pooled_neighbours", CERTAIN, [[3, 1, 2, 1], [1, 3, 1, IGN]]),
    # off by one: a1 <- a0's A + 1 = B (2), b2 <- b1's bg + 1 = A (1).
    ("ciss_reference_offset", CERTAIN, [[3, 2, 2, 1], [1, 3, 1, IGN]]),
    # certain points are never overwritten, and nothing here is NaN: no change.
    ("ciss_overwrite_novel", CERTAIN, FIXED),
    ("ciss_reference_nan", CERTAIN, FIXED),
    # the unannotated layout only changes the off-by-one table: no change alone.
    ("ciss_reference_unannotated", CERTAIN, FIXED),
    # all uncertain: the novel points a0 and b1 are overwritten too, so nothing is labelled.
    ("ciss_overwrite_novel", UNCERTAIN, [[IGN] * 4, [IGN] * 4]),
])
def test_each_switch_changes_only_its_labels(switch, threshold, expected):
    base_logits, base = _run(_method(ciss_threshold=threshold))
    logits, terms = _run(_method(ciss_threshold=threshold, **{switch: True}))
    assert math.isclose(float(terms["ce"]), _ce(logits, torch.tensor(expected)), rel_tol=1e-6, abs_tol=1e-9)
    assert torch.equal(terms["gft"], base["gft"])  # the switches touch the labels only


def test_offset_with_unannotated_layout():
    # b2 <- b1's bg, now ignored, then pass 2: b3's B + 1 = N (3); a1 <- a0's A + 1.
    logits, terms = _run(_method(ciss_threshold=CERTAIN, ciss_reference_offset=True, ciss_reference_unannotated=True))
    assert math.isclose(float(terms["ce"]), _ce(logits, torch.tensor([[3, 2, 2, 1], [1, 3, 3, IGN]])), rel_tol=1e-6)


def test_reference_protocol_combines_the_switches():
    # pooled + offset: a1 <- b0's A + 1 = 2, b2 <- a3's A + 1 = 2.
    logits, terms = _run(_method("reference", ciss_threshold=CERTAIN), protocol="reference")
    assert math.isclose(float(terms["ce"]), _ce(logits, torch.tensor([[3, 2, 2, 1], [1, 3, 2, IGN]])), rel_tol=1e-6)
    assert math.isclose(float(terms["gft"]), GFT, rel_tol=1e-6)


def test_reference_nan_makes_degenerate_neighbourhoods_certain():
    # Four points on the x axis: every cosine between position vectors is exactly 1, so the
    # min-max normalisation is 0/0. Guarded: uniform weights, a finite U, "uncertain" at tau = -1;
    # reference_nan: U is NaN and the points count as certain.
    xyz = torch.tensor([[[1.0, 0, 0], [2.0, 0, 0], [4.0, 0, 0], [8.0, 0, 0]]])
    labels = torch.tensor([[3, 0, 0, 0]])
    old_pred = torch.tensor([[1, 1, 2, 0]])  # mixed [3, 1, 2, ign]; neighbours p3 -> [p2, p1]
    kwargs = dict(old_pred=old_pred, labels=labels, xyz=xyz)
    logits, guarded = _run(_method(ciss_threshold=UNCERTAIN), **kwargs)
    assert math.isclose(float(guarded["ce"]), _ce(logits, torch.tensor([[3, IGN, IGN, IGN]])), rel_tol=1e-6)
    logits, plain = _run(_method(ciss_threshold=UNCERTAIN, ciss_reference_nan=True), **kwargs)
    assert math.isclose(float(plain["ce"]), _ce(logits, torch.tensor([[3, 1, 2, 2]])), rel_tol=1e-6)


def test_intermediate_step_keeps_background_and_last_step_does_not():
    # Step 1 of 3: old bg -> 0 (a future class may still be background), full softmax, and under
    # reference no shift; nothing is left to fill, so the labels are the mixed ones.
    mixed_bg = torch.tensor([[3, 0, 2, 1], [1, 3, 0, IGN]])
    for protocol in ("fixed", "reference"):
        logits, terms = _run(_method(protocol, ciss_threshold=CERTAIN), protocol=protocol, num_steps=3)
        assert math.isclose(float(terms["ce"]), _ce(logits, mixed_bg, keep_background=True), rel_tol=1e-6)
    logits, terms = _run(_method(ciss_threshold=CERTAIN), step=2, num_steps=3)  # the last step: two-step rule
    assert math.isclose(float(terms["ce"]), _ce(logits, torch.tensor(FIXED)), rel_tol=1e-6)


def test_step0_is_plain_cross_entropy_and_ciss_needs_inputs():
    m = _method()
    logits = _new_logits(channels=NUM_OLD)
    labels = torch.tensor([[1, 0, 2, 1], [0, 2, 2, IGN]])
    ft = Objective(resolve_method(MethodConfig(name="ft"), dataset="s3dis", modality="pointcloud"), step=0,
                   num_old=0, num_current=NUM_OLD)
    ciss = Objective(m, step=0, num_old=0, num_current=NUM_OLD)
    assert not ciss.needs_old_model
    out = SimpleNamespace(logits=logits, features={})
    assert torch.equal(ciss(out, None, labels)[0], ft(out, None, labels)[0])
    step1 = Objective(m, step=1, num_old=NUM_OLD, num_current=NUM_CUR)
    assert step1.needs_old_model and "GFT" in step1.describe()
    new_f, old_f = _features()
    with pytest.raises(RuntimeError, match="inputs"):
        step1(SimpleNamespace(logits=_new_logits(), features={"body": new_f}),
              SimpleNamespace(logits=_old_logits(OLD_PRED), features={"body": old_f}), LABELS)


# --- the old model's MC dropout ----------------------------------------------------------------

def test_seeded_mc_dropout_depends_on_the_sample_alone():
    torch.manual_seed(0)
    model = build_model([4], k=8).eval().mc_dropout(True, seeded=True)
    x = torch.randn(3, 9, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
        alone = model(x[2:3])
        # Same input, same masks (no global RNG); a sample's output does not depend on its batch.
        assert torch.equal(a.logits, b.logits)
        torch.testing.assert_close(alone.logits[0], a.logits[2], rtol=1e-5, atol=1e-6)
        dropped = a.features["pre_logits"] == 0
        assert 0.25 < dropped.float().mean().item() < 0.35  # p = 0.3, still active in eval mode
        # Deterministic eval without MC dropout: the kept features are those / 0.7.
        plain = model.mc_dropout(False)(x).features["pre_logits"]
        torch.testing.assert_close(a.features["pre_logits"][~dropped], plain[~dropped] / 0.7)
        # The salt: the old model's masks differ from the new model's training masks on a sample.
        drop = model.segmentor[-1]
        train_mask = drop.train()(torch.ones(3, 128, 64), sample_seeds(x)) == 0
        drop.eval()
        assert not torch.equal(train_mask, dropped)
        # Unseeded MC dropout (the default) still draws from the global RNG.
        model.mc_dropout(True)
        assert not torch.equal(model(x).logits, model(x).logits)

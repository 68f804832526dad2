"""ConfusionMatrix: hand-computed IoU / mean IoU / summaries (docs/protocol-2d.md#metrics) and a real
gloo all-reduce."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from css.metrics import EPS, ConfusionMatrix, harmonic_mean

# (target, pred) pairs, C = 4. Class 3 is predicted once but has no ground truth; two 255 elements.
PAIRS = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (1, 1), (1, 3), (2, 2), (2, 2), (2, 0), (255, 3), (255, 0)]
# rows = GT, cols = pred
EXPECTED = [[2, 1, 0, 0], [0, 3, 0, 1], [1, 0, 2, 0], [0, 0, 0, 0]]
# TP = [2, 3, 2, 0], GT = [3, 4, 3, 0], Pred = [3, 4, 2, 1]
IOU = [2 / (3 + 3 - 2 + EPS), 3 / (4 + 4 - 3 + EPS), 2 / (3 + 2 - 2 + EPS), 0 / (0 + 1 - 0 + EPS)]


def _tensors(pairs=PAIRS, shape=(3, 4)):
    target = torch.tensor([t for t, _ in pairs]).reshape(shape)
    pred = torch.tensor([p for _, p in pairs]).reshape(shape)
    return pred, target


def _filled():
    cm = ConfusionMatrix(4)
    cm.update(*_tensors())
    return cm


def test_matrix_counts_and_ignores_255():
    cm = _filled()
    assert cm.matrix.tolist() == EXPECTED
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.sum().item() == 10  # the two 255 elements are not counted


def test_iou_mean_iou_and_accuracies():
    cm = _filled()
    assert cm.iou().tolist() == pytest.approx(IOU, rel=1e-12)
    assert cm.present().tolist() == [True, True, True, False]
    # class 3 (predicted, absent from GT) is excluded from the mean; background is included
    assert cm.mean_iou() == pytest.approx((IOU[0] + IOU[1] + IOU[2]) / 3, rel=1e-12)
    assert cm.mean_iou() == pytest.approx((0.5 + 0.6 + 2 / 3) / 3, rel=1e-5)
    assert cm.pixel_accuracy() == pytest.approx(7 / 10)
    assert cm.mean_accuracy() == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3, rel=1e-5)


def test_summary_incremental_step():
    s = _filled().summary(num_old=2)  # bg + class 1 old; classes 2, 3 new (3 absent)
    assert s["bg"] == pytest.approx(0.5, rel=1e-5)
    assert s["old"] == pytest.approx(0.6, rel=1e-5)
    assert s["new"] == pytest.approx(2 / 3, rel=1e-5)
    assert s["all"] == pytest.approx((0.5 + 0.6 + 2 / 3) / 3, rel=1e-5)
    assert s["hiou"] == pytest.approx(2 * 0.6 * (2 / 3) / (0.6 + 2 / 3), rel=1e-5)
    assert s["per_class"][:3] == pytest.approx(IOU[:3], rel=1e-12)
    assert s["per_class"][3] is None
    assert (s["num_old"], s["num_classes"]) == (2, 4)


@pytest.mark.parametrize("num_old", [0, 4])
def test_summary_step0_has_no_new_classes(num_old):
    s = _filled().summary(num_old=num_old)
    assert s["old"] == pytest.approx((0.6 + 2 / 3) / 2, rel=1e-5)
    assert math.isnan(s["new"]) and math.isnan(s["hiou"])


def test_summary_group_without_present_class_is_nan():
    s = _filled().summary(num_old=1)  # no old foreground class at all
    assert math.isnan(s["old"]) and math.isnan(s["hiou"])
    assert s["new"] == pytest.approx((0.6 + 2 / 3) / 2, rel=1e-5)
    with pytest.raises(ValueError):
        _filled().summary(num_old=5)


def test_background_absent_gives_nan_bg():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([1, 2, 0]), torch.tensor([1, 2, 2]))
    s = cm.summary(num_old=2)
    assert math.isnan(s["bg"])
    assert s["all"] == pytest.approx((1 / 1 + 1 / 2) / 2, rel=1e-5)


def test_harmonic_mean():
    assert harmonic_mean(0.5, 0.25) == pytest.approx(1 / 3)
    assert harmonic_mean(0.0, 0.7) == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_mean(math.nan, 0.5))


def test_empty_matrix_metrics_are_nan():
    cm = ConfusionMatrix(2)
    assert math.isnan(cm.mean_iou()) and math.isnan(cm.pixel_accuracy())


def test_update_validation():
    cm = ConfusionMatrix(4)
    with pytest.raises(ValueError, match="outside the class range"):
        cm.update(torch.tensor([4]), torch.tensor([1]))
    with pytest.raises(ValueError, match="outside the class range"):
        cm.update(torch.tensor([-1]), torch.tensor([1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype"):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))
    # a prediction at an ignored element is never counted, so it is not checked either
    cm.update(torch.tensor([9, 1]), torch.tensor([255, 1]))
    assert cm.matrix.sum().item() == 1


def test_batches_merge_reset_and_state():
    pred, target = _tensors()
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(pred[:2], target[:2])  # shape (2, 4): image-like
    b.update(pred[2:].reshape(-1), target[2:].reshape(-1))  # point-like
    a += b
    assert a.matrix.tolist() == EXPECTED
    c = ConfusionMatrix(4)
    c.load_state_dict(a.state_dict())
    assert c.matrix.tolist() == EXPECTED
    c.merge(a)
    assert c.matrix.tolist() == (2 * torch.tensor(EXPECTED)).tolist()
    c.reset()
    assert c.matrix.sum().item() == 0
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(3))
    with pytest.raises(ValueError):
        c.load_state_dict(ConfusionMatrix(3).state_dict())


def test_all_reduce_without_process_group_is_noop():
    cm = _filled()
    cm.all_reduce()
    assert cm.matrix.tolist() == EXPECTED


def _rank_pairs(rank):
    return PAIRS[:6] if rank == 0 else PAIRS[6:]


def _all_reduce_worker(rank, tmp):
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=2)
    try:
        cm = ConfusionMatrix(4)
        pairs = _rank_pairs(rank)
        cm.update(*_tensors(pairs, shape=(len(pairs),)))
        cm.all_reduce()
        torch.save(cm.matrix, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_reduce_two_gloo_processes(tmp_path):
    mp.spawn(_all_reduce_worker, args=(str(tmp_path),), nprocs=2, join=True)
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt").tolist() == EXPECTED

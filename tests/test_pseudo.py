"""PLOP entropy pseudo-labelling (docs/protocol-2d-losses.md#pseudo-labels)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from css.losses.pseudo import (
    all_reduce_histogram,
    entropy_histogram,
    entropy_score,
    entropy_upper_bound,
    pseudo_label,
    thresholds_from_histogram,
)

# ---------------------------------------------------------------------------------------------
# entropy_score


def test_entropy_score_uniform_is_maximal_value_of_spec():
    # v max = 1 / (C_old ln C_cur); VOC 15-1 step 1 (C_old=16, C_cur=17) -> 0.0221
    # (docs/protocol-2d-losses.md#entropy)
    probs = torch.full((2, 16, 3, 4), 1 / 16)
    v = entropy_score(probs, 17)
    assert v.shape == (2, 3, 4)
    assert torch.allclose(v, torch.full_like(v, 1 / (16 * math.log(17))), rtol=1e-5)
    assert round(v[0, 0, 0].item(), 4) == 0.0221
    # VOC 15-5 (C_old=16, C_cur=21) -> 0.0205, ADE 100-50 (C_old=101, C_cur=151) -> 0.00197
    assert round(entropy_score(torch.full((1, 16, 1), 1 / 16), 21).item(), 4) == 0.0205
    assert round(entropy_score(torch.full((1, 101, 1), 1 / 101), 151).item(), 5) == 0.00197


def test_entropy_score_hand_value_and_one_hot():
    # two old classes, p = (0.25, 0.75), C_cur = 3: mean over the 2 channels, / ln 2 / ln 3
    probs = torch.tensor([[[0.25, 1.0], [0.75, 0.0]]])  # (B=1, C_old=2, N=2)
    expected = -(0.25 * math.log(0.25 + 1e-8) + 0.75 * math.log(0.75 + 1e-8)) / 2 / math.log(2) / math.log(3)
    v = entropy_score(probs, 3)
    assert v.shape == (1, 2) and v.dtype == torch.float32
    assert v[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert v[0, 1].item() == pytest.approx(0.0, abs=1e-9)  # a one-hot prediction has no entropy


def test_entropy_score_rejects_fewer_current_than_old_classes():
    with pytest.raises(ValueError, match="num_current"):
        entropy_score(torch.full((1, 4, 2), 0.25), 3)


# ---------------------------------------------------------------------------------------------
# entropy_histogram


def _loop_histogram(old_logits, labels, num_current, bins):
    """Element-by-element transcription of docs/protocol-2d-losses.md#thresholds for comparison."""
    probs = torch.softmax(old_logits.double(), dim=1)
    num_old = probs.shape[1]
    hist = np.zeros((num_current, bins))
    flat_probs = probs.movedim(1, -1).reshape(-1, num_old)
    for p, y in zip(flat_probs, labels.reshape(-1)):
        if y != 0:
            continue
        h = -(p * torch.log(p + 1e-8)).mean().item() / math.log(num_old + 1e-8)
        v = h / math.log(num_current)
        hist[int(p.argmax()), min(int(math.floor(v * bins)), bins - 1)] += 1
    return hist


def test_entropy_histogram_hand_example():
    # element 0: uniform over 2 classes -> pred 0, v = 1/(2 ln 2) = 0.7213 -> bin 72
    # element 1: confident class 1 -> v ~ 0 -> bin 0; elements 2, 3 are not background
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 20.0, 5.0, 5.0]]])  # (1, 2, 4)
    labels = torch.tensor([[0, 0, 1, 255]])
    hist = entropy_histogram(logits, labels, num_current=2, bins=100)
    assert hist.shape == (2, 100) and hist.dtype == torch.float64
    expected = torch.zeros(2, 100, dtype=torch.float64)
    expected[0, 72] = 1
    expected[1, 0] = 1
    assert torch.equal(hist, expected)


@pytest.mark.parametrize("spatial", [(5, 7), (11,)])
def test_entropy_histogram_matches_loop(spatial):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, *spatial, generator=generator) * 0.7
    labels = torch.randint(0, 3, (3, *spatial), generator=generator)
    labels[labels == 2] = 255
    hist = entropy_histogram(logits, labels, num_current=6, bins=50)
    assert hist.shape == (6, 50)
    assert hist.sum().item() == (labels == 0).sum().item()
    np.testing.assert_array_equal(hist.numpy(), _loop_histogram(logits, labels, 6, 50))


# ---------------------------------------------------------------------------------------------
# thresholds_from_histogram, protocol="reference"


def _loop_reference(hist, min_threshold=0.001):
    """Literal transcription of the reference's loop (docs/protocol-2d-losses.md#thresholds), Python max included."""
    num_classes, bins = hist.shape
    thresholds = [torch.tensor(0.0, dtype=torch.float64) for _ in range(num_classes)]
    for c in range(num_classes):
        total = hist[c].sum()
        if total <= 0:
            continue
        half = total / 2
        running_sum = 0.0
        for k in range(bins):
            if running_sum <= half <= running_sum + hist[c, k]:
                break
            running_sum += k
        thresholds[c] = k / bins + (half - running_sum) / (bins * hist[c, k])
    # max returns the float min_threshold when it wins, the tensor otherwise
    return torch.tensor([float(max(t, min_threshold)) for t in thresholds], dtype=torch.float64)


def _one_class(counts: dict[int, float], bins: int = 100) -> torch.Tensor:
    row = torch.zeros(bins, dtype=torch.float64)
    for k, count in counts.items():
        row[k] = count
    return row


def test_reference_thresholds_hand_cases():
    hist = torch.stack(
        [
            _one_class({3: 10000}),  # stops at k=3 (rs=3): 0.03 + 4997/(100*10000)
            _one_class({k: 400 for k in range(50)}),  # no bin holds half, H[99]=0 -> +inf
            _one_class({50: 4}),  # no stop, half=2 < rs=4950, H[99]=0 -> -inf -> 0.001
            _one_class({5: 2}),  # stops at k=2 with half == rs == 1 and H=0 -> 0/0 = NaN
            _one_class({}),  # no elements: stays 0 -> 0.001
            _one_class({k: 100 for k in range(100)}),  # no stop, H[99]=100: 0.99 + 50/10000
            _one_class({0: 10}),  # ADE case: everything in bin 0 -> 0.005 (docs/protocol-2d-losses.md#thresholds)
        ]
    )
    thresholds = thresholds_from_histogram(hist, protocol="reference")
    assert thresholds.shape == (7,) and thresholds.dtype == torch.float32
    assert thresholds[0].item() == pytest.approx(0.03 + 4997 / 1e6, rel=1e-6)
    assert thresholds[1].item() == math.inf
    assert thresholds[2].item() == pytest.approx(0.001)
    assert math.isnan(thresholds[3].item())
    assert thresholds[4].item() == pytest.approx(0.001)
    assert thresholds[5].item() == pytest.approx(0.995, rel=1e-6)
    assert thresholds[6].item() == pytest.approx(0.005, rel=1e-6)
    torch.testing.assert_close(thresholds.double(), _loop_reference(hist), equal_nan=True, rtol=1e-6, atol=0)


def test_reference_thresholds_negative_finite_median_becomes_min():
    # half=2: H[0], H[1] < 2 and H[2] = 0 so no bin stops the scan, and rs > 2 from k=3 on;
    # k=99, rs=4950, H[99]=2: 0.99 + (2 - 4950)/200 < 0 -> max(., 0.001) = 0.001
    hist = _one_class({0: 1, 1: 1, 99: 2}).unsqueeze(0)
    assert thresholds_from_histogram(hist, protocol="reference").item() == pytest.approx(0.001)
    assert _loop_reference(hist).item() == pytest.approx(0.001)


def test_reference_thresholds_match_loop_on_random_histograms():
    generator = torch.Generator().manual_seed(1)
    for bins in (5, 20, 100):
        sparse = (torch.rand(40, bins, generator=generator) < 0.2).double()
        hist = torch.floor(torch.rand(40, bins, generator=generator) ** 4 * 3000) * sparse
        hist[:5] = 0
        got = thresholds_from_histogram(hist, protocol="reference", min_threshold=0.002)
        torch.testing.assert_close(
            got.double(), _loop_reference(hist, 0.002), equal_nan=True, rtol=1e-6, atol=0
        )


# ---------------------------------------------------------------------------------------------
# thresholds_from_histogram, protocol="fixed"


def test_fixed_thresholds_hand_cases():
    hist = torch.stack(
        [
            _one_class({1: 4, 2: 4}, bins=10),  # half=4 reached exactly at the end of bin 1
            _one_class({0: 2, 1: 6}, bins=10),  # (1 + 2/6) / 10
            _one_class({}, bins=10),  # no elements -> min_threshold
            _one_class({0: 10}, bins=10),  # 0.05
        ]
    )
    thresholds = thresholds_from_histogram(hist, protocol="fixed", min_threshold=0.001)
    expected = torch.tensor([0.2, (1 + 2 / 6) / 10, 0.001, 0.05])
    torch.testing.assert_close(thresholds, expected)
    # a median below min_threshold is raised to it
    tiny = _one_class({0: 10}, bins=1000).unsqueeze(0)  # median 0.0005
    assert thresholds_from_histogram(tiny, protocol="fixed").item() == pytest.approx(0.001)


def test_fixed_thresholds_within_one_bin_of_numpy_median():
    # odd counts: the median is one of the values, so it lies in the bin the histogram picks
    rng = np.random.default_rng(2)
    bins = 100
    values = [rng.beta(2, 5, size=n) for n in (1, 3, 7, 101, 5001)]
    hist = torch.zeros(len(values), bins, dtype=torch.float64)
    for c, v in enumerate(values):
        np.add.at(hist[c].numpy(), np.minimum(np.floor(v * bins).astype(int), bins - 1), 1)
    thresholds = thresholds_from_histogram(hist, protocol="fixed", min_threshold=0.0)
    for c, v in enumerate(values):
        assert abs(thresholds[c].item() - np.median(v)) <= 1 / bins


def test_entropy_upper_bound_is_the_uniform_score():
    for num_old, num_current in ((16, 17), (2, 5), (101, 151)):
        uniform = torch.full((1, num_old, 1), 1.0 / num_old)
        bound = entropy_upper_bound(num_old, num_current)
        assert entropy_score(uniform, num_current).item() == pytest.approx(bound, rel=1e-5)
        peaked = torch.softmax(torch.randn(4, num_old, 50) * 3, dim=1)
        assert entropy_score(peaked, num_current).max().item() <= bound * (1 + 1e-6)


def test_fixed_thresholds_resolve_the_median_over_the_range_of_v():
    """VOC 15-1 step 1: v <= 0.0221, so bins over [0, 1] (the reference's) leave the median
    uncertain by 0.01 (half the range); bins over [0, bound] resolve it to bound / bins."""
    torch.manual_seed(0)
    num_old, num_current, bins = 16, 17, 100
    logits = torch.randn(6, num_old, 40, 40) * torch.rand(6, 1, 40, 40) * 20  # a confident old model
    labels = torch.zeros(6, 40, 40, dtype=torch.long)
    labels[:, :3] = 16  # a new class: not counted
    bound = entropy_upper_bound(num_old, num_current)
    probs = torch.softmax(logits, dim=1)
    v = entropy_score(probs, num_current)[labels == 0]
    pred = probs.argmax(dim=1)[labels == 0]
    hist = entropy_histogram(logits, labels, num_current=num_current, bins=bins, upper=bound)
    assert hist.sum().item() == v.numel()
    fine = thresholds_from_histogram(hist, protocol="fixed", min_threshold=0.0, upper=bound)
    coarse = thresholds_from_histogram(entropy_histogram(logits, labels, num_current=num_current, bins=bins),
                                       protocol="fixed", min_threshold=0.0)
    errors_fine, errors_coarse = [], []
    for c in range(num_old):
        values = v[pred == c].double().numpy()
        if len(values) < 20:
            continue
        median = float(np.median(values))
        errors_fine.append(abs(fine[c].item() - median))
        errors_coarse.append(abs(coarse[c].item() - median))
    assert len(errors_fine) >= 8
    assert max(errors_fine) <= bound / bins
    # What the [0, 1] bins cost: here the typical v is ~0.0024 and their medians are off by ~0.004.
    assert max(errors_coarse) > 10 * max(errors_fine)


def test_fixed_thresholds_are_finite_where_reference_is_not():
    hist = torch.stack([_one_class({k: 400 for k in range(50)}), _one_class({50: 4}), _one_class({5: 2})])
    thresholds = thresholds_from_histogram(hist, protocol="fixed")
    assert torch.isfinite(thresholds).all()
    torch.testing.assert_close(thresholds, torch.tensor([0.25, 0.505, 0.055]))


def test_unknown_protocol_raises():
    with pytest.raises(ValueError, match="unknown pseudo-labelling protocol 'median'.*reference, fixed"):
        thresholds_from_histogram(torch.ones(2, 10), protocol="median")


# ---------------------------------------------------------------------------------------------
# pseudo_label


def _pseudo_example():
    """Two images, six elements each, C_old = 3, C_cur = 4 (docs/protocol-2d-losses.md#relabelling)."""
    confident = {0: [20.0, 0.0, 0.0], 1: [0.0, 20.0, 0.0], 2: [0.0, 0.0, 20.0]}
    uniform = [0.0, 0.0, 0.0]
    image0 = [confident[2], uniform, confident[0], uniform, uniform, confident[1]]
    labels0 = [0, 0, 0, 3, 255, 2]  # label 2 < num_old counts as background, like the reference
    image1 = [confident[1], uniform, uniform, confident[2], uniform, uniform]
    labels1 = [3, 3, 255, 3, 255, 3]  # no background at all
    logits = torch.tensor([image0, image1]).transpose(1, 2)  # (B=2, C_old=3, N=6)
    labels = torch.tensor([labels0, labels1])
    return logits, labels


@pytest.mark.parametrize("layout", ["points", "image"])
def test_pseudo_label_hand_example(layout):
    logits, labels = _pseudo_example()
    if layout == "image":
        logits, labels = logits.reshape(2, 3, 2, 3), labels.reshape(2, 2, 3)
    original = labels.clone()
    thresholds = torch.full((4,), 0.001)  # uniform v = 1/(3 ln 4) = 0.24 fails, confident passes
    new_labels, factor = pseudo_label(labels, logits, thresholds, num_old=3, num_current=4)
    assert torch.equal(labels, original)  # the input is not modified
    expected0 = [2, 255, 0, 3, 255, 1]
    expected1 = [3, 3, 255, 3, 255, 3]
    assert new_labels.reshape(2, 6).tolist() == [expected0, expected1]
    assert new_labels.shape == labels.shape and new_labels.dtype == torch.int64
    assert factor.shape == (2,) and factor.dtype == torch.float32
    torch.testing.assert_close(factor, torch.tensor([3 / (4 + 1e-6), 0.0]))


def test_pseudo_label_factor_per_segment_of_concatenated_samples():
    """Whole scenes: the two images' elements concatenated into one sample of 12, with segments
    saying which is which, give the same labels and each element its own image's factor."""
    logits, labels = _pseudo_example()
    joined_logits = torch.cat([logits[0], logits[1]], dim=1).unsqueeze(0)  # (1, 3, 12)
    joined = labels.reshape(1, 12)
    segments = torch.tensor([[0] * 6 + [1] * 6])
    new_labels, factor = pseudo_label(joined, joined_logits, torch.full((4,), 0.001), num_old=3, num_current=4,
                                      segments=segments)
    assert new_labels.tolist() == [[2, 255, 0, 3, 255, 1, 3, 3, 255, 3, 255, 3]]
    assert factor.shape == (1, 12)
    torch.testing.assert_close(factor, torch.tensor([[3 / (4 + 1e-6)] * 6 + [0.0] * 6]))
    with pytest.raises(ValueError, match="segments"):
        pseudo_label(joined, joined_logits, torch.full((4,), 0.001), num_old=3, num_current=4, segments=segments[0])


def test_pseudo_label_nan_threshold_accepts_nothing_and_inf_accepts_all():
    logits, labels = _pseudo_example()
    thresholds = torch.tensor([math.inf, 0.001, math.nan, 0.001])
    new_labels, factor = pseudo_label(labels, logits, thresholds, num_old=3, num_current=4)
    # element 0 (confident class 2) meets the NaN threshold: rejected; uniform elements predict
    # class 0 whose threshold is +inf: accepted as 0
    assert new_labels[0].tolist() == [255, 0, 0, 3, 255, 1]
    torch.testing.assert_close(factor, torch.tensor([3 / (4 + 1e-6), 0.0]))


def test_pseudo_label_checks_shapes():
    logits, labels = _pseudo_example()
    with pytest.raises(ValueError, match="num_old"):
        pseudo_label(labels, logits, torch.full((4,), 0.001), num_old=2, num_current=4)
    with pytest.raises(ValueError, match="thresholds"):
        pseudo_label(labels, logits, torch.full((2,), 0.001), num_old=3, num_current=4)
    with pytest.raises(ValueError, match="labels must have shape"):
        pseudo_label(labels[:, :5], logits, torch.full((4,), 0.001), num_old=3, num_current=4)


# ---------------------------------------------------------------------------------------------
# all_reduce_histogram


def test_all_reduce_histogram_is_identity_without_distributed():
    hist = torch.arange(6, dtype=torch.float64).view(2, 3)
    assert all_reduce_histogram(hist) is hist


def _all_reduce_worker(rank: int, world_size: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        hist = torch.full((2, 3), float(rank + 1), dtype=torch.float64)
        total = all_reduce_histogram(hist)
        assert torch.equal(hist, torch.full((2, 3), float(rank + 1), dtype=torch.float64))
        torch.save(total, os.path.join(results, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_histogram_sums_over_processes(tmp_path):
    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    for rank in range(2):
        total = torch.load(tmp_path / f"{rank}.pt")
        assert torch.equal(total, torch.full((2, 3), 3.0, dtype=torch.float64))

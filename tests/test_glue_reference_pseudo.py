"""``protocol: reference`` end to end with pseudo-labels that are really accepted
(docs/protocol-2d-losses.md#pseudo-labels): the real controller and Trainer run the tiny LGKD task, and the
thresholds, the accepted background pixels and the step-1 CE are recomputed here from the old
model's logits with the reference's rules, written out independently of css.losses.

On the plain tiny fixture the old model is barely trained: its entropy values spread over many
0.01-wide bins, no bin holds half of the background, the reference "median" is +inf or 0.001 and
the step either accepts everything or nothing. Multiplying the step-0 classifier by 30 (a softmax
temperature of 1/30: same argmax, lower entropy) puts most values in the first bins, so the
background threshold is finite and only part of the background is accepted.
"""

import math

import torch
import torch.nn.functional as F

from css import losses as L
from css.methods import objective as methods
from css.config.build import load_config
from css.controller.steps import run_from_config

from _tiny import write_config

SHARPEN = 30.0
BINS = 100


def entropy_value(old_logits: torch.Tensor, num_current: int) -> torch.Tensor:
    """v = -(1/ln C_old) mean_c p_c ln(p_c + 1e-8), divided by ln C_cur (the reference's formula)."""
    p = torch.softmax(old_logits.double(), dim=1)
    c_old = old_logits.shape[1]
    h = -(p * torch.log(p + 1e-8)).mean(dim=1) / math.log(c_old + 1e-8)
    return h / math.log(num_current)


def reference_thresholds(batches, num_old: int, num_current: int) -> list[float]:
    """Histogram of v over background pixels per predicted class, then the reference loop (the
    running sum adds the bin index), max(median, 0.001)."""
    hist = [[0] * BINS for _ in range(num_current)]
    for old_logits, labels in batches:
        v = entropy_value(old_logits, num_current)
        pred = old_logits.argmax(dim=1)
        bg = labels < num_old
        for c in range(num_current):
            bins = torch.clamp((v[bg & (pred == c)] * BINS).floor().long(), max=BINS - 1)
            for b, n in zip(*torch.unique(bins, return_counts=True)):
                hist[c][int(b)] += int(n)
    out = []
    for row in hist:
        total = sum(row)
        if total <= 0:
            out.append(0.001)
            continue
        half, rs, k = total / 2, 0, 0
        for k in range(BINS):
            if rs <= half <= rs + row[k]:
                break
            rs += k
        median = k / BINS + (half - rs) / (BINS * row[k]) if row[k] else math.inf
        out.append(max(median, 0.001))
    return out


def test_reference_pseudo_labels_are_accepted_and_train_the_ce(tmp_path, monkeypatch):
    cfg = load_config(write_config(tmp_path, protocol="reference"))
    run_from_config(cfg, steps="0")
    path = tmp_path / "runs" / "tiny" / "step0" / "model.pt"
    saved = torch.load(path, weights_only=False)
    for key in [k for k in saved["model"] if k.startswith("cls.")]:
        saved["model"][key] = saved["model"][key] * SHARPEN
    torch.save(saved, path)

    passes, calls, relabelled = [], [], []
    real_thresholds, real_call = methods.Objective.compute_thresholds, methods.Objective.__call__
    real_pseudo = L.pseudo_label

    def keep_pseudo(*args, **kwargs):
        out = real_pseudo(*args, **kwargs)
        relabelled.append(out[0].clone())
        return out

    def tee_thresholds(self, batches):
        seen = [(o.detach().clone(), y.clone()) for o, y in batches]
        passes.append(seen)
        return real_thresholds(self, iter(seen))

    def spy(self, new, old, labels, **kwargs):
        loss, terms = real_call(self, new, old, labels, **kwargs)
        if old is not None:
            calls.append((new.logits.detach().clone(), old.logits.detach().clone(), labels.clone(),
                          float(terms["ce"]), self.thresholds.clone()))
        return loss, terms

    monkeypatch.setattr(methods.Objective, "compute_thresholds", tee_thresholds)
    monkeypatch.setattr(methods.Objective, "__call__", spy)
    monkeypatch.setattr(L, "pseudo_label", keep_pseudo)
    run_from_config(cfg, steps="1")

    num_old, num_current = 3, 5  # task 2-2 of 4 classes: bg + 2 old, then 2 new
    (batches,) = passes
    assert len(batches) == 3  # one pass of max_iters_per_epoch batches before epoch 0
    expected = reference_thresholds(batches, num_old, num_current)
    assert 0.001 < expected[0] < 0.05  # finite background threshold: part of the bg is accepted
    assert expected[1:] == [0.001] * 4  # classes never predicted on the background
    assert len(calls) == len(relabelled) == 6  # 2 epochs x 3 iterations
    accepted_share = []
    for (logits, old_logits, labels, ce, thresholds), used in zip(calls, relabelled):
        torch.testing.assert_close(thresholds.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4,
                                   atol=0)
        v = entropy_value(old_logits, num_current)
        pred = old_logits.argmax(dim=1)
        limit = thresholds.double()[pred]
        bg = labels < num_old
        accept = bg & (v < limit)
        target = labels.clone()
        target[bg & ~accept] = 255
        target[accept] = pred[accept]
        # Every image: share of its background pixels that were accepted (the adaptive factor).
        factor = accept.flatten(1).sum(1).double() / (bg.flatten(1).sum(1).double() + 1e-6)
        per_pixel = F.cross_entropy(logits.double(), target, ignore_index=255, reduction="none")
        want = float((per_pixel * factor[:, None, None]).mean())
        near = ((v - limit).abs() < 1e-6) & bg  # float32 vs float64 could decide these either way
        assert int(near.sum()) <= 2
        assert torch.equal(used[~near], target[~near])  # the labels the CE was given: the rule's
        assert ce > 0 and math.isclose(ce, want, rel_tol=1e-4), (ce, want)
        accepted_share.append(float(accept.sum()) / float(bg.sum()))
    assert all(0.3 < s < 0.99 for s in accepted_share), accepted_share
    history = torch.load(tmp_path / "runs" / "tiny" / "step1" / "model.pt", weights_only=False)["history"]
    assert all(h["terms"]["ce"] > 0 for h in history)

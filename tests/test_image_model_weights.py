"""Weight import into DeepLabV3 (docs/protocol-2d-model.md#weights): reference and css checkpoints, the
ImageNet file, and the InPlaceABN / BatchNormAct conversion of the norm scale
(docs/protocol-2d-model.md#normalisation)."""

from __future__ import annotations

import argparse

import pytest
import torch

from css.errors import CheckpointError
from css.image.weights import load_reference_weights
from css.nn import BatchNormAct

from _image_model import randomise_norms, small


def reference_file(model: torch.nn.Module, path, extra=None):
    """A checkpoint in the reference layout (docs/protocol-2d-model.md#weights): DDP 'module.' keys, no
    num_batches_tracked."""
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 30, "model_state": state, "best_score": 0.5, **(extra or {})}, path)
    return path


# ----------------------------------------------------------------------------- weight import


def test_reference_checkpoint_loads_by_name_and_reproduces_outputs(tmp_path):
    pytest.importorskip("inplace_abn")
    torch.manual_seed(0)
    source = small(norm="iabn")
    randomise_norms(source)
    path = reference_file(source, tmp_path / "15-5s-voc_LGKD_0.pth", {"opts": argparse.Namespace(lr=0.01)})
    torch.manual_seed(1)
    target = small(norm="iabn")
    with pytest.raises(CheckpointError, match="trusted"):
        load_reference_weights(target, path, trusted=False)  # the Namespace needs full unpickling
    report = load_reference_weights(target, path)
    assert (report.missing, report.unexpected, report.converted) == ([], [], [])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = source.eval()(x.clone()).logits
        torch.testing.assert_close(target.eval()(x.clone()).logits, expected, rtol=0, atol=0)


def test_reference_checkpoint_of_previous_step_leaves_new_head_missing(tmp_path):
    torch.manual_seed(0)
    path = reference_file(small(classes=(3,)), tmp_path / "step0.pth")
    model = small(classes=(3, 2))
    report = load_reference_weights(model, path, source_norm="bn")
    assert report.missing == ["cls.1.weight", "cls.1.bias"] and report.unexpected == []
    with pytest.raises(CheckpointError, match="cls.1.weight"):
        load_reference_weights(model, path, source_norm="bn", strict=True)


def test_shape_mismatch_names_key_shapes_and_cause(tmp_path):
    path = reference_file(small(classes=(4,)), tmp_path / "other-task.pth")
    with pytest.raises(CheckpointError) as info:
        load_reference_weights(small(classes=(3, 2)), path)
    message = str(info.value)
    assert "cls.0.weight" in message and "(4, 16, 1, 1)" in message and "(3, 16, 1, 1)" in message
    assert "task or step" in message and str(path) in message


def test_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "weird.pth"
    torch.save({"weights": {}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"weird\.pth.*weights, epoch"):
        load_reference_weights(small(), path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference_weights(small(), tmp_path / "absent.pth")
    torch.save({"model": {"encoder.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="encoder.weight"):
        load_reference_weights(small(), path)


def test_imagenet_file_loads_into_body_only_with_abn_conversion(tmp_path):
    torch.manual_seed(0)
    donor = small()
    randomise_norms(donor)
    body_state = {
        f"module.{k}": v for k, v in donor.body.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    body_state["module.classifier.fc.weight"] = torch.randn(1000, 64)
    body_state["module.classifier.fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet18_iabn_sync.pth.tar"
    torch.save({"state_dict": body_state}, path)

    torch.manual_seed(1)
    model = small()
    head_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("body.")}
    report = load_reference_weights(model, path)
    assert report.missing == [] and report.unexpected == []
    norm_weights = [f"body.{n}.weight" for n, m in model.body.named_modules() if isinstance(m, BatchNormAct)]
    assert sorted(report.converted) == sorted(norm_weights) and len(norm_weights) == 1 + 8 * 2 + 3
    state = model.state_dict()
    for key, value in donor.body.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        # InPlaceABN scales by |gamma| + eps (docs/protocol-2d-model.md#normalisation), gammas here include
        # negative ones.
        expected = value.abs() + 1e-5 if f"body.{key}" in norm_weights else value
        torch.testing.assert_close(state[f"body.{key}"], expected, rtol=0, atol=0)
    assert all(torch.equal(state[k], v) for k, v in head_before.items())


def test_css_checkpoint_with_norm_entry_converts_to_iabn(tmp_path):
    pytest.importorskip("inplace_abn")
    torch.manual_seed(0)
    source = small()
    randomise_norms(source)
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, BatchNormAct):
                m.weight.abs_().add_(0.1)
    torch.save({"model": source.state_dict(), "norm": "bn"}, tmp_path / "ours.pth")
    target = small(norm="iabn")
    report = load_reference_weights(target, tmp_path / "ours.pth")
    assert report.missing == [] and report.unexpected == [] and len(report.converted) == 23
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x.clone()).logits, source.eval()(x.clone()).logits)
    with torch.no_grad():
        source.head.red_bn.weight[0] = -1.0  # not representable as |gamma| + eps
    with pytest.raises(CheckpointError, match="head.red_bn.weight"):
        load_reference_weights(target, {"model": source.state_dict(), "norm": "bn"})


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (InPlaceABN's CUDA kernels)")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("train", [False, True])
def test_bn_matches_iabn_after_conversion(train, device, monkeypatch):
    pytest.importorskip("inplace_abn")
    torch.manual_seed(0)
    iabn = small(norm="iabn")
    randomise_norms(iabn)  # negative gammas: |gamma| + eps must be honoured
    bn = small(norm="bn")
    report = load_reference_weights(bn, {"model_state": iabn.state_dict()})
    assert len(report.converted) == 23
    iabn.train(train).to(device)
    bn.train(train).to(device)
    # Compare the two norms, not TF32 rounding of the convolutions.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    x = torch.randn(2, 3, 64, 64, device=device)
    out_i, out_b = iabn(x.clone()), bn(x.clone())
    torch.testing.assert_close(out_b.logits, out_i.logits, rtol=1e-4, atol=1e-5)
    for a, b in zip(out_b.features["attentions"], out_i.features["attentions"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if not train:
        return
    for key, value in iabn.state_dict().items():  # running statistics: unbiased variance, momentum 0.1
        if "running" in key:
            torch.testing.assert_close(bn.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out_b.logits)
    (out_b.logits * grad).sum().backward()
    (out_i.logits * grad).sum().backward()
    named_i = dict(iabn.named_parameters())
    for name, p in bn.named_parameters():
        q = named_i[name]
        # d(|g| + eps)/dg = sign(g) for the InPlaceABN gammas.
        expected = q.grad * q.detach().sign() if p.shape == q.shape and name in report.converted else q.grad
        scale = expected.abs().max().item()
        torch.testing.assert_close(p.grad, expected, rtol=0, atol=1e-2 * scale + 1e-6, msg=name)

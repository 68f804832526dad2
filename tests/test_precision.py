"""Mixed precision through the whole controller (docs/protocol-2d.md#mixed-precision: torch.autocast +
GradScaler replace apex O1): bf16 and fp16 autocast on CPU, and fp16/bf16 on CUDA where a GPU is
present."""

import json
import math

import pytest
import torch

from css.engine import trainer as engine
from css.config.build import load_config
from css.controller.steps import run_from_config

from _tiny import write_config

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "device,precision",
    [("cpu", "bf16"), ("cpu", "fp16"), pytest.param("cuda", "fp16", marks=CUDA), pytest.param("cuda", "bf16", marks=CUDA)],
)
def test_mixed_precision_run_trains_and_records_precision(tmp_path, monkeypatch, device, precision):
    seen = []
    original = engine.autocast

    def spy(dev, prec):
        seen.append((dev.type, prec))
        return original(dev, prec)

    monkeypatch.setattr(engine, "autocast", spy)
    from css.controller import steps as controller

    monkeypatch.setattr(controller, "cpu_has_bf16", lambda: False)  # as on this project's CI machine
    cfg = load_config(write_config(tmp_path, device=device, train={**_train(), "precision": precision}))
    run_from_config(cfg)
    run = tmp_path / "runs" / "tiny"
    assert (device, precision) in seen  # the training loop really ran under autocast
    results = json.loads((run / "results.json").read_text())
    assert results["metadata"]["precision"] == precision
    assert all(math.isfinite(results["final"][k]) for k in ("bg", "all"))
    state = torch.load(run / "step1" / "model.pt", weights_only=False)["model"]
    # Parameters stay float32 (autocast casts per op) and finite.
    floats = [v for v in state.values() if v.is_floating_point()]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in floats)
    # Both steps trained: the epoch logs carry finite LGKD terms at step 1.
    log = (run / "log.txt").read_text()
    assert "step 1 epoch 2/2" in log and " inf " not in log and " nan " not in log
    # bf16 on a CPU without bf16 instructions is emulated: the run says so (and only then).
    assert ("without bf16 instructions" in log) == (device == "cpu" and precision == "bf16")


def test_cpu_bf16_detection_reads_cpuinfo(tmp_path):
    from css.distributed import cpu_has_bf16

    cases = {
        "flags\t\t: fpu sse avx2 fma\n": False,  # this project's AMD EPYC (AVX2 only)
        "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n": True,
        "flags\t\t: fpu avx512f amx_bf16\n": True,
        "Features\t: fp asimd bf16 i8mm\n": True,  # Arm
        "Features\t: fp asimd\n": False,
    }
    for i, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"cpuinfo{i}"
        path.write_text("processor\t: 0\n" + text)
        assert cpu_has_bf16(str(path)) is expected, text
    assert cpu_has_bf16(str(tmp_path / "missing")) is None


def test_fp16_overflow_iterations_do_not_poison_the_epoch_mean(tmp_path, monkeypatch):
    """An iteration whose fp16 loss overflows is skipped by the scaler, counted in ``skipped``,
    left out of the logged mean, and hidden from the regulariser (an inf Fisher would stay)."""
    from css.methods import objective as methods

    losses = []
    real_call = methods.Objective.__call__

    def sometimes_inf(self, *a, **k):
        loss, terms = real_call(self, *a, **k)
        if len(losses) == 1:
            loss = loss * float("inf")
        losses.append(float(loss))
        return loss, terms

    monkeypatch.setattr(methods.Objective, "__call__", sometimes_inf)
    cfg = load_config(write_config(tmp_path, train={**_train(), "precision": "fp16", "epochs": 1,
                                                    "step0": {"epochs": 1}},
                                   method={"name": "ewc", "reg_importance": 100.0}))
    run_from_config(cfg, steps="0")
    assert len(losses) == 3 and math.isinf(losses[1])
    saved = torch.load(tmp_path / "runs" / "tiny" / "step0" / "model.pt", weights_only=False)
    (epoch,) = saved["history"]
    assert epoch["iterations"] == 3 and epoch["skipped"] == 1
    finite = [x for x in losses if math.isfinite(x)]
    assert epoch["terms"]["total"] == pytest.approx(sum(finite) / len(finite), rel=1e-5)
    fisher = saved["regularizer"]["fisher"]
    assert fisher and all(torch.isfinite(f).all() for f in fisher.values())
    assert any(f.abs().sum() > 0 for f in fisher.values())  # the finite iterations did count


def _train():
    from _tiny import TINY

    return dict(TINY["train"])

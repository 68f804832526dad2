"""Mixed precision against fp32 through the Trainer (docs/protocol-2d.md#mixed-precision): one LGKD
iteration of step 1 on the narrow DeepLabV3, from the same weights and batch, in fp32 and under
autocast. bf16 runs on any CPU (emulated where the CPU lacks bf16 instructions); fp16 with the
GradScaler and bf16 on CUDA run only where a GPU is present.

Tolerances. bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.39%); fp16 11 (0.049%). Autocast
runs the convolutions in low precision with float32 accumulation and the losses in float32, so
each of the ~20 layers adds about one rounding of its inputs and weights; independent roundings
grow like the square root of the depth, a few times the unit roundoff: ~2% for bf16, ~0.3% for
fp16. The loss terms must agree within 5% (bf16) / 1% (fp16), twice that estimate; a wrong cast
or a lost term moves them by far more (KD and POD are of order 1 here).

The update of one SGD step is compared by direction. The classifier heads get their gradient from
CE and LGKD through one 1x1 conv: cosine to the fp32 update above 0.98 (bf16) / 0.995 (fp16). The
body's gradient is mostly Local POD's, the normalised difference of the new and old squared maps;
at the start of a step the new model is a copy of the old one, so that difference is small next to
the maps and their rounding is amplified by |map| / |difference| (measured on this project's
2-core AVX2 CPU, bf16: loss terms within 2.3%, head update cosine > 0.99, whole update cosine
0.91, body update norm +25%). The whole update must only keep cosine above 0.8 (bf16) / 0.95
(fp16): a sign error, a skipped step or an unscaled fp16 gradient give 0 or below.
"""

import pytest
import torch
from torch.utils.data import TensorDataset

from css.config.method import MethodConfig
from css.distributed import DistEnv
from css.engine.trainer import Trainer
from css.engine.settings import TrainSettings
from css.image.models import build_model
from css.methods.objective import Objective
from css.methods.resolve import resolve_method

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TOLERANCE = {"bf16": (0.05, 0.98, 0.8), "fp16": (0.01, 0.995, 0.95)}  # terms, heads, whole update
C_OLD, C_CUR = 3, 5


def _setup():
    torch.manual_seed(0)
    kw = dict(backbone="resnet18", norm="bn", base_channels=8, head_channels=16, output_stride=16)
    old = build_model([C_OLD], **kw)
    with torch.no_grad():  # a step-0 model with non-trivial statistics and confident outputs
        for m in old.modules():
            if getattr(m, "running_var", None) is not None:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        for conv in old.cls:
            conv.weight.mul_(5)
    old.eval()
    for p in old.parameters():
        p.requires_grad_(False)
    new = build_model([C_OLD, C_CUR - C_OLD], **kw)
    new.load_state_dict(old.state_dict(), strict=False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 64, 64, generator=g)
    y = torch.randint(0, C_CUR, (4, 64, 64), generator=g)
    y[y < C_OLD] = 0
    return old, new, TensorDataset(x, y)


def _one_iteration(tmp_path, device: str, precision: str):
    old, new, data = _setup()
    old, new = old.to(device), new.to(device)
    before = {n: p.detach().clone() for n, p in new.named_parameters()}
    method = resolve_method(MethodConfig(name="lgkd"), dataset="voc")
    objective = Objective(method, step=1, num_old=C_OLD, num_current=C_CUR, protocol="fixed")
    env = DistEnv(0, 1, 0, torch.device(device))
    trainer = Trainer(model=new, old_model=old, objective=objective, dataset=data, env=env,
                      settings=TrainSettings(epochs=1, lr=0.01, batch_size=4, step=1, precision=precision),
                      resume_file=tmp_path / f"{device}_{precision}.pt")
    if precision == "fp16":
        # The default first scale (2^16) may overflow and skip this only update; 2^8 does not.
        trainer.scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 8)
    (entry,) = trainer.fit()
    assert entry.skipped == 0
    delta = {n: (p.detach() - before[n]).flatten().double().cpu() for n, p in new.named_parameters()}
    return entry.terms, delta, objective.thresholds.cpu()


def _cosine(a: dict, b: dict, prefix: str = "") -> float:
    keys = [k for k in a if k.startswith(prefix)]
    u, v = torch.cat([a[k] for k in keys]), torch.cat([b[k] for k in keys])
    assert float(v.norm()) > 0
    return float(torch.nn.functional.cosine_similarity(u, v, dim=0))


@pytest.mark.parametrize("device,precision", [
    ("cpu", "bf16"),
    pytest.param("cuda", "bf16", marks=CUDA),
    pytest.param("cuda", "fp16", marks=CUDA),
])
def test_one_mixed_precision_iteration_matches_fp32(tmp_path, device, precision):
    ref_terms, ref_delta, ref_th = _one_iteration(tmp_path, device, "fp32")
    terms, delta, th = _one_iteration(tmp_path, device, precision)
    rel, heads, whole = TOLERANCE[precision]
    assert set(terms) == set(ref_terms) == {"ce", "kd", "pod", "total"}
    for key, value in ref_terms.items():
        assert value > 1e-3, f"{key} is ~0 in fp32: the comparison would say nothing"
        assert terms[key] == pytest.approx(value, rel=rel), key
    assert _cosine(delta, ref_delta, "cls.") > heads
    assert _cosine(delta, ref_delta) > whole
    # The pseudo-label thresholds come from the old model's logits under autocast: a median moves
    # by a fraction of a bin at most.
    assert torch.allclose(th, ref_th, rtol=rel, atol=0)

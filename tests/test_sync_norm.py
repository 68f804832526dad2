"""css.nn.BatchNormAct: plain maths, and synchronisation over a 2-process gloo group
(docs/protocol-2d-model.md#normalisation).

Synchronised normalisation must make a run independent of how many processes share the global
batch (docs/contracts.md#global-batch): outputs, input gradients, summed parameter gradients and
running statistics of two processes holding parts of a batch equal one process holding all of it.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from css.errors import ConfigError, DependencyError
from css.nn import BatchNormAct
from _spawn import strict_warnings

SPLIT = (3, 2)  # unequal shares of a batch of 5: the global count must be summed, not assumed


def make_cases() -> dict[str, dict[str, torch.Tensor]]:
    """Inputs (with a non-zero mean), upstream gradients and affine parameters per case."""
    g = torch.Generator().manual_seed(0)
    cases = {}
    for name, shape, dtype in [
        ("4d", (5, 3, 4, 6), torch.float32),
        ("3d", (5, 4, 7), torch.float32),  # point clouds: (B, C, N)
        ("2d", (5, 3), torch.float64),
    ]:
        channels = shape[1]
        cases[name] = {
            "x": (torch.randn(shape, generator=g) * 2 + 3).to(dtype),
            "x2": torch.randn(shape, generator=g).to(dtype),  # a second training step
            "grad": torch.randn(shape, generator=g).to(dtype),
            "weight": torch.randn(channels, generator=g),  # negative scales included
            "bias": torch.randn(channels, generator=g),
        }
    return cases


def run_case(case: dict[str, torch.Tensor], part: slice) -> dict[str, torch.Tensor]:
    """Two training steps then one eval forward of a leaky-ReLU BatchNormAct(sync=True) on x[part]."""
    x_full = case["x"]
    norm = BatchNormAct(x_full.shape[1], sync=True).to(x_full.dtype)
    with torch.no_grad():
        norm.weight.copy_(case["weight"])
        norm.bias.copy_(case["bias"])
    x = x_full[part].clone().requires_grad_()
    y = norm(x)
    (y * case["grad"][part]).sum().backward()
    result = {"y": y.detach(), "dx": x.grad, "dw": norm.weight.grad, "db": norm.bias.grad}
    norm(case["x2"][part])
    result.update(running_mean=norm.running_mean.clone(), running_var=norm.running_var.clone())
    result["batches"] = norm.num_batches_tracked.clone()
    result["eval"] = norm.eval()(case["x"][part])
    return result


def run_model(part: slice) -> dict[str, torch.Tensor]:
    """One training forward/backward of a tiny DeepLabV3 with norm "bn" on images[part]."""
    from css.image.models import build_model

    torch.manual_seed(0)
    model = build_model([3, 2], backbone="resnet18", norm="bn", base_channels=4, head_channels=8)
    images, grad = torch.randn(5, 3, 32, 32), torch.randn(5, 5, 32, 32)
    out = model(images[part])
    (out.logits * grad[part]).sum().backward()
    result = {"logits": out.logits.detach()}
    result.update({f"grad.{n}": p.grad for n, p in model.named_parameters()})
    result.update({f"buffer.{n}": b for n, b in model.named_buffers()})
    return result


def worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    strict_warnings()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        start = sum(SPLIT[:rank])
        part = slice(start, start + SPLIT[rank])
        results = {name: run_case(case, part) for name, case in make_cases().items()}
        results["model"] = run_model(part)
        try:
            from css.image.layers import make_norm

            make_norm("iabn_sync")
            results["iabn_sync_error"] = ""
        except ConfigError as exc:
            results["iabn_sync_error"] = str(exc)
        except DependencyError:  # pragma: no cover - inplace_abn missing
            results["iabn_sync_error"] = "skipped"
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sync")
    mp.spawn(worker, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", ["4d", "3d", "2d"])
def test_two_processes_equal_one_process_on_the_global_batch(two_process_results, name):
    case = make_cases()[name]
    full = run_case(case, slice(None))  # no process group: the plain F.batch_norm path
    parts = [r[name] for r in two_process_results]
    tol = dict(rtol=1e-5, atol=1e-5) if case["x"].dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for key in ("y", "dx", "eval"):
        torch.testing.assert_close(torch.cat([p[key] for p in parts]), full[key], **tol, msg=key)
    for key in ("dw", "db"):  # each process holds the gradient of its share; DDP sums them
        torch.testing.assert_close(parts[0][key] + parts[1][key], full[key], **tol, msg=key)
    for part in parts:
        for key in ("running_mean", "running_var"):
            torch.testing.assert_close(part[key], full[key], **tol, msg=key)
        assert int(part["batches"]) == 2


def test_model_with_bn_norm_is_independent_of_the_process_count(two_process_results):
    full = run_model(slice(None))
    parts = [r["model"] for r in two_process_results]
    torch.testing.assert_close(torch.cat([p["logits"] for p in parts]), full["logits"], rtol=1e-4, atol=1e-5)
    for key, value in full.items():
        if key.startswith("grad."):  # DDP would sum (then average) these across processes
            got = parts[0][key] + parts[1][key]
            torch.testing.assert_close(got, value, rtol=1e-4, atol=1e-4 * value.abs().max().item(), msg=key)
        elif key.startswith("buffer."):
            torch.testing.assert_close(parts[0][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_iabn_sync_refuses_cpu_distributed_runs(two_process_results):
    message = two_process_results[0]["iabn_sync_error"]
    if message == "skipped":
        pytest.skip("inplace_abn is not installed")
    assert "model.norm: bn" in message and "gloo" in message


def test_plain_forward_matches_hand_computation():
    torch.manual_seed(0)
    norm = BatchNormAct(3, activation_param=0.2)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        norm.bias.copy_(torch.tensor([0.1, 0.0, -1.0]))
    x = torch.randn(4, 3, 5) * 3 + 1
    mean = x.mean(dim=(0, 2), keepdim=True)
    var = x.var(dim=(0, 2), unbiased=False, keepdim=True)
    z = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight.view(1, 3, 1) + norm.bias.view(1, 3, 1)
    expected = torch.where(z >= 0, z, 0.2 * z)
    torch.testing.assert_close(norm(x), expected)
    # running statistics: momentum 0.1, unbiased variance (n = 20 values per channel)
    torch.testing.assert_close(norm.running_mean, 0.1 * mean.flatten())
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * var.flatten() * 20 / 19)
    norm.eval()
    z = (x - norm.running_mean.view(1, 3, 1)) / torch.sqrt(norm.running_var.view(1, 3, 1) + 1e-5)
    z = z * norm.weight.view(1, 3, 1) + norm.bias.view(1, 3, 1)
    torch.testing.assert_close(norm(x), F.leaky_relu(z, 0.2))


def test_identity_activation_and_gradcheck():
    torch.manual_seed(0)
    norm = BatchNormAct(2, activation="identity").double()
    x = torch.randn(3, 2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert (norm(x) < 0).any()  # no activation applied
    leaky = BatchNormAct(2).double()
    for module in (norm, leaky):
        module.momentum = 0.0  # running buffers untouched across gradcheck's many calls
        assert torch.autograd.gradcheck(lambda t, m=module: m(t), (x,))


def test_input_dimensions_and_names():
    norm = BatchNormAct(3)
    assert list(norm.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for shape in [(4, 3), (2, 3, 5), (2, 3, 2, 2), (2, 3, 2, 2, 2)]:
        assert norm(torch.randn(shape)).shape == shape
    with pytest.raises(ValueError, match="2-D to 5-D"):
        norm(torch.randn(3))
    with pytest.raises(ValueError, match="activation"):
        BatchNormAct(3, activation="relu")

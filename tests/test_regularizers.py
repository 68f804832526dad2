"""EWC, RW and PI parameter regularisers (docs/protocol-2d-losses.md#regularisers)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from css.errors import CheckpointError
from css.losses.regularizers import EWC, PI, RW, build_regularizer


class Scalar(nn.Module):
    """One scalar parameter theta with loss theta**2 / 2, so that the gradient is theta."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([value]))

    def loss(self) -> torch.Tensor:
        return 0.5 * (self.theta**2).sum()


class Incremental(nn.Module):
    """A body and one classifier head per step, like the segmentation models."""

    def __init__(self, heads: list[int], body_out: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(2, body_out)
        self.cls = nn.ModuleList(nn.Linear(body_out, n) for n in heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return torch.cat([head(features) for head in self.cls], dim=1)


def _sgd(model: nn.Module, reg, steps: int, lr: float) -> None:
    """Plain SGD on model.loss(), calling reg.update after each backward as the engine does."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss().backward()
        reg.update(model)
        optimizer.step()


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def _shift(model: nn.Module, deltas: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in deltas:
                param.add_(deltas[name])


# ---------------------------------------------------------------------------------------------
# EWC


def test_ewc_fisher_is_ema_of_squared_gradients():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.fill_(0.5)
    ewc = EWC(model, alpha=0.9)
    # y = 1 + 6 + 0.5 = 7.5, loss y**2 / 2 -> dL/dw = y x = (7.5, 22.5), dL/db = 7.5
    (0.5 * model(torch.tensor([[1.0, 3.0]])) ** 2).sum().backward()
    ewc.update(model)
    torch.testing.assert_close(ewc.fisher["weight"], 0.9 * torch.tensor([[56.25, 506.25]]))
    torch.testing.assert_close(ewc.fisher["bias"], torch.tensor([0.9 * 56.25]))
    # second iteration with hand-set gradients: F = 0.9 g**2 + 0.1 F
    model.weight.grad = torch.tensor([[1.0, -2.0]])
    model.bias.grad = None  # skipped: keeps its Fisher
    ewc.update(model)
    expected = torch.tensor([[0.9 * 1 + 0.1 * 0.9 * 56.25, 0.9 * 4 + 0.1 * 0.9 * 506.25]])
    torch.testing.assert_close(ewc.fisher["weight"], expected)
    torch.testing.assert_close(ewc.fisher["bias"], torch.tensor([0.9 * 56.25]))


def _ewc_state(fisher_w, fisher_b, weight, bias):
    return {
        "kind": "ewc",
        "fisher": {"weight": torch.tensor([fisher_w]), "bias": torch.tensor([fisher_b])},
        "params": {"weight": torch.tensor([weight]), "bias": torch.tensor([bias])},
    }


@pytest.mark.parametrize("normalize, expected", [(True, 8.5), (False, 31.0), ("per_tensor", 13.0)])
def test_ewc_penalty_hand_values(normalize, expected):
    # F = (1, 3) for the weight, 2 for the bias. Global min-max normalisation: (0, 1) and 0.5.
    # Moves (1, 2) and 3: normalised 0*1 + 1*4 + 0.5*9 = 8.5; raw 1*1 + 3*4 + 2*9 = 31.
    # Per tensor: the weight's (1, 3) -> (0, 1), the bias alone has no spread and is positive -> 1:
    # 0*1 + 1*4 + 1*9 = 13.
    model = nn.Linear(2, 1)
    state = _ewc_state([1.0, 3.0], 2.0, [0.5, -1.0], 0.25)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.5, 1.0]]))
        model.bias.fill_(3.25)
    ewc = EWC(model, normalize=normalize, old_state=state)
    penalty = ewc.penalty(model)
    assert penalty.dtype == torch.float32 and penalty.dim() == 0
    assert penalty.item() == pytest.approx(expected)
    # the penalty is differentiable: d/dtheta = 2 w (theta - theta_old)
    penalty.backward()
    weights = torch.tensor([[0.0, 1.0]]) if normalize else torch.tensor([[1.0, 3.0]])
    torch.testing.assert_close(model.weight.grad, 2 * weights * torch.tensor([[1.0, 2.0]]))


def test_ewc_penalty_is_zero_without_old_state():
    model = nn.Linear(2, 1)
    penalty = EWC(model).penalty(model)
    assert penalty.item() == 0.0 and not penalty.requires_grad


def test_penalty_skips_new_heads_and_changed_shapes():
    old = Incremental([2])
    ewc_old = EWC(old)
    for param in old.parameters():
        param.grad = torch.ones_like(param)
    ewc_old.update(old)  # every Fisher entry 0.9: no spread -> normalised weights 1
    state = ewc_old.state_dict()

    new = Incremental([2, 1], body_out=3)
    new.load_state_dict(old.state_dict(), strict=False)
    reshaped = Incremental([2, 1], body_out=4)  # body and cls.0.weight change shape
    reshaped.cls[0].bias.data.copy_(old.cls[0].bias.data)
    cases = [(new, {"body.weight", "body.bias", "cls.0.weight", "cls.0.bias"}), (reshaped, {"cls.0.bias"})]
    for model, expected_names in cases:
        ewc = EWC(model, old_state=state)
        assert ewc.penalty(model).item() == 0.0
        # moving the new head costs nothing, moving a regularised parameter costs sum of d**2
        _shift(model, {"cls.1.weight": torch.tensor(5.0), "cls.1.bias": torch.tensor(5.0)})
        assert ewc.penalty(model).item() == 0.0
        for name in expected_names:
            param = dict(model.named_parameters())[name]
            _shift(model, {name: torch.tensor(0.5)})
            assert ewc.penalty(model).item() == pytest.approx(0.25 * param.numel())
            _shift(model, {name: torch.tensor(-0.5)})


def test_ewc_state_roundtrip_through_torch_save():
    model = Incremental([2])
    ewc = EWC(model)
    for _ in range(3):
        model.zero_grad()
        model(torch.randn(4, 2)).pow(2).sum().backward()
        ewc.update(model)
    state = ewc.state_dict()
    loaded = _roundtrip(state)
    assert loaded["kind"] == "ewc" and set(loaded) == {"kind", "fisher", "params"}
    for key in ("fisher", "params"):
        for name, tensor in state[key].items():
            assert torch.equal(loaded[key][name], tensor)
    _shift(model, {name: torch.full_like(p, 0.1) for name, p in model.named_parameters()})
    direct = EWC(model, old_state=state).penalty(model)
    via_disk = EWC(model, old_state=loaded).penalty(model)
    assert direct.item() > 0
    assert via_disk.item() == pytest.approx(direct.item())


def test_state_dict_is_a_snapshot():
    model = Scalar(2.0)
    ewc = EWC(model)
    state = ewc.state_dict()
    _shift(model, {"theta": torch.tensor(1.0)})
    assert state["params"]["theta"].item() == 2.0


def test_load_state_dict_rejects_mismatched_state():
    model = nn.Linear(2, 1)
    pi_state = PI(model).state_dict()
    with pytest.raises(CheckpointError, match="does not fit EWC.*kind 'pi'"):
        EWC(model, old_state=pi_state)
    with pytest.raises(CheckpointError, match="missing keys \\['fisher'\\]"):
        EWC(model, old_state={"kind": "ewc", "params": {}})
    with pytest.raises(CheckpointError, match="must be a dict"):
        EWC(model, old_state=[1, 2])


def test_param_filter_restricts_parameters():
    model = Incremental([2])
    ewc = EWC(model, param_filter=lambda name: name.startswith("cls."))
    assert set(ewc.fisher) == {"cls.0.weight", "cls.0.bias"}
    assert set(ewc.state_dict()["params"]) == {"cls.0.weight", "cls.0.bias"}
    model.body.weight.requires_grad_(False)
    assert "body.weight" not in EWC(model).fisher  # frozen parameters never take part


# ---------------------------------------------------------------------------------------------
# PI


def test_pi_path_integral_hand_value():
    # theta = 2, loss theta**2/2, SGD lr 0.5: theta 2 -> 1 -> 0.5 with gradients 2 and 1.
    # omega = -2 (1 - 2) - 1 (0.5 - 1) = 2.5 (the last move is added by state_dict);
    # total change -1.5 -> score = 2.5 / (2.25 + eps)
    model = Scalar(2.0)
    pi = PI(model, epsilon=1e-3)
    _sgd(model, pi, steps=2, lr=0.5)
    state = pi.state_dict()
    assert state["kind"] == "pi"
    assert state["params"]["theta"].item() == pytest.approx(0.5)
    assert state["score"]["theta"].item() == pytest.approx(2.5 / (2.25 + 1e-3))
    # state_dict does not consume the pending move: calling it again gives the same score
    assert pi.state_dict()["score"]["theta"].item() == pytest.approx(2.5 / (2.25 + 1e-3))


def test_pi_score_is_clamped_at_zero():
    # the gradient pushes up while the parameter moves up: omega < 0 -> score 0
    model = Scalar(1.0)
    pi = PI(model)
    model.theta.grad = torch.tensor([-1.0])
    pi.update(model)
    _shift(model, {"theta": torch.tensor(-1.0)})
    assert pi.state_dict()["score"]["theta"].item() == 0.0


# ---------------------------------------------------------------------------------------------
# RW


def test_rw_windowed_score_hand_value():
    # SGD lr 0.5 on theta**2/2 from 2: theta 2, 1, 0.5, 0.25 with gradients 2, 1, 0.5.
    # Fisher: 3.6, then 0.9 + 0.36 = 1.26, then 0.225 + 0.126 = 0.351.
    # Window 1 (iterations=2) closes at the 2nd update: omega = 2, change -1, F = 1.26.
    # Window 2 is closed by state_dict: omega = -1 (0.5 - 1) - 0.5 (0.25 - 0.5) = 0.625,
    # change 0.25 - 1 = -0.75, F = 0.351.
    eps = 1e-3
    model = Scalar(2.0)
    rw = RW(model, alpha=0.9, iterations=2, epsilon=eps)
    _sgd(model, rw, steps=3, lr=0.5)
    state = rw.state_dict()
    assert state["kind"] == "rw"
    assert state["fisher"]["theta"].item() == pytest.approx(0.351)
    expected = 2 / (0.5 * 1.26 * 1 + eps) + 0.625 / (0.5 * 0.351 * 0.5625 + eps)
    assert state["score"]["theta"].item() == pytest.approx(expected, rel=1e-5)
    assert state["params"]["theta"].item() == pytest.approx(0.25)

    # without normalisation the weight is F + score
    rw_next = RW(model, normalize=False, old_state=_roundtrip(state))
    _shift(model, {"theta": torch.tensor(0.5)})
    assert rw_next.penalty(model).item() == pytest.approx((0.351 + expected) * 0.25, rel=1e-5)


def test_rw_normalises_fisher_and_score_separately():
    model = nn.Linear(2, 1)
    state = {
        "kind": "rw",
        "fisher": {"weight": torch.tensor([[0.0, 10.0]]), "bias": torch.tensor([5.0])},
        "score": {"weight": torch.tensor([[4.0, 2.0]]), "bias": torch.tensor([0.0])},
        "params": {"weight": model.weight.detach().clone(), "bias": model.bias.detach().clone()},
    }
    rw = RW(model, old_state=state)
    # weights: weight (0 + 1, 1 + 0.5) = (1, 1.5), bias 0.5 + 0 = 0.5
    _shift(model, {"weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([2.0])})
    assert rw.penalty(model).item() == pytest.approx(1 * 1 + 1.5 * 4 + 0.5 * 4)


# ---------------------------------------------------------------------------------------------
# shared behaviour


class Quadratic(nn.Module):
    """A small model with a quadratic loss whose minimum is away from the start."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(3, 4, generator=generator))
        self.b = nn.Parameter(torch.randn(5, generator=generator))
        self.register_buffer("target", torch.randn(4, generator=generator))

    def loss(self) -> torch.Tensor:
        return ((self.a - self.target) ** 2).sum() + (self.b**2 * torch.arange(5.0)).sum()


@pytest.mark.parametrize("name", ["ewc", "pi", "rw"])
def test_penalty_zero_at_old_params_and_grows_with_distance(name):
    model = Quadratic()
    reg = build_regularizer(name, model)
    _sgd(model, reg, steps=12, lr=0.05)
    state = _roundtrip(reg.state_dict())
    reg_next = build_regularizer(name, model, old_state=state)
    assert reg_next.penalty(model).item() == 0.0
    direction = {"a": torch.randn(3, 4), "b": torch.randn(5)}
    previous = 0.0
    for scale in (0.5, 1.0, 2.0):
        moved = Quadratic()
        moved.load_state_dict(model.state_dict())
        _shift(moved, {key: scale * value for key, value in direction.items()})
        value = reg_next.penalty(moved).item()
        assert value > previous >= 0.0
        if scale == 1.0:
            one = value
        previous = value
    assert previous == pytest.approx(4 * one, rel=1e-5)  # quadratic in the distance


@pytest.mark.parametrize("name", ["ewc", "pi", "rw"])
def test_state_tensors_follow_parameters(name):
    model = Quadratic().double()
    reg = build_regularizer(name, model)
    _sgd(model, reg, steps=2, lr=0.05)
    state = reg.state_dict()
    for key, tensors in state.items():
        if key == "kind":
            continue
        assert set(tensors) == {"a", "b"}
        for tensor_name, tensor in tensors.items():
            param = dict(model.named_parameters())[tensor_name]
            assert tensor.device == param.device and tensor.shape == param.shape
            assert not tensor.requires_grad


def test_build_regularizer_names():
    model = nn.Linear(2, 1)
    assert isinstance(build_regularizer("ewc", model), EWC)
    assert isinstance(build_regularizer("RW", model, iterations=5), RW)
    assert isinstance(build_regularizer("pi", model, epsilon=0.1), PI)
    assert build_regularizer(None, model) is None
    assert build_regularizer("none", model) is None
    with pytest.raises(ValueError, match="unknown regularizer 'l2'; valid choices: ewc, rw, pi"):
        build_regularizer("l2", model)


@pytest.mark.parametrize("name", ["ewc", "pi", "rw"])
def test_progress_state_resumes_a_step_exactly(name):
    """An interrupted step continues with the accumulators it had (Fisher, path integral, RW
    windows) and the previous step's penalty, so its final state equals an uninterrupted step's."""
    torch.manual_seed(0)
    kwargs = {"iterations": 3} if name == "rw" else {}
    model = Incremental([2, 2])
    previous = build_regularizer(name, model, **kwargs)
    _sgd_incremental(model, previous, steps=4, seed=1)
    old_state = _roundtrip(previous.state_dict())
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}

    full = build_regularizer(name, model, old_state=old_state, **kwargs)
    _sgd_incremental(model, full, steps=4, seed=2)
    progress, middle = _roundtrip(full.progress_state()), {k: v.detach().clone() for k, v in model.state_dict().items()}
    _sgd_incremental(model, full, steps=5, seed=3)
    expected, expected_params = full.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(start)  # a new process: same start, regulariser rebuilt from old_state
    resumed = build_regularizer(name, model, old_state=old_state, **kwargs)
    model.load_state_dict(middle)
    resumed.load_progress_state(progress)
    # The penalty is still the previous step's: anchored at its parameters, not the middle ones.
    assert resumed._anchors and all(torch.equal(a, old_state["params"][k]) for k, a in resumed._anchors.items())
    _sgd_incremental(model, resumed, steps=5, seed=3)
    got = resumed.state_dict()
    for k, v in expected_params.items():
        torch.testing.assert_close(model.state_dict()[k], v)
    for key in expected:
        if key == "kind":
            continue
        for pname, value in expected[key].items():
            torch.testing.assert_close(got[key][pname], value, msg=f"{key}.{pname}")
    # Resuming from the next step's state instead (what the engine used to do) gives another result.
    wrong = build_regularizer(name, model, old_state=expected, **kwargs)
    assert any(not torch.equal(wrong._anchors[k], resumed._anchors[k]) for k in resumed._anchors)


def test_progress_state_rejects_another_regularizer():
    model = Incremental([2])
    with pytest.raises(CheckpointError, match="EWC regulariser progress does not fit.*resume.pt"):
        EWC(model).load_progress_state(RW(model).progress_state())


def _sgd_incremental(model: nn.Module, reg, steps: int, seed: int) -> None:
    """SGD on a random regression loss plus the regulariser's penalty, as the engine runs it."""
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        x, y = torch.randn(8, 2, generator=gen), torch.randn(8, 4 if len(model.cls) == 2 else 2, generator=gen)
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        reg.update(model)
        penalty = reg.penalty(model)
        if penalty.requires_grad:  # 0 without an old state
            penalty.backward()
        optimizer.step()

"""The training loop's bookkeeping (css.engine): the logged total includes the regulariser's
penalty (docs/protocol-2d.md#logging), and per-sample seeding leaves the caller's random streams
alone (docs/contracts.md#global-batch)."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from css import losses as L
from css.config.method import MethodConfig
from css.distributed import DistEnv, derived_seed, seed_everything
from css.engine.loaders import SeededDataset
from css.engine.trainer import Trainer
from css.engine.settings import TrainSettings
from css.methods.objective import Objective
from css.methods.resolve import resolve_method


class TinySeg(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        logits = self.conv(x)
        return SimpleNamespace(logits=logits, logits_small=logits, features={})


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 2, (n, 4, 4), generator=g))


@pytest.mark.parametrize("name", ["ewc", "rw", "pi"])
def test_logged_total_includes_the_regulariser(tmp_path, name):
    data = _data()
    # The previous step's regulariser state: importance from one backward pass of another model.
    prev = TinySeg(0)
    reg0 = L.build_regularizer(name, prev, old_state=None)
    L.cross_entropy(prev(data.tensors[0]).logits, data.tensors[1]).backward()
    reg0.update(prev)
    for p in prev.parameters():  # PI/RW score the change of theta over the step
        p.data.add_(0.1)
    reg0.update(prev)
    state = reg0.state_dict()

    model = TinySeg(1)  # other weights: the penalty is > 0 from the first iteration
    method = resolve_method(MethodConfig(name=name), dataset="voc")
    objective = Objective(method, step=1, num_old=1, num_current=2)
    objective.attach_regularizer(model, state)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    trainer = Trainer(model=model, old_model=None, objective=objective, dataset=data, env=env,
                      settings=TrainSettings(epochs=2, lr=0.01, batch_size=4, seed=0, step=1),
                      resume_file=tmp_path / "resume.pt")
    history = trainer.fit()
    assert len(history) == 2
    for entry in history:
        terms = entry.terms
        assert set(terms) == {"ce", "reg", "total"}
        assert terms["reg"] > 1e-4  # a real penalty, or the check below says nothing
        assert terms["total"] == pytest.approx(terms["ce"] + terms["reg"], rel=1e-6, abs=0)


class Draws(Dataset):
    """A sample that draws from every global RNG, as an augmentation does."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(3), np.random.rand(2), random.random()


def _states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _same(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]
    assert a[2] == b[2]


def test_seeded_sample_restores_the_callers_rng_state():
    seed_everything(123)
    torch.rand(5), np.random.rand(), random.random()  # somewhere in the middle of the streams
    before = _states()
    ds = SeededDataset(Draws(), seed=7, step=1)
    ds.set_epoch(2)
    sample = ds[3]
    _same(_states(), before)
    # The sample itself is drawn from the seed of (seed, step, epoch, index), as before.
    seed_everything(derived_seed(7, 1, 2, 3))
    expected = Draws()[3]
    assert torch.equal(sample[0], expected[0]) and np.array_equal(sample[1], expected[1])
    assert sample[2] == expected[2]
    assert not torch.equal(ds[4][0], sample[0])  # another index, another seed


def test_loading_samples_does_not_reset_the_main_process_stream():
    """num_workers: 0 loads in the main process: its draws between samples continue one stream."""
    ds = SeededDataset(Draws(), seed=0, step=0)
    seed_everything(5)
    mixed = []
    for i in range(3):
        mixed.append((torch.rand(2), np.random.rand(), random.random()))
        ds[i]
    seed_everything(5)
    plain = [(torch.rand(2), np.random.rand(), random.random()) for _ in range(3)]
    for (t1, n1, r1), (t2, n2, r2) in zip(mixed, plain):
        assert torch.equal(t1, t2) and n1 == n2 and r1 == r2


def test_rng_state_is_restored_when_loading_fails():
    class Broken(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            torch.rand(1)
            raise OSError("unreadable")

    seed_everything(9)
    before = _states()
    with pytest.raises(OSError):
        SeededDataset(Broken(), seed=0, step=0)[0]
    _same(_states(), before)

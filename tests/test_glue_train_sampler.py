"""The training sampler's iteration count under DDP (docs/process-count.md#what-is-guaranteed): the
reference pads the shuffled order to a multiple of the world size, so 31 samples with a global batch
of 16 give 1 iteration to one process and 2 to two (the second partly of repeated samples);
``protocol: fixed`` drops the tail instead and every process count runs the same global batches."""

from pathlib import Path

import pytest
import torch

from css.distributed import DistEnv
from css.engine.loaders import train_loader
from css.engine.settings import TrainSettings


ROOT = Path(__file__).resolve().parent.parent


class Indices(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def _batches(n, rank, world, protocol, epoch=0):
    settings = TrainSettings(epochs=1, lr=0.1, batch_size=16)
    settings.protocol = protocol
    loader = train_loader(Indices(n), DistEnv(rank, world, rank, torch.device("cpu")), settings)
    loader.sampler.set_epoch(epoch)
    return [set(b.tolist()) for b in loader]


def _order(n, epoch):
    """The shuffled order of every process count: torch.randperm seeded with 0 + epoch."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).tolist()


def test_reference_pads_and_gets_an_extra_iteration_with_two_processes():
    single = _batches(31, 0, 1, "reference")
    r0, r1 = _batches(31, 0, 2, "reference"), _batches(31, 1, 2, "reference")
    assert len(single) == 1 and len(r0) == len(r1) == 2  # floor(31/16) vs floor(ceil(31/2)/8)
    order = _order(31, 0)
    assert single == [set(order[:16])]
    # Padded to 32 with the head of the order: the second global batch repeats order[0].
    assert r0[1] | r1[1] == set(order[16:]) | {order[0]}


def test_fixed_runs_the_same_global_batches_for_every_process_count():
    for n in (31, 37, 47, 48):
        for epoch in (0, 1):
            order = _order(n, epoch)
            want = [set(order[i * 16:(i + 1) * 16]) for i in range(n // 16)]
            assert _batches(n, 0, 1, "fixed", epoch) == want
            r0, r1 = _batches(n, 0, 2, "fixed", epoch), _batches(n, 1, 2, "fixed", epoch)
            assert [a | b for a, b in zip(r0, r1)] == want and len(r0) == len(r1) == n // 16
            assert all(not (a & b) for a, b in zip(r0, r1))


@pytest.mark.parametrize("protocol", ["reference", "fixed"])
def test_the_controller_hands_the_protocol_to_the_training_sampler(protocol):
    """Controller.settings carries cfg.protocol, so a fixed run trains without the padded tail."""
    from types import SimpleNamespace

    from css.config.build import load_config
    from css.controller.steps import Controller
    from css.modality.registry import get_modality

    cfg = load_config(ROOT / "configs" / "demo" / "image.yaml", [f"protocol={protocol}"])
    settings = Controller.settings(SimpleNamespace(cfg=cfg, modality=get_modality("image")), 1)
    assert settings.protocol == protocol
    r0 = _batches(31, 0, 2, settings.protocol)
    assert len(r0) == (2 if protocol == "reference" else 1)

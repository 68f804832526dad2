"""A 2-process gloo DDP run matches a 1-process run with the same global batch
(docs/contracts.md#global-batch: results must not depend on how many processes share the batch)."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiny import TINY, write_config  # noqa: E402
from _spawn import close as _close, history as _history, run as _run  # noqa: E402


def test_two_process_gloo_run_matches_one_process(tmp_path):
    """Same global batch, same samples, same augmentations, synchronised BN, averaged gradients.

    One iteration per epoch, so each epoch's logged loss is one iteration's. The first iteration
    of a step sees equal weights in both runs: its losses agree to float32 rounding. The second
    sees weights after one update from gradients that were summed in a different order (autograd
    vs the all-reduce); in this narrow random network batch norm amplifies that rounding (seen on
    a 16-core Xeon, torch 2.11: 1e-7 after one iteration, 3e-4 after three), so it is compared at
    1e-3, which still catches a wrongly averaged gradient (a doubled step moves the loss ~2%)."""
    runs = tmp_path / "runs"
    train = dict(TINY["train"], max_iters_per_epoch=1)
    _run(1, (write_config(tmp_path, name="one", train=train), None))
    _run(2, (write_config(tmp_path, name="two", train=train), None))
    # A 2-process run that starts from the 1-process step-0 model: step 1 starts from equal weights.
    _run(2, (write_config(tmp_path, name="init", train=train), runs / "one" / "step0" / "model.pt"))
    one, two, init = runs / "one", runs / "two", runs / "init"
    h1, h2 = _history(one, 0), _history(two, 0)
    assert [e["iterations"] for e in h1] == [e["iterations"] for e in h2] == [1, 1]
    assert _close(h1[0]["terms"], h2[0]["terms"], 1e-5), (h1[0], h2[0])
    assert _close(h1[1]["terms"], h2[1]["terms"], 1e-3), (h1[1], h2[1])
    h1, h3 = _history(one, 1), _history(init, 1)
    assert set(h1[0]["terms"]) == {"ce", "kd", "pod", "total"}
    assert _close(h1[0]["terms"], h3[0]["terms"], 1e-5), (h1[0], h3[0])
    assert _close(h1[1]["terms"], h3[1]["terms"], 1e-3), (h1[1], h3[1])
    r1 = json.loads((one / "results.json").read_text())
    r3 = json.loads((init / "results.json").read_text())
    # Step 0 of the init run evaluates the same weights: confusion matrices summed over 2 shards
    # equal the 1-process matrix.
    assert r3["steps"][0]["iou"] == r1["steps"][0]["iou"]
    assert r3["metadata"]["world_size"] == 2 and r3["metadata"]["global_batch"] == 8


def test_every_iteration_splits_the_same_global_batch_over_processes():
    """Iteration i of a 2-process run consumes exactly the samples of iteration i of a 1-process
    run (the DistributedSampler shards perm[r::W] line up batch by batch), in every epoch."""
    from css.distributed import DistEnv
    from css.engine.settings import TrainSettings
    from css.engine.loaders import train_loader

    class Indices(torch.utils.data.Dataset):
        def __len__(self):
            return 37

        def __getitem__(self, i):
            return i

    settings = TrainSettings(epochs=2, lr=0.1, batch_size=8)

    def batches(rank, world, epoch):
        loader = train_loader(Indices(), DistEnv(rank, world, rank, torch.device("cpu")), settings)
        loader.sampler.set_epoch(epoch)
        return [set(b.tolist()) for b in loader]

    for epoch in range(2):
        single = batches(0, 1, epoch)
        r0, r1 = batches(0, 2, epoch), batches(1, 2, epoch)
        assert len(single) == len(r0) == len(r1) == 4  # 37 samples, global batch 8, drop_last
        assert [a | b for a, b in zip(r0, r1)] == single
        assert all(not (a & b) for a, b in zip(r0, r1))
    assert batches(0, 1, 0) != batches(0, 1, 1)  # a new order every epoch


def test_rank0_builds_each_dataset_before_the_others(monkeypatch):
    """A first DDP run scans the label files on rank 0 (writing the cache) while the other ranks
    wait at a barrier, then read that cache: one scan instead of one per process."""
    from types import SimpleNamespace

    from css.controller import steps as controller
    from css.distributed import DistEnv

    events = []
    monkeypatch.setattr(controller, "barrier", lambda: events.append("barrier"))
    modality = SimpleNamespace(dataset=lambda cfg, task, step, split: events.append(f"build {split}") or [step])
    for rank, expected in ((0, ["build train", "barrier"]), (1, ["barrier", "build train"])):
        events.clear()
        ctl = SimpleNamespace(env=DistEnv(rank, 2, rank, torch.device("cpu")), modality=modality, cfg=None, task=None)
        assert controller.Controller.dataset(ctl, 3, "train") == [3]
        assert events == expected
    # Rank 0 failing still releases the others, who then meet the same error themselves.
    def broken(cfg, task, step, split):
        events.append("build")
        raise FileNotFoundError("label file missing")

    events.clear()
    ctl = SimpleNamespace(env=DistEnv(0, 2, 0, torch.device("cpu")), modality=SimpleNamespace(dataset=broken),
                          cfg=None, task=None)
    with pytest.raises(FileNotFoundError):
        controller.Controller.dataset(ctl, 0, "train")
    assert events == ["build", "barrier"]
    events.clear()
    single = SimpleNamespace(env=DistEnv(0, 1, 0, torch.device("cpu")), modality=modality, cfg=None, task=None)
    controller.Controller.dataset(single, 0, "test")
    assert events == ["build test"]  # no barrier without a process group

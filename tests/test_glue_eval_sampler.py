"""The test sampler of each protocol through the controller, with 2 gloo processes and a test set
that 2 does not divide (docs/protocol-2d.md#processes-and-batch): ``protocol: reference`` shuffles
with seed 0 and pads to a multiple of the world size by repeating the first image of its order
(one image counted twice), here with the reference's centre-crop evaluation and the training batch
as evaluation batch; ``protocol: fixed`` counts every image once. The expected confusion matrices
are summed here image by image in one process."""

import json
import os
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _spawn import free_port, strict_warnings  # noqa: E402
from _tiny import write_config  # noqa: E402

# 14 test images: step 0 of task 2-2 keeps the 9 with a class of that step (odd, checked below).
OPTIONS = {"num_images": {"train": 16, "test": 14}, "size": 64, "num_classes": 4, "seed": 0}


def _worker(rank: int, world: int, port: int, jobs: list[tuple[str, str]]) -> None:
    strict_warnings()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from css.config.build import load_config
    from css.controller.steps import run_from_config
    from css.distributed import shutdown

    try:
        for cfg_path, init in jobs:  # evaluate the given step-0 weights: no training
            run_from_config(load_config(cfg_path), steps="0", init_step0=init)
    finally:
        shutdown()


def _expected(cfg_path: Path, weights: Path, repeat_first_of_order: bool):
    """Confusion matrix over the step-0 test set image by image (+ the padded repeat) and the count."""
    from css.config.build import load_config
    from css.distributed import DistEnv
    from css.controller.handover import load_step
    from css.modality.registry import get_modality

    cfg = load_config(cfg_path)
    modality = get_modality("image")
    task = modality.task(cfg)
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    model, _ = load_step(modality, cfg, task, 0, weights, env)
    model.eval()
    test = modality.dataset(cfg, task, 0, "test")
    n, c = len(test), task.num_classes(0)
    order = list(range(n))
    if repeat_first_of_order:  # DistributedSampler(shuffle=True, seed=0), epoch 0, padded to 2
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
        order += order[: (-n) % 2]
    cm = torch.zeros(c, c, dtype=torch.int64)
    sizes = set()
    with torch.no_grad():
        for i in order:
            x, y = test[i]
            sizes.add(tuple(x.shape[-2:]))
            pred = model(x[None]).logits.argmax(1)[0]
            keep = (y >= 0) & (y < c)
            cm += torch.bincount(c * y[keep] + pred[keep], minlength=c * c).view(c, c)
    tp = cm.diag().double()
    iou = tp / (cm.sum(1).double() + cm.sum(0).double() - tp + 1e-6)
    return n, len(order), sizes, [float(v) if cm.sum(1)[k] > 0 else None for k, v in enumerate(iou)]


def test_reference_pads_the_test_set_and_fixed_counts_each_image_once(tmp_path):
    from css.config.build import load_config
    from css.controller.steps import run_from_config

    one = write_config(tmp_path, name="one", data={"options": OPTIONS})
    run_from_config(load_config(one), steps="0")
    weights = tmp_path / "runs" / "one" / "step0" / "model.pt"
    ref = write_config(tmp_path, name="ref", protocol="reference",
                       data={"options": OPTIONS, "eval_mode": "crop", "crop_size": 48})
    fix = write_config(tmp_path, name="fix", protocol="fixed", data={"options": OPTIONS})
    mp.spawn(_worker, args=(2, free_port(), [(str(ref), str(weights)), (str(fix), str(weights))]), nprocs=2,
             join=True)
    n, padded, ref_sizes, ref_iou = _expected(ref, weights, True)
    n_fix, counted, fix_sizes, fix_iou = _expected(fix, weights, False)
    assert n == n_fix and n % 2 == 1, n  # an odd test set: the reference sampler must pad
    assert (padded, counted) == (n + 1, n)
    assert ref_sizes == {(48, 48)} and fix_sizes == {(64, 64)}  # centre crop of the resized image vs whole
    results = {name: json.loads((tmp_path / "runs" / name / "results.json").read_text())["steps"][0]
               for name in ("ref", "fix")}
    assert results["ref"]["num_test"] == n + 1 and results["fix"]["num_test"] == n
    for name, want in (("ref", ref_iou), ("fix", fix_iou)):
        got = results[name]["iou"]
        assert [g is None for g in got] == [w is None for w in want], name
        assert all(abs(g - w) < 1e-6 for g, w in zip(got, want) if w is not None), (name, got, want)
    # The repeated image changes the figures: without padding the reference run would not match.
    _, _, _, unpadded = _expected(ref, weights, False)
    assert any(abs(a - b) > 1e-5 for a, b in zip(ref_iou, unpadded) if a is not None)

"""Full-coverage evaluation (css.pointcloud.coverage, docs/pointcloud-evaluation.md#full-coverage)
against a direct per-point computation on the hand-made S3DIS-like test split of _pc_fixtures."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from css.distributed import DistEnv
from css.pointcloud.coverage import FULL_SEED_SALT, cover, evaluate_full
from css.pointcloud.data import build_dataset, load_dataset_task
from css.pointcloud.transforms import block_features

from _pc_fixtures import S3DIS_TEST, make_s3dis

STEPS = [[0, 1, 2], [3], [4, 5]]
CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class PointLinear(torch.nn.Module):
    """A per-point linear model (a 1x1 convolution): its logits at a point depend on that point's
    features only, so the test can recompute them point by point. Counts the samples it sees."""

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(channels, 9, generator=g))
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return SimpleNamespace(logits=torch.einsum("ci,bin->bcn", self.weight, x))


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    make_s3dis(root)
    task = load_dataset_task("s3dis", STEPS)
    return build_dataset("s3dis", root, task=task, step=2, split="test", num_points=512, seed=0), task


def test_cover_by_hand():
    rows, counted = cover(5, 2)  # file order: 0 1 | 2 3 | 4 + padding 0
    assert rows.tolist() == [[0, 1], [2, 3], [4, 0]]
    assert counted.tolist() == [[True, True], [True, True], [True, False]]
    rows, counted = cover(3, 5)  # fewer points than a sample: the padding cycles through them
    assert rows.tolist() == [[0, 1, 2, 0, 1]] and counted.tolist() == [[True, True, True, False, False]]
    rows, counted = cover(4, 4)
    assert rows.tolist() == [[0, 1, 2, 3]] and counted.all()
    perm = np.random.default_rng(3).permutation(7)
    rows, counted = cover(7, 3, np.random.default_rng(3))
    assert rows.tolist() == [perm[:3].tolist(), perm[3:6].tolist(), [perm[6], perm[0], perm[1]]]
    assert np.bincount(rows[counted], minlength=7).tolist() == [1] * 7  # every point voted exactly once
    with pytest.raises(ValueError, match="empty block"):
        cover(0, 3)


def _direct(dataset, model, num_classes: int, seed: int, num_points: int):
    """The confusion matrix and per-block vote counts computed point by point: the permutation of
    block i is default_rng([seed, salt, i]); sample r = perm[r*N:(r+1)*N], the last padded from
    perm's head; features from the sample's points; each point's class = argmax of its logits."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    all_votes = []
    for i in range(len(dataset)):
        block = dataset.load(i)
        n = len(block["label"])
        perm = np.random.default_rng([seed, FULL_SEED_SALT, i]).permutation(n)
        k = math.ceil(n / num_points)
        votes = np.zeros(n, dtype=np.int64)
        pred = np.full(n, -1)
        for r in range(k):
            counted = perm[r * num_points:(r + 1) * num_points]
            sample = np.concatenate([counted, perm[:num_points - len(counted)]])
            feats = block_features(block["coord"][sample], block["color"][sample])
            logits = model.weight.detach().numpy() @ feats  # (C, N)
            for j, point in enumerate(counted):
                votes[point] += 1
                pred[point] = int(np.argmax(logits[:, j]))
        for point in range(n):
            t = block["label"][point]
            if 0 <= t < num_classes:
                matrix[t, pred[point]] += 1
        all_votes.append(votes)
    return matrix, all_votes


def test_full_coverage_equals_a_per_point_loop(test_set):
    dataset, task = test_set
    c = task.num_classes(2)
    model = PointLinear(c)
    cm = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=3, seed=0)
    expected, votes = _direct(dataset, model, c, seed=0, num_points=512)
    assert all((v == 1).all() for v in votes)
    assert cm.matrix.tolist() == expected.tolist()
    sizes = [sum(t.values()) for t in S3DIS_TEST]  # 1500, 1000, 1070 points
    assert cm.points == sum(sizes) == 3570 and cm.blocks == 3
    assert cm.samples == model.seen == sum(math.ceil(n / 512) for n in sizes) == 3 + 2 + 3
    # 255 points (20 in block 2) are predicted but not counted in the matrix
    assert int(cm.matrix.sum()) == 3570 - 20
    assert cm.metric == "full"


def test_batching_and_repetition_do_not_change_the_result(test_set):
    dataset, task = test_set
    c = task.num_classes(2)
    model = PointLinear(c, seed=1)
    one = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=1, seed=0).matrix
    many = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=5, seed=0).matrix
    again = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=5, seed=0).matrix
    assert one.tolist() == many.tolist() == again.tolist()


def test_the_class_predictor_rule_is_applied_to_the_summed_softmax(test_set):
    dataset, task = test_set
    c = task.num_classes(2)
    model = PointLinear(c, seed=2)
    with torch.no_grad():
        model.weight[0] = 0.0
        model.weight[0, 3] = 100.0  # channel 0 wins everywhere (rgb >= 0)... unless it is excluded
    everything = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=4, seed=0)
    assert int(everything.matrix[:, 1:].sum()) < int(everything.matrix.sum()) // 2
    no_bg = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=4, seed=0,
                          predict=lambda s: s[:, 1:].argmax(1) + 1)
    assert int(no_bg.matrix[:, 0].sum()) == 0 and int(no_bg.matrix.sum()) == int(everything.matrix.sum())


def test_a_dgcnn_gives_the_same_number_twice(test_set):
    from css.pointcloud.models import build_model

    dataset, task = test_set
    torch.manual_seed(0)
    model = build_model(task.classes_per_step(2), in_channels=9, k=8)
    a = evaluate_full(model, dataset, num_classes=task.num_classes(2), env=CPU, batch_size=4, seed=0)
    b = evaluate_full(model, dataset, num_classes=task.num_classes(2), env=CPU, batch_size=2, seed=0)
    assert a.matrix.tolist() == b.matrix.tolist() and a.points == 3570


def _ddp_worker(rank: int, world: int, port: int, root: str, weight: torch.Tensor, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        task = load_dataset_task("s3dis", STEPS)
        dataset = build_dataset("s3dis", root, task=task, step=2, split="test", num_points=512, seed=0)
        model = PointLinear(weight.shape[0])
        with torch.no_grad():
            model.weight.copy_(weight)
        env = DistEnv(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
        cm = evaluate_full(model, dataset, num_classes=weight.shape[0], env=env, batch_size=2, seed=0)
        # every rank ends with the summed matrix; each saw only its own blocks
        torch.save({"matrix": cm.matrix, "points": cm.points, "blocks": cm.blocks, "seen": model.seen},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one(test_set, tmp_path):
    import torch.multiprocessing as mp

    from _spawn import free_port

    dataset, task = test_set
    c = task.num_classes(2)
    model = PointLinear(c, seed=4)
    single = evaluate_full(model, dataset, num_classes=c, env=CPU, batch_size=2, seed=0)
    root = str(dataset.store.path.parent)
    mp.spawn(_ddp_worker, args=(2, free_port(), root, model.weight.detach().clone(), str(tmp_path)), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in ranks:
        assert r["matrix"].tolist() == single.matrix.tolist()
        assert r["points"] == 3570 and r["blocks"] == 3
    # blocks 0 and 2 (3 + 3 samples) on rank 0, block 1 (2 samples) on rank 1: each block once
    assert [r["seen"] for r in ranks] == [6, 2]

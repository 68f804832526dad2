"""Full-coverage prediction and evaluation of point-cloud blocks (docs/pointcloud-evaluation.md#full-coverage).

The sampled metric (css.engine.evaluate through the modality) scores ``data.num_points`` random
points per test block. Here every point of a block is predicted:

1. ``cover(n, N, rng)``: a seeded permutation of the block's n points cut into ceil(n / N)
   samples of N points; the last one is filled up with points of the permutation's head (points
   already covered), whose outputs are not counted, so every point has exactly one counted vote;
2. each sample's features are computed from that sample alone, by the code path of training
   (``BlockDataset.sample``: block-local xyz and min-max normalisation over the sample's points),
   so the model sees inputs of the kind it was trained on;
3. the softmax of every counted output is added to its point with ``torch_scatter.scatter_add``;
   a point that lies in several blocks of a whole scene (block borders) sums the votes of all of
   them (css.pointcloud.predict); the prediction is ``class_predictor`` applied to the sum.

The evaluation metric is one confusion matrix over every stored point of every test block; a
border point stored in two blocks is scored once per block, like the sampled metric treats blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from css.errors import require
from css.metrics import ConfusionMatrix

FULL_SEED_SALT = 7  # keeps the coverage permutation apart from the sampled metric's draw of the same block


def cover(num_total: int, num_points: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices (k, N) int64, counted (k, N) bool) with k = ceil(n / N): row r holds the points
    ``perm[r*N:(r+1)*N]``; the last row is padded with ``perm[0], perm[1], ...`` (cycled when n < N),
    marked not counted. ``rng=None`` keeps file order (perm = arange)."""
    if num_total <= 0:
        raise ValueError(f"cannot cover an empty block (num_total={num_total})")
    if num_points <= 0:
        raise ValueError(f"num_points must be positive, got {num_points}")
    perm = np.arange(num_total, dtype=np.int64) if rng is None else rng.permutation(num_total).astype(np.int64)
    rows = math.ceil(num_total / num_points)
    pad = rows * num_points - num_total
    flat = np.concatenate([perm, perm[np.arange(pad) % num_total]])
    counted = np.arange(rows * num_points) < num_total
    return flat.reshape(rows, num_points), counted.reshape(rows, num_points)


@dataclass
class Item:
    """One unit of prediction: ``blocks`` (index arrays into the cloud's points), each covered on
    its own, their votes summed into ``size`` points."""

    key: Any
    size: int
    blocks: list[tuple[dict[str, np.ndarray], np.ndarray, np.random.Generator | None]]
    """(block arrays, cloud index of every block point, permutation rng) per block."""


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


@torch.no_grad()
def predict_items(model: torch.nn.Module, items: Iterable[Item], *, num_points: int, batch_size: int,
                  features: Callable[[dict[str, np.ndarray], np.ndarray], torch.Tensor], num_classes: int,
                  device: torch.device, precision: str = "fp32") -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
    """Yield (key, summed softmax (size, C) float64 on the CPU, counted votes (size,) int64) per item,
    in order. Samples of consecutive items share batches of ``batch_size``."""
    from css.engine.precision import autocast

    model = _unwrap(model)
    was_training = model.training
    model.eval()
    # Items whose samples are not all through the model yet, oldest first: [key, scores, votes, samples left].
    pending: list[list] = []
    queue: list[tuple[list, torch.Tensor, torch.Tensor]] = []  # (pending entry, features, cloud index or -1)

    def run_batch() -> None:
        x = torch.stack([f for _, f, _ in queue]).to(device)
        with autocast(device, precision):
            logits = model(x).logits
        probs = torch.softmax(logits.float(), dim=1).to("cpu", torch.float64)  # (B, C, N)
        for (entry, _, index), p in zip(queue, probs):
            keep = index >= 0  # padding points of a last sample: already voted, not counted again
            _scatter_votes(entry[1], entry[2], p.T[keep], index[keep])
            entry[3] -= 1
        queue.clear()

    def finished(all_queued: int) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
        # the first ``all_queued`` pending items have every sample queued: yield those done, in order
        while all_queued > 0 and pending and pending[0][3] == 0:
            key, scores, votes, _ = pending.pop(0)
            all_queued -= 1
            yield key, scores, votes

    try:
        for item in items:
            yield from finished(len(pending))  # every earlier item is fully queued now
            entry = [item.key, torch.zeros(item.size, num_classes, dtype=torch.float64),
                     torch.zeros(item.size, dtype=torch.int64), 0]
            pending.append(entry)
            for block, cloud_index, rng in item.blocks:
                cloud_index = np.asarray(cloud_index, dtype=np.int64)
                rows, counted = cover(len(cloud_index), num_points, rng)
                entry[3] += len(rows)
                for r, c in zip(rows, counted):
                    queue.append((entry, features(block, r), torch.from_numpy(np.where(c, cloud_index[r], -1))))
                    if len(queue) == batch_size:
                        run_batch()
        if queue:
            run_batch()
        yield from finished(len(pending))
    finally:
        model.train(was_training)


def _scatter_votes(scores: torch.Tensor, votes: torch.Tensor, probs: torch.Tensor, index: torch.Tensor) -> None:
    scatter_add = require("torch_scatter", needed_for="full-coverage evaluation",
                          install="pip install --no-build-isolation torch-scatter==2.1.2").scatter_add
    scatter_add(probs, index, dim=0, out=scores)
    scatter_add(torch.ones_like(index), index, dim=0, out=votes)


def block_items(dataset, indices: Iterable[int], seed: int | None) -> Iterator[tuple[Item, torch.Tensor]]:
    """(Item, labels (n,)) for items ``indices`` of a BlockDataset; the permutation of item i is
    drawn from ``default_rng([seed, FULL_SEED_SALT, i])`` (file order for ``seed=None``)."""
    for i in indices:
        block = dataset.load(int(i))
        n = len(block["label"])
        rng = None if seed is None else np.random.default_rng([int(seed), FULL_SEED_SALT, int(i)])
        yield Item(int(i), n, [(block, np.arange(n, dtype=np.int64), rng)]), torch.from_numpy(block["label"])


def dataset_features(dataset) -> Callable[[dict[str, np.ndarray], np.ndarray], torch.Tensor]:
    """The features of a sample, through the dataset's own per-access code (no augmentation at test)."""
    return lambda block, points: dataset.sample(block, points, None)[0]


def evaluate_full(model: torch.nn.Module, dataset, *, num_classes: int, env, batch_size: int, seed: int | None = 0,
                  precision: str = "fp32", predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  num_points: int | None = None) -> ConfusionMatrix:
    """Full-coverage confusion matrix over every point of every block of ``dataset``.

    Under DDP rank r takes blocks r, r + W, ... (each block exactly once over all processes) and the
    matrix is all-reduced. ``cm.points`` / ``cm.blocks`` / ``cm.samples`` count the counted points,
    the blocks and the model inputs over all processes; ``cm.metric = "full"``."""
    from css.distributed import all_reduce_sum

    predict = predict or (lambda scores: scores.argmax(1))
    num_points = int(num_points or dataset.num_points)
    rank, world = (env.rank, env.world_size) if getattr(env, "distributed", False) else (0, 1)
    mine = range(rank, len(dataset), world)
    labels: dict[int, torch.Tensor] = {}

    def items() -> Iterator[Item]:
        for item, label in block_items(dataset, mine, seed):
            labels[item.key] = label
            yield item

    cm = ConfusionMatrix(num_classes)  # on the CPU: the votes are there; moved for the all-reduce
    points = torch.zeros((), dtype=torch.int64)
    samples = 0
    for key, scores, votes in predict_items(model, items(), num_points=num_points, batch_size=batch_size,
                                            features=dataset_features(dataset), num_classes=num_classes,
                                            device=env.device, precision=precision):
        if not bool((votes == 1).all()):
            raise RuntimeError(f"block {key}: full coverage gave vote counts {votes.unique().tolist()}, not one "
                               f"per point")
        cm.update(predict(scores), labels.pop(key))
        points += votes.sum()
        samples += math.ceil(len(votes) / num_points)
    out = ConfusionMatrix(num_classes, device=env.device)
    out.matrix += cm.matrix.to(env.device)
    out.all_reduce()
    out.metric = "full"
    out.points = int(all_reduce_sum(points.to(env.device)))
    out.blocks = int(all_reduce_sum(torch.tensor(len(mine), device=env.device)))
    out.samples = int(all_reduce_sum(torch.tensor(samples, device=env.device)))
    return out

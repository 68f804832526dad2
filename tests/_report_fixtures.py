"""Run folders for the HTML report tests, written directly (no training): results.json from known
confusion matrices, each step's confusion.npy and its samples, in the layout a run keeps
(docs/report.md#what-a-run-keeps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from css.metrics import ConfusionMatrix
from css.results.jsonfile import build_results, dumps_json
from css.results.stepdata import write_confusion, write_samples
from css.results.summary import class_ious, step_entry

import torch


def confusion(matrix: Sequence[Sequence[int]]) -> ConfusionMatrix:
    cm = ConfusionMatrix(len(matrix))
    cm.matrix = torch.tensor(matrix, dtype=torch.int64)
    return cm


def write_run(folder: Path, matrices: list[list[list[int]]], names: Sequence[str], *, seed: int = 0,
              method: str = "lgkd", modality: str = "image", background: bool = True, samples: str | None = "png",
              panel: tuple[int, int] = (32, 32), count: int = 1) -> Path:
    """A finished run whose step t has the confusion matrix ``matrices[t]`` (its size = the step's
    channels); ``samples``: "png" (one picture per step), "xyz" (one block of points) or None."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    base = len(matrices[0])
    for step, matrix in enumerate(matrices):
        cm = confusion(matrix)
        summary = cm.summary(base if step else 0, background=background)
        entry = step_entry(step, summary, class_ious(cm), num_old=len(matrices[step - 1]) if step else 0)
        entry.update(num_test=10, config_hash="x", config_changes=[])
        entries.append(entry)
        step_dir = folder / f"step{step}"
        write_confusion(step_dir, np.asarray(matrix))
        if samples:
            write_samples(step_dir, lambda out, n=len(matrix): sample_files(out, samples, n, panel, count))
    config = {"name": folder.name, "modality": modality, "seed": seed, "method": {"name": method, "loss_kd": 1.0},
              "task": {"name": "t"}, "output_dir": str(folder.parent)}
    metadata = {"protocol": "fixed", "seed": seed, "world_size": 2, "global_batch": 24, "precision": "fp16",
                "versions": {"torch": "2.14.1"}, "git_commit": "abc123", "created": "2026-12-07T00:00:00+00:00",
                "config": config}
    results = build_results(entries, names[: len(matrices[-1])], metadata, task="t", dataset="toy", method=method,
                            background=background, metric=None if modality == "image" else "sampled")
    (folder / "results.json").write_text(dumps_json(results) + "\n")
    return folder


def sample_files(out: Path, kind: str, channels: int, panel: tuple[int, int], count: int = 1) -> dict:
    colours = [[40 * c % 256, 90 * c % 256, 150 * c % 256] for c in range(channels)]
    if kind == "png":  # a photo-like input (smooth with texture) and three flat label panels
        h, w = panel
        rng = np.random.default_rng(channels)
        entries = []
        for k in range(count):
            y, x = np.mgrid[0:h, 0:w]
            photo = np.stack([(x * 255 // w), (y * 255 // h), (x + y) % 256], axis=2).astype(np.int16)
            photo = (photo + rng.integers(-12, 13, photo.shape)).clip(0, 255).astype(np.uint8)
            flat = np.zeros((h, w, 3), dtype=np.uint8)
            flat[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = colours[(k + 1) % channels]
            Image.fromarray(np.concatenate([photo, flat, flat, flat], axis=1)).save(out / f"sample{k}.png")
            entries.append({"kind": "png", "file": f"sample{k}.png", "id": f"img_{k}", "accuracy": 0.75,
                            "panels": ["input", "ground truth", "prediction", "errors"]})
        return {"colours": colours, "samples": entries}
    rng = np.random.default_rng(0)
    target = np.arange(64) % channels
    np.savez_compressed(out / "sample0.npz", xyz=rng.random((64, 3)).astype(np.float32),
                        target=target.astype(np.int16), pred=((target + (np.arange(64) % 4 == 0)) % channels)
                        .astype(np.int16))
    return {"colours": colours, "samples": [{"kind": "xyz", "file": "sample0.npz", "id": "block_0", "accuracy": 0.75,
                                             "points": 64, "max_points": 2048}]}


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())

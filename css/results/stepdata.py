"""What a run keeps of each step for the run report beyond results.json (docs/report.md#what-a-run-keeps):
``step{t}/confusion.npy``, the step's test confusion matrix (int64, rows = ground truth, columns =
prediction, model channels), and ``step{t}/samples/``, a few test predictions drawn by the modality
(``Modality.write_samples``) with their manifest ``samples.json``.

Both are written when a step is evaluated (the controller, its recovery, and ``css.evaluate --write``,
which adds them to a run folder made before they existed). Reading them back checks them: a damaged
file is a CSSError naming it, so a report is never built from half a run.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from css.errors import CSSError
from css.utils import atomic_write_bytes, atomic_write_text

CONFUSION = "confusion.npy"
SAMPLES = "samples"
MANIFEST = "samples.json"
SAMPLE_COUNT = 4  # test samples shown per step


def sample_indices(length: int, count: int = SAMPLE_COUNT) -> list[int]:
    """``count`` indices evenly spaced over ``range(length)`` (fewer when the set is smaller): the same
    test samples at every evaluation of a step."""
    if length <= 0 or count <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, length - 1, min(count, length))})


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """``model`` in eval mode, without gradients, put back in the mode it was in afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def scored_accuracy(pred: np.ndarray, target: np.ndarray, num_channels: int) -> float | None:
    """The share of the scored elements (target a model channel) that ``pred`` gets right; None: none scored."""
    scored = (target >= 0) & (target < num_channels)
    return float((pred[scored] == target[scored]).mean()) if scored.any() else None


def write_confusion(step_dir: Path, matrix: Any) -> None:
    """``step_dir/confusion.npy`` from a (C, C) confusion matrix (a tensor or an array)."""
    array = np.asarray(matrix.cpu() if hasattr(matrix, "cpu") else matrix, dtype=np.int64)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(Path(step_dir) / CONFUSION, buffer.getvalue())


def write_samples(step_dir: Path, draw: Any) -> None:
    """``step_dir/samples/``: ``draw(folder)`` writes the sample files into a fresh folder and returns the
    manifest ({"colours": [[r, g, b] per channel], "samples": [{"kind": "png" (a picture) or "xyz" (points), "file", "id", ...}]}) or None
    (nothing to show); the folder then replaces the previous one whole."""
    step_dir = Path(step_dir)
    step_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".samples-", dir=step_dir))
    try:
        manifest = draw(staging)
        if manifest is None:
            return
        atomic_write_text(staging / MANIFEST, json.dumps(manifest) + "\n")
        final = step_dir / SAMPLES
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def keep_step_data(modality: Any, cfg: Any, task: Any, step: int, env: Any, cm: Any, model: Any, test_set: Any,
                   step_dir: Path) -> None:
    """Write both for an evaluated step: ``cm``'s matrix and the modality's samples of ``test_set``
    drawn by ``model`` (main process only)."""
    write_confusion(step_dir, cm.matrix)
    write_samples(step_dir, lambda out: modality.write_samples(model, test_set, cfg, task, step, env, out))


def read_confusion(step_dir: Path, num_classes: int) -> np.ndarray | None:
    """The step's confusion matrix, None when the run did not keep one (made before it was kept)."""
    path = Path(step_dir) / CONFUSION
    if not path.exists():
        return None
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CSSError(f"{path} cannot be read ({exc}); rewrite it with python -m css.evaluate "
                       f"{Path(step_dir).parent} --write") from exc
    if matrix.shape != (num_classes, num_classes) or not np.issubdtype(matrix.dtype, np.integer) or (matrix < 0).any():
        raise CSSError(f"{path} is not the {num_classes} x {num_classes} count matrix of this step "
                       f"(shape {matrix.shape}, dtype {matrix.dtype}); rewrite it with python -m css.evaluate "
                       f"{Path(step_dir).parent} --write")
    return matrix


def read_samples(step_dir: Path) -> dict[str, Any] | None:
    """The step's sample manifest with every file checked to exist, None when there is none."""
    folder = Path(step_dir) / SAMPLES
    path = folder / MANIFEST
    if not folder.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        samples = manifest["samples"]
        colours = manifest["colours"]
        if not isinstance(samples, list) or not isinstance(colours, list):
            raise ValueError("samples and colours must be lists")
        for sample in samples:
            if sample["kind"] not in ("png", "xyz") or not (folder / sample["file"]).is_file():
                raise ValueError(f"sample {sample.get('file')!r} is missing or of an unknown kind")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CSSError(f"{folder} is damaged ({exc}); rewrite it with python -m css.evaluate "
                       f"{Path(step_dir).parent} --write") from exc
    return manifest

"""A run folder as the report reads it (docs/report.md#inputs-and-failures): results.json, and per step the
confusion matrix and samples the run kept (css.results.stepdata). Everything is read and checked
before a page is written: a missing or damaged run folder is a CSSError naming it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from css.errors import CSSError
from css.results.jsonfile import read_results_json
from css.results.runs import RESULTS_JSON, Run, run_from_results
from css.results.stepdata import read_confusion, read_samples


@dataclass
class StepView:
    entry: dict[str, Any]  # the step's results.json entry
    folder: Path
    confusion: np.ndarray | None  # None: the run kept none (css.evaluate RUN --write adds it)
    samples: dict[str, Any] | None

    @property
    def step(self) -> int:
        return int(self.entry["step"])


@dataclass
class RunView:
    name: str
    slug: str  # the run's id in the page and its assets folder
    path: Path
    results: dict[str, Any]
    steps: list[StepView]
    run: Run  # the final figures and config, as css.report reads them
    notes: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.results.get("metadata") or {}

    @property
    def class_names(self) -> list[str]:
        return list(self.results["class_names"])

    @property
    def domains(self) -> bool:
        return self.results.get("adds") == "domains"

    @property
    def synthetic_background(self) -> bool:
        """Channel 0 is no class (point clouds' synthetic background channel): the run reports no bg and
        is not domain-incremental. (MiB on ADE20k reports no bg either: its channel 0 has no ground
        truth at test, so it shows no IoU whichever way it is read.)"""
        bg = self.results["final"].get("bg")
        return (bg is None or math.isnan(bg)) and not self.domains


def load_view(arg: str, taken: set[str]) -> RunView:
    """The run folder ``arg``; ``taken``: slugs already used in the page (a new one is made unique)."""
    path = Path(arg)
    if not path.is_dir():
        raise CSSError(f"run folder {path} does not exist (the HTML report reads run folders, not single files)")
    results_file = path / RESULTS_JSON
    if not results_file.is_file():
        raise CSSError(f"run folder {path} has no {RESULTS_JSON}; has a step finished? (python -m css.evaluate "
                       f"{path} --write rebuilds it from the checkpoints)")
    results = read_results_json(results_file)
    try:
        entries = sorted(results["steps"], key=lambda e: int(e["step"]))
        names = results["class_names"]
        for entry in entries:
            if len(entry["iou"]) != int(entry["num_classes"]) or int(entry["num_classes"]) > len(names):
                raise ValueError(f"step {entry['step']} has {len(entry['iou'])} IoUs for {entry['num_classes']} classes")
    except (KeyError, TypeError, ValueError) as exc:
        raise CSSError(f"{results_file} is damaged ({exc}); rebuild it with python -m css.evaluate {path} --write") \
            from exc
    steps, notes = [], []
    for entry in entries:
        folder = path / f"step{int(entry['step'])}"
        confusion = read_confusion(folder, int(entry["num_classes"]))
        samples = read_samples(folder)
        if confusion is None or samples is None:
            notes.append(f"step {entry['step']} has no {'confusion matrix' if confusion is None else 'samples'} "
                         f"(the run predates them): python -m css.evaluate {path} --write adds them")
        steps.append(StepView(entry, folder, confusion, samples))
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", path.resolve().name).strip("-") or "run"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    run = run_from_results(path.resolve().name, results_file, results)  # as css.report reads it, without a second read
    return RunView(path.resolve().name, slug, path, results, steps, run, notes)

"""Result files of a run: the reference-compatible CSV and ``results.json`` (the plot and the text
tables are in css.tables, the run metadata in css.run_metadata; their names import from here too).

Results CSV (docs/protocol-2d.md#results-csv), no header, one row per step::

    step,IoU_0,...,IoU_{C-1},MeanIoU

``C`` is the class count of the task's last step; values are raw fractions; a class not yet seen
at that step is written ``x``, a seen class without ground truth ``X``. The reference opened the
file in append mode, so re-running a step appended a duplicate row (docs/protocol-2d.md#results-csv);
``append_results_row`` instead rewrites the file atomically with one row per step, sorted by step,
which keeps it readable by the reference ``average_csv.py``.

``results.json`` layout (NaN is stored as ``null``)::

    {
      "task": str | null, "dataset": str | null, "method": str | null,
      "steps": [{"step": t, "num_old": C_old (classes learnt before step t, 0 at step 0),
                 "num_base": the step-0 channels (where this entry's old/new split lies),
                 "num_classes": C_cur,
                 "summary": {"bg", "old", "new", "all", "hiou"},   # this step's own split
                 "iou": [IoU of each class 0..C_cur-1, null if absent from the ground truth],
                 "mean_iou": float,
                 "full": {"metric": "full", "summary", "iou", "mean_iou", "num_points", "num_blocks"}
                         # optional: the full-coverage figures (docs/pointcloud-evaluation.md#full-coverage)
                }, ...],
      "final": {"bg", "old", "new", "all", "avg", "hiou", "oa"},
      "metric": "sampled",             # point clouds: what "steps"/"final" hold
      "full": {"metric": "full", "final": {...}},   # point clouds with data.full_coverage only
      "class_names": [...],
      "metadata": {"protocol", "seed", "world_size", "global_batch", "precision",
                   "versions": {...}, "git_commit": str | null, "created": ISO time,
                   "config": {resolved configuration}}
    }

``final`` follows ``average_csv.py`` (docs/protocol-2d.md#final-summary): from the last step's IoUs,
``old`` is the mean over the base foreground classes (1..C_cur(step 0)-1), ``new`` over every later
class, ``bg`` is IoU_0, ``all`` the last step's mean IoU, ``avg`` the mean of the per-step mean IoUs
(step 0 included) and ``hiou`` the harmonic mean of old and new. Absent classes are skipped in these
means (the reference crashed on them, docs/protocol-2d.md#final-summary).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from css.errors import CSSError
from css.metrics import harmonic_mean
from css.utils import atomic_write_text

# The table and the plot live in css.tables; their names stay importable from here. METRICS: the
# final figures; OPTIONAL_METRICS: the overall accuracy, in results.json and in the tables when a run has it.
from css.tables import METRICS, OPTIONAL_METRICS, format_table, plot_miou_per_step  # noqa: F401
# The metadata every result file records lives in css.run_metadata; importable from here too.
from css.run_metadata import build_metadata, collect_versions, git_commit  # noqa: F401

NOT_SEEN = "x"  # class not yet learnt at that step (docs/protocol-2d.md#results-csv)
ABSENT = "X"  # class learnt but without ground truth in the test set (docs/protocol-2d.md#results-csv)
_STEP_METRICS = ("bg", "old", "new", "all", "hiou", "oa")
OA_CELL = "oa="
# The names of the two point-cloud metrics (docs/pointcloud-evaluation.md): "sampled" is the
# reference's (the figures of every run), "full" scores every point and sits under its own key.
SAMPLED, FULL = "sampled", "full"


# --------------------------------------------------------------------------- results CSV
@dataclass
class CsvRow:
    """One row of the results CSV; ``iou`` entries are floats or the markers ``x`` / ``X``."""

    step: int
    iou: list[float | str]
    mean_iou: float
    oa: float | None = None
    """Overall accuracy, written as a last cell ``oa=<value>`` (point-cloud runs only)."""

    def to_line(self) -> str:
        cells = [str(self.step)] + [v if isinstance(v, str) else repr(float(v)) for v in self.iou]
        tail = [] if self.oa is None else [f"{OA_CELL}{float(self.oa)!r}"]
        return ",".join(cells + [repr(float(self.mean_iou))] + tail)


def read_results_csv(path: str | os.PathLike) -> list[CsvRow]:
    """Parse a results CSV (reference layout, no header) into rows, in file order."""
    path = Path(path)
    if not path.is_file():
        raise CSSError(f"results CSV '{path}' does not exist; pass a run folder or a CSV written by css")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            rows.append(_parse_csv_line(line, path, number))
    return rows


def _parse_csv_line(line: str, path: Path, number: int) -> CsvRow:
    cells = [c.strip() for c in line.split(",")]
    try:
        oa = float(cells.pop()[len(OA_CELL):]) if cells and cells[-1].startswith(OA_CELL) else None
        if len(cells) < 3:
            raise ValueError("a row needs a step, at least one IoU and the mean IoU")
        iou = [c if c in (NOT_SEEN, ABSENT) else float(c) for c in cells[1:-1]]
        return CsvRow(step=int(cells[0]), iou=iou, mean_iou=float(cells[-1]), oa=oa)
    except ValueError as exc:
        raise CSSError(
            f"{path}, line {number}: not a results row 'step,IoU_0,...,IoU_C-1,MeanIoU' ({exc}); "
            "fix or delete that line"
        ) from exc


def append_results_row(
    path: str | os.PathLike,
    step: int,
    iou_per_class: Sequence[float | None],
    num_total_classes: int,
    mean_iou: float,
    oa: float | None = None,
) -> None:
    """Store the row of ``step``, replacing an earlier row of the same step (docs/protocol-2d.md#results-csv).

    ``oa`` (point clouds): the overall accuracy, appended as a last cell ``oa=<value>``.

    ``iou_per_class`` covers the classes seen at this step (``None`` = absent from the ground
    truth, written ``X``); the classes up to ``num_total_classes`` are written ``x``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if len(iou_per_class) > num_total_classes:
        raise ValueError(f"{len(iou_per_class)} IoU values for a task of {num_total_classes} classes")
    iou: list[float | str] = [ABSENT if v is None else float(v) for v in iou_per_class]
    iou += [NOT_SEEN] * (num_total_classes - len(iou_per_class))
    path = Path(path)
    rows = read_results_csv(path) if path.exists() else []
    for row in rows:
        if len(row.iou) != num_total_classes:
            raise CSSError(
                f"results CSV '{path}' has rows of {len(row.iou)} classes, but this task has "
                f"{num_total_classes}; it belongs to another task: move it away or use a new run folder"
            )
    rows = [r for r in rows if r.step != step] + [CsvRow(step, iou, float(mean_iou), oa)]
    rows.sort(key=lambda r: r.step)
    atomic_write_text(path, "".join(r.to_line() + "\n" for r in rows))


def summarize_csv_rows(rows: Sequence[CsvRow]) -> dict[str, Any]:
    """bg / old / new / all / avg / hIoU of a results CSV, as ``average_csv.py`` computes them.

    The base classes are those seen at step 0, i.e. the columns before the step-0 row's first
    ``x`` (docs/protocol-2d.md#final-summary). Deviation: the reference also
    stopped at the first ``X``, which miscounts the base classes when one is absent from the
    step-0 ground truth; here only ``x`` marks the boundary. ``x``/``X`` in the last row are
    skipped from the means instead of crashing (docs/protocol-2d.md#final-summary).
    """
    if not rows:
        raise CSSError("the results CSV has no rows; the run has not finished its first step")
    steps = [r.step for r in rows]
    if steps != list(range(len(rows))):
        # average_csv.py asserts row index == step (docs/protocol-2d.md#final-summary).
        raise CSSError(f"results rows must be the steps 0..{len(rows) - 1} in order, got steps {steps}")
    first = rows[0].iou
    num_base = first.index(NOT_SEEN) if NOT_SEEN in first else len(first)
    iou_rows = [[v if isinstance(v, float) else None for v in r.iou] for r in rows]
    result = final_summary(iou_rows, [r.mean_iou for r in rows], num_base)
    result.update(num_steps=len(rows), num_old=num_base - 1, num_new=len(first) - num_base,
                  oa=rows[-1].oa if rows[-1].oa is not None else math.nan)
    return result


def final_summary(
    iou_per_step: Sequence[Sequence[float | None]], mean_iou_per_step: Sequence[float], num_base: int
) -> dict[str, float]:
    """The ``final`` block: old = base foreground classes 1..num_base-1, new = later classes.

    Only the last step's IoUs enter bg/old/new; ``avg`` averages every step's mean IoU.
    ``None`` (absent class) is skipped; a group with no value is nan.
    """
    last = list(iou_per_step[-1])
    bg = last[0] if last and last[0] is not None else math.nan
    old, new = _mean(last[1:num_base]), _mean(last[num_base:])
    return {
        "bg": float(bg),
        "old": old,
        "new": new,
        "all": float(mean_iou_per_step[-1]),
        "avg": _mean(mean_iou_per_step),
        "hiou": harmonic_mean(old, new),
    }


def _mean(values: Sequence[float | None]) -> float:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else math.nan


# --------------------------------------------------------------------------- results.json
def step_entry(step: int, summary: Mapping[str, Any], iou: Sequence[float | None],
               num_old: int | None = None) -> dict[str, Any]:
    """One ``steps`` entry of results.json from a ``ConfusionMatrix.summary`` dict.

    ``num_old``: C_old, the channels learnt before this step (0 at step 0); ``num_base`` is the
    split of the entry's old/new figures (the summary's ``num_old``: the step-0 channels)."""
    return {
        "step": int(step),
        "num_old": int(summary["num_old"] if num_old is None else num_old),
        "num_base": int(summary["num_old"]),
        "num_classes": len(iou),
        **metric_figures(summary, iou),
    }


def metric_figures(summary: Mapping[str, Any], iou: Sequence[float | None]) -> dict[str, Any]:
    """``summary``, ``iou`` and ``mean_iou`` of one metric, from a ``ConfusionMatrix.summary`` dict:
    the figures a step entry and its ``full`` block (css.recording.full_block) both hold.

    One builder for both, so that the two metrics' figures keep the same keys, order and missing
    values (nan), which results.csv and results_full.csv are written from alike."""
    return {
        "summary": {k: summary.get(k, math.nan) for k in _STEP_METRICS},
        "iou": list(iou),
        "mean_iou": summary["all"],
    }


def build_results(
    steps_entries: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    metadata: Mapping[str, Any],
    *,
    task: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
    background: bool = True,
    metric: str | None = None,
) -> dict[str, Any]:
    """The results.json document (module docstring), with ``final`` computed from the steps.

    ``metric`` names what steps/final hold (point clouds: "sampled"); omitted when None (images).
    Step entries with a ``full`` block, all of them, add the document's ``full`` final.

    ``background=False``: channel 0 is a synthetic background channel (point clouds), so the
    final ``bg`` is not reported (null); ``all`` already leaves it out (ConfusionMatrix.summary).
    ``final.oa`` is the last step's overall accuracy."""
    if not steps_entries:
        raise ValueError("build_results needs at least one step entry")
    # A nan mean IoU or OA is written as null and read back as None: it stays nan in the final, so a
    # results.json rebuilt from disk has the same final as the one first written.
    final = _final(
        [e["iou"] for e in steps_entries],
        [_nan_if_none(e["mean_iou"]) for e in steps_entries],
        num_base=int(steps_entries[0]["num_classes"]),
        oa=_nan_if_none(steps_entries[-1].get("summary", {}).get("oa")),
        background=background,
    )
    results = {
        "task": task,
        "dataset": dataset,
        "method": method,
        "steps": [dict(e) for e in steps_entries],
        "final": final,
        "class_names": list(class_names),
        "metadata": dict(metadata),
    }
    if metric is not None:
        results["metric"] = metric
    full = full_final(steps_entries, background=background)
    if full is not None:
        results[FULL] = {"metric": FULL, "final": full}
    return results


def full_final(steps_entries: Sequence[Mapping[str, Any]], *, background: bool = True) -> dict[str, float] | None:
    """The ``final`` block of the full-coverage figures (docs/pointcloud-evaluation.md#full-coverage),
    computed like the sampled one; None unless every step entry has them (``avg`` needs all steps)."""
    blocks = [e.get(FULL) for e in steps_entries]
    if not blocks or any(not isinstance(b, Mapping) for b in blocks):
        return None
    # The blocks hold the figures of a step entry (metric_figures), so the final is computed by
    # the same _final as the sampled one. A null mean IoU or OA (a block read back from
    # results.json) counts as nan here, as it always has for this metric.
    return _final([b["iou"] for b in blocks], [_nan_if_none(b["mean_iou"]) for b in blocks],
                  num_base=int(steps_entries[0]["num_classes"]),
                  oa=_nan_if_none(blocks[-1].get("summary", {}).get("oa")), background=background)


def _final(iou_per_step: Sequence[Sequence[float | None]], mean_iou_per_step: Sequence[float], *, num_base: int,
           oa: float, background: bool) -> dict[str, float]:
    """A ``final`` block of results.json (the sampled one and the full-coverage one): final_summary,
    with ``bg`` nan where channel 0 is a synthetic background (``background=False``) and ``oa`` the
    last step's overall accuracy."""
    final = final_summary(iou_per_step, mean_iou_per_step, num_base)
    if not background:
        final["bg"] = math.nan
    final["oa"] = oa
    return final


def write_results_json(
    path: str | os.PathLike,
    *,
    summary_per_step: Sequence[Mapping[str, Any]],
    per_class_iou_per_step: Sequence[Sequence[float | None]],
    class_names: Sequence[str],
    metadata: Mapping[str, Any],
    task: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """Build results.json from per-step ``ConfusionMatrix.summary`` dicts, write it atomically.

    Returns the document written (before NaN -> null).
    """
    if len(summary_per_step) != len(per_class_iou_per_step):
        raise ValueError(f"{len(summary_per_step)} summaries but {len(per_class_iou_per_step)} IoU lists")
    entries = [step_entry(t, s, iou) for t, (s, iou) in enumerate(zip(summary_per_step, per_class_iou_per_step))]
    results = build_results(entries, class_names, metadata, task=task, dataset=dataset, method=method)
    atomic_write_text(path, dumps_json(results) + "\n")
    return results


def dumps_json(obj: Any) -> str:
    """Strict JSON (NaN/inf -> null; paths, numpy and torch scalars converted)."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False, default=_json_default)


def read_results_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load results.json; ``null`` metrics in ``final`` and step summaries become nan."""
    path = Path(path)
    if not path.is_file():
        raise CSSError(f"results file '{path}' does not exist")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CSSError(f"results file '{path}' is not valid JSON ({exc}); rerun the evaluation to rewrite it") from exc
    if not isinstance(results, dict) or "final" not in results or "steps" not in results:
        raise CSSError(f"results file '{path}' lacks the 'steps'/'final' entries of a css results.json")
    results["final"] = {k: _nan_if_none(results["final"].get(k)) for k in METRICS + OPTIONAL_METRICS}
    for entry in results["steps"]:
        entry["summary"] = {k: _nan_if_none(v) for k, v in entry["summary"].items()}
        if isinstance(entry.get(FULL), dict):
            entry[FULL]["summary"] = {k: _nan_if_none(v) for k, v in entry[FULL].get("summary", {}).items()}
    if isinstance(results.get(FULL), dict):
        results[FULL]["final"] = {k: _nan_if_none(results[FULL].get("final", {}).get(k))
                                  for k in METRICS + OPTIONAL_METRICS}
    return results


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finite(obj: Any) -> Any:
    """Recursively replace non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):  # numpy arrays/scalars and torch tensors
        return _finite(obj.tolist())
    raise TypeError(f"cannot store a {type(obj).__name__} in results.json")

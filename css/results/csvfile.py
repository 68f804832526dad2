"""The results CSV of a run (docs/protocol-2d.md#results-csv), no header, one row per step::

    step,IoU_0,...,IoU_{C-1},MeanIoU

``C`` is the class count of the task's last step; values are raw fractions; a class not yet seen
at that step is written ``x``, a seen class without ground truth ``X``. The reference opened the
file in append mode, so re-running a step appended a duplicate row (docs/protocol-2d.md#results-csv);
``append_results_row`` instead rewrites the file atomically with one row per step, sorted by step,
which keeps it readable by the reference ``average_csv.py``. Point-cloud rows end with the overall
accuracy, ``oa=<value>``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from css.errors import CSSError
from css.results.summary import final_summary
from css.utils import atomic_write_text

NOT_SEEN = "x"  # class not yet learnt at that step (docs/protocol-2d.md#results-csv)
ABSENT = "X"  # class learnt but without ground truth in the test set (docs/protocol-2d.md#results-csv)
OA_CELL = "oa="


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


def csv_row(step: int, iou: Sequence[float | None], num_total_classes: int, mean_iou: float | None,
            oa: float | None = None) -> CsvRow:
    """The row of ``step``: ``iou`` covers the classes seen at this step (``None`` = absent from the
    ground truth, written ``X``); the classes up to ``num_total_classes`` are written ``x``; a
    missing mean IoU is nan."""
    if len(iou) > num_total_classes:
        raise ValueError(f"{len(iou)} IoU values for a task of {num_total_classes} classes")
    cells: list[float | str] = [ABSENT if v is None else float(v) for v in iou]
    cells += [NOT_SEEN] * (num_total_classes - len(iou))
    return CsvRow(int(step), cells, math.nan if mean_iou is None else float(mean_iou),
                  None if oa is None else float(oa))


def write_csv(path: str | os.PathLike, rows: Sequence[CsvRow]) -> None:
    """Write ``rows`` (one per step, in step order) atomically: the one writer of results CSVs."""
    atomic_write_text(path, "".join(r.to_line() + "\n" for r in rows))


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
    ``iou_per_class`` and the markers: as ``csv_row``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    row = csv_row(step, iou_per_class, num_total_classes, mean_iou, oa)
    path = Path(path)
    rows = read_results_csv(path) if path.exists() else []
    for other in rows:
        if len(other.iou) != num_total_classes:
            raise CSSError(
                f"results CSV '{path}' has rows of {len(other.iou)} classes, but this task has "
                f"{num_total_classes}; it belongs to another task: move it away or use a new run folder"
            )
    write_csv(path, sorted([r for r in rows if r.step != step] + [row], key=lambda r: r.step))


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

"""The text table and the per-step plot of results.

``format_table`` prints the final figures of runs (css.report, the controller's last log lines,
css.evaluate); ``plot_miou_per_step`` draws ``miou.png`` of a run folder.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from css.results.summary import METRICS, OPTIONAL_METRICS, nan_if_none
from css.utils import atomic_write_bytes


def plot_miou_per_step(path_png: str | os.PathLike, results: Mapping[str, Any]) -> None:
    """PNG of the per-step mIoU (all, old, new, bg; x100) of a results document, written atomically."""
    # Figure + Agg canvas directly: no pyplot global state, works without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [e["step"] for e in results["steps"]]
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, style in (("all", "-o"), ("old", "--s"), ("new", "--^"), ("bg", ":x")):
        values = [nan_if_none(e["summary"].get(key)) * 100 for e in results["steps"]]
        ax.plot(steps, values, style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("IoU (%)")
    ax.set_xticks(steps)
    title = " ".join(str(results.get(k)) for k in ("dataset", "task", "method") if results.get(k))
    ax.set_title(title or "mIoU per step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path_png, buffer.getvalue())


def table_columns(rows: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], list[str]]:
    """(metric keys, header) of a table of ``rows``: the final metrics, and OA when a row has it."""
    shown = METRICS + tuple(k for k in OPTIONAL_METRICS if any(_has(r.get(k)) for r in rows))
    return shown, ["run", "bg", "old", "new", "all", "avg", "hIoU"] + [k.upper() for k in shown[len(METRICS):]]


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Fixed-width table with columns run, bg, old, new, all, avg, hIoU (values x100, 2 decimals).

    Each row maps "run" to a name and each metric to a fraction, None/nan (shown "-"), or a
    (mean, std) pair (shown "mean ± std").
    """
    shown, header = table_columns(rows)
    body = [[str(r["run"])] + [format_cell(r.get(k)) for k in shown] for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]

    def render(line: list[str]) -> str:
        return "  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])

    return "\n".join([render(header), "  ".join("-" * w for w in widths)] + [render(line) for line in body])


def _has(value: Any) -> bool:
    if isinstance(value, tuple):
        value = value[0]
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def format_cell(value: Any) -> str:
    """A figure as the tables show it: x100 with 2 decimals, "-" for None/nan, "mean ± std" for a pair."""
    if isinstance(value, tuple):
        mean, std = value
        return f"{format_cell(mean)} ± {format_cell(std)}"
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:.2f}"

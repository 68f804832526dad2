"""The report folder: ``OUT/index.html``, ``OUT/assets/plotly.min.js`` and the sample pictures
(docs/report.md). Every run is read and checked first; the folder is then built beside ``OUT`` and
moved into place whole, so a failure never leaves half a report, and a folder that is not a css
report is never overwritten.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from css.errors import CSSError
from css.htmlreport import figures
from css.htmlreport.forgetting import where_old_went
from css.htmlreport.views import RunView, StepView, load_view
from css.methods.presets import COMMON
from css.results.runs import seed_groups, unique_names
from css.results.tables import format_cell, table_columns
from css.utils import atomic_write_text

MARKER = ".css-report"  # names a folder this module wrote, so that it may be replaced
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.note { color: #8a5a00; } .muted { color: #666; font-size: 0.9em; }
figure { display: inline-block; margin: 0.4em; } figcaption { font-size: 0.85em; color: #444; }
figure img { min-height: 128px; image-rendering: pixelated; }
table.what td { text-align: left; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 0.8em; vertical-align: middle;
          border: 1px solid #999; }
"""


def write_report(out: str | Path, runs: Sequence[str]) -> Path:
    """Write the report of the run folders ``runs`` into ``out``; returns ``out/index.html``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise CSSError(f"{out} exists and is not a css report folder; choose a new folder for --html")
    taken: set[str] = set()
    views = [load_view(arg, taken) for arg in runs]  # every run checked before anything is written
    unique_names([v.run for v in views])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read (and served) as is
    try:
        assets = staging / "assets"
        assets.mkdir()
        atomic_write_text(assets / "plotly.min.js", get_plotlyjs())
        body = [across_runs(views)] + [run_section(view, staging) for view in views]
        atomic_write_text(staging / "index.html", page(views, body))
        (staging / MARKER).write_text("written by python -m css.report --html\n")
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out / "index.html"


def replace_folder(new: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old")
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old)


def page(views: list[RunView], body: list[str]) -> str:
    nav = " · ".join(f'<a href="#run-{v.slug}">{esc(v.name)}</a>' for v in views)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>css run report</title>\n'
            f'<script src="assets/plotly.min.js"></script>\n<style>{STYLE}</style></head><body>\n'
            f'<h1>css run report</h1><p class="muted">{len(views)} run(s), written {created} by '
            f'<code>python -m css.report --html</code>. Runs: {nav}</p>\n' + "\n".join(body) + "\n</body></html>\n")


def esc(value: Any) -> str:
    return html.escape(str(value))


def chart(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}><tr>{head}</tr>{body}</table>"


def figures_table(rows: list[dict[str, Any]]) -> str:
    keys, header = table_columns(rows)
    return table(header, [[r["run"]] + [format_cell(r.get(k)) for k in keys] for r in rows])


# --- across runs ------------------------------------------------------------------------------

def across_runs(views: list[RunView]) -> str:
    parts = ['<section id="across"><h2>Across runs</h2>',
             figures_table([{"run": v.run.name, **v.run.final} for v in views])]
    groups = seed_groups([v.run for v in views])
    if groups:
        parts.append("<p>Runs differing only by seed: mean ± sample std (n − 1)</p>")
        parts.append(figures_table([{"run": f"group {i} (n={len(g)}): " + ", ".join(r.name for r in g), **stats}
                                    for i, (g, stats) in enumerate(groups, 1)]))
    by_task: dict[tuple[str, str, str], list[RunView]] = {}
    for view in views:
        modality = str((view.metadata.get("config") or {}).get("modality", ""))
        by_task.setdefault((modality, str(view.results.get("dataset")), str(view.results.get("task"))), []).append(view)
    for n, ((modality, dataset, task), members) in enumerate(by_task.items()):
        parts.append(f"<h3>{esc(dataset)} {esc(task)} ({esc(modality)})</h3>")
        parts.append(chart(figures.methods_per_step(members), f"methods-{n}"))
    domain_runs = [v.name for v in views if v.domains]
    if domain_runs:
        parts.append(f'<p class="note">Domain-incremental runs ({esc(", ".join(domain_runs))}): every step adds '
                     f'domains, not classes; bg, old, new and hIoU do not apply.</p>')
    return "\n".join(parts) + "</section>"


# --- one run ----------------------------------------------------------------------------------

def run_section(view: RunView, root: Path) -> str:
    parts = [f'<section id="run-{view.slug}"><h2>{esc(view.name)}</h2>',
             f'<p class="muted">{esc(view.path)}</p>', what_ran(view)]
    parts += [f'<p class="note">{esc(note)}</p>' for note in view.notes]
    parts.append(step_table(view))
    parts.append(chart(figures.metric_curves(view), f"curves-{view.slug}"))
    parts.append(chart(figures.forgetting_figure(view), f"forgetting-{view.slug}"))
    for step in view.steps:
        parts.append(f"<h3>step {step.step}</h3>")
        if step.confusion is not None:
            parts.append(chart(figures.confusion_figure(view, step), f"confusion-{view.slug}-{step.step}"))
            parts.append(old_classes(view, step))
        if step.samples is not None:
            parts.append(samples(view, step, root))
    return "\n".join(parts) + "</section>"


def what_ran(view: RunView) -> str:
    meta, results = view.metadata, view.results
    config = meta.get("config") or {}
    method = config.get("method") or {}
    weights = ", ".join(f"{k} {v}" for k, v in method.items() if k != "name" and k in COMMON and v != COMMON[k])
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    rows = [("task", f"{results.get('dataset')} {results.get('task')}, {len(view.steps)} step(s) recorded"),
            ("steps", steps_text(view)),
            ("method", f"{results.get('method')}" + (f" ({weights})" if weights else "")),
            ("protocol", meta.get("protocol")), ("seed", meta.get("seed")), ("processes", meta.get("world_size")),
            ("global batch", meta.get("global_batch")), ("precision", meta.get("precision")),
            ("versions", versions), ("commit", meta.get("git_commit")), ("created", meta.get("created"))]
    return table(["what ran", ""], [(k, "-" if v is None else v) for k, v in rows], "what")


def steps_text(view: RunView) -> str:
    if view.domains:
        return f"every step: the same {len(view.class_names)} classes; the steps bring new domains"
    out, before = [], 0
    for step in view.steps:
        count = int(step.entry["num_classes"])
        added = view.class_names[before:count]
        out.append(f"{step.step}: " + ", ".join(added))
        before = count
    return "; ".join(out)


def step_table(view: RunView) -> str:
    keys = ("bg", "old", "new", "all", "hiou", "oa")
    rows = [[s.step, s.entry.get("num_test", "-")] + [format_cell(s.entry.get("summary", {}).get(k)) for k in keys]
            for s in view.steps]
    return table(["step", "test samples", "bg", "old", "new", "all", "hIoU", "OA"], rows)


def old_classes(view: RunView, step: StepView) -> str:
    """Where the old classes of an incremental step went: kept, predicted as background, as a new class."""
    num_old = int(step.entry.get("num_old") or 0)
    if step.step == 0 or view.domains or num_old <= 1:
        return ""
    rows = [[f"{view.class_names[r['channel']]} ({r['channel']})", f"{100 * r['kept']:.2f}",
             f"{100 * r['background']:.2f}", f"{100 * r['new']:.2f}"]
            for r in where_old_went(step.confusion, num_old)]
    if not rows:
        return ""
    return ("<details><summary>old classes at this step: kept, predicted as background, predicted as a class "
            "added since (% of each class's elements)</summary>"
            + table(["old class", "kept", "→ background", "→ new classes"], rows) + "</details>")


def legend(view: RunView, colours: list[list[int]]) -> str:
    items = [f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>{esc(view.class_names[c])}'
             for c, (r, g, b) in enumerate(colours) if c < len(view.class_names)]
    return '<p class="muted">colours: ' + " ".join(items) + "</p>"


def samples(view: RunView, step: StepView, root: Path) -> str:
    manifest = step.samples
    parts = [legend(view, manifest["colours"])]
    target = root / "assets" / view.slug / f"step{step.step}"
    for k, sample in enumerate(manifest["samples"]):
        source = step.folder / "samples" / sample["file"]
        accuracy = "-" if sample.get("accuracy") is None else f"{100 * sample['accuracy']:.2f} %"
        if sample["kind"] == "png":
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / sample["file"])
            src = f"assets/{view.slug}/step{step.step}/{sample['file']}"
            panels = " | ".join(sample.get("panels", []))
            parts.append(f'<figure><img src="{esc(src)}" alt="{esc(sample["id"])}"><figcaption>{esc(sample["id"])}: '
                         f'{esc(panels)}; {accuracy} of its pixels right</figcaption></figure>')
        else:
            try:
                with np.load(source, allow_pickle=False) as data:
                    loaded = {key: data[key] for key in ("xyz", "target", "pred")}
            except (OSError, ValueError, KeyError) as exc:
                raise CSSError(f"{source} cannot be read ({exc}); rewrite it with python -m css.evaluate "
                               f"{view.path} --write") from exc
            fig = figures.points_figure(view, step, sample, loaded)
            parts.append(chart(fig, f"points-{view.slug}-{step.step}-{k}"))
            parts.append(f'<p class="muted">{esc(sample["id"])}: {accuracy} of the shown points right</p>')
    return "\n".join(parts)

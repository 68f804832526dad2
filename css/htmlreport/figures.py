"""The report's interactive charts, built with plotly (docs/report.md#what-the-page-shows): every figure is a
``plotly.graph_objects.Figure`` the page embeds; plotly.js draws them in the browser, offline.

Values are shown in percent (IoU x 100) with two decimals in the hover text, as in the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from css.htmlreport.forgetting import forgetting_matrix, learned_steps, row_normalised
from css.htmlreport.views import RunView, StepView

CURVES = (("all", "all"), ("old", "old"), ("new", "new"), ("hiou", "hIoU"), ("bg", "bg"), ("oa", "OA"))
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))


def percent(value: float | None) -> float | None:
    """A fraction in percent, rounded to the 2 decimals the report shows (None/nan: None)."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else round(100.0 * float(value), 2)


def metric_curves(view: RunView) -> go.Figure:
    """old / new / all / hIoU (and bg, OA where they apply) at every step."""
    steps = [s.step for s in view.steps]
    fig = go.Figure()
    for key, label in CURVES:
        values = [percent(s.entry.get("summary", {}).get(key)) for s in view.steps]
        if all(v is None for v in values):
            continue  # a figure that does not apply (bg of point clouds, old/new of domain steps)
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=label,
                                 hovertemplate=f"{label} at step %{{x}}: %{{y:.2f}}<extra></extra>"))
    fig.update_layout(title="test figures per step", xaxis=dict(title="step", dtick=1),
                      yaxis=dict(title="IoU / accuracy (%)", range=[0, 100]), height=380, **LAYOUT)
    return fig


def forgetting_figure(view: RunView) -> go.Figure:
    """Two heatmaps, classes x steps: the IoU at every step, and its change since the step the class
    was learnt (negative: forgotten)."""
    entries = [s.entry for s in view.steps]
    iou, change = forgetting_matrix(entries)
    learned = learned_steps(entries)
    first = 1 if view.synthetic_background else 0  # the synthetic channel is not a class
    names = [f"{view.class_names[c]} ({c})" for c in range(first, len(iou))]
    steps = [f"step {s.step}" for s in view.steps]
    z_iou = [[percent(v) for v in row] for row in iou[first:]]
    z_change = [[percent(v) for v in row] for row in change[first:]]
    hover = [[(f"{names[r]} at {steps[k]}: " + ("not learnt yet" if view.steps[k].step < learned[r + first] else
              "no ground truth" if z_iou[r][k] is None else
              f"IoU {z_iou[r][k]:.2f}, {z_change[r][k]:+.2f} since step {learned[r + first]}"))
              for k in range(len(steps))] for r in range(len(names))]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=("IoU (%) at every step", "change since the class was learnt (points)"))
    fig.add_trace(go.Heatmap(z=z_iou, x=steps, y=names, zmin=0, zmax=100, colorscale="Viridis", text=hover,
                             hoverinfo="text", colorbar=dict(x=0.41, len=0.9), name="IoU"), row=1, col=1)
    bound = max([abs(v) for row in z_change for v in row if v is not None] + [1.0])
    fig.add_trace(go.Heatmap(z=z_change, x=steps, y=names, zmid=0, zmin=-bound, zmax=bound, colorscale="RdBu",
                             text=hover, hoverinfo="text", colorbar=dict(x=1.0, len=0.9), name="change"),
                  row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="forgetting: per-class IoU at every step", height=max(320, 22 * len(names) + 140),
                      **LAYOUT)
    return fig


def confusion_figure(view: RunView, step: StepView) -> go.Figure:
    """The step's confusion matrix, each ground-truth row normalised: where a class's elements went."""
    matrix = step.confusion
    shares = row_normalised(matrix)
    names = [f"{view.class_names[c]} ({c})" for c in range(len(matrix))]
    z = [[percent(v) for v in row] for row in shares]
    hover = [[f"ground truth {names[r]} predicted as {names[k]}: "
              + ("no ground truth" if z[r][k] is None else f"{z[r][k]:.2f} % ({int(matrix[r][k])} elements)")
              for k in range(len(names))] for r in range(len(names))]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=0, zmax=100, colorscale="Blues", text=hover,
                               hoverinfo="text", colorbar=dict(title="% of row")))
    size = max(360, 18 * len(names) + 200)
    fig.update_layout(title=f"step {step.step}: confusion matrix, rows = ground truth (each row sums to 100 %)",
                      xaxis=dict(title="prediction", tickangle=-60), yaxis=dict(title="ground truth", autorange="reversed"),
                      height=size, **LAYOUT)
    return fig


def points_figure(view: RunView, step: StepView, sample: dict[str, Any], data: Any) -> go.Figure:
    """A test block's sampled points, ground truth and prediction side by side, one trace per class in
    its legend colour (click a class in the legend to hide it)."""
    colours = np.asarray(step.samples["colours"], dtype=np.int64)
    xyz = np.round(np.asarray(data["xyz"], dtype=np.float64), 3)
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("ground truth", "prediction"), horizontal_spacing=0.02)
    in_truth = set(np.asarray(data["target"], dtype=np.int64).tolist())
    for col, key in ((1, "target"), (2, "pred")):
        labels = np.asarray(data[key], dtype=np.int64)
        for c in sorted(set(labels.tolist())):
            mask = labels == c
            known = 0 <= c < len(colours)
            rgb = f"rgb({','.join(str(v) for v in colours[c])})" if known else "rgb(230,230,230)"
            name = f"{view.class_names[c]} ({c})" if known else "ignored"
            fig.add_trace(go.Scatter3d(x=xyz[mask, 0], y=xyz[mask, 1], z=xyz[mask, 2], mode="markers",
                                       marker=dict(size=3, color=rgb), name=name, legendgroup=name,
                                       showlegend=col == 1 or c not in in_truth,
                                       hovertemplate=f"{name}<extra></extra>"), row=1, col=col)
    shown = len(xyz)
    # a block sample shows all its sampled points; a whole scene (css.pointcloud.scenes.samples) a subset
    title = (f"{sample['id']}: {sample['points']} sampled points (at most {sample['max_points']})"
             if shown >= sample["points"] else f"{sample['id']}: {shown} of its {sample['points']} points")
    fig.update_layout(title=title,
                      height=460, margin=dict(l=0, r=0, t=60, b=0), template="plotly_white")
    fig.update_scenes(aspectmode="data", xaxis_visible=False, yaxis_visible=False, zaxis_visible=False)
    return fig


def methods_per_step(views: Sequence[RunView], key: str = "all") -> go.Figure:
    """One bar per run at every step: the runs of one task side by side."""
    fig = go.Figure()
    for view in views:
        method = view.results.get("method", "?")
        fig.add_trace(go.Bar(x=[f"step {s.step}" for s in view.steps],
                             y=[percent(s.entry.get("summary", {}).get(key)) for s in view.steps],
                             name=f"{view.name} ({method})",
                             hovertemplate=f"{view.name} ({method}), %{{x}}: %{{y:.2f}}<extra></extra>"))
    label = dict(CURVES)[key]
    fig.update_layout(title=f"{label} per step, runs side by side", barmode="group",
                      yaxis=dict(title=f"{label} (%)", range=[0, 100]), height=380, **LAYOUT)
    return fig

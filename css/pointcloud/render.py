"""Colours, PLY files and a PNG rendering of point-cloud predictions (docs/pointcloud-evaluation.md#predictions).

Colours are per model channel, so a class keeps its colour at every step (new channels are
appended): channel 0 dark grey, then a 20-colour qualitative list (matplotlib's tab10 and its
light shades), repeated beyond 20 classes. Ground-truth points that are ignored (label 255) are
near white. Error files: correct grey, wrong red, ignored near white (css.colours).

PLY files are written with open3d: colours go in as floats in [0, 1] and are stored as uchar;
``uint8 / 255`` comes back exactly as the same bytes (tests/test_pc_predict.py reads them back).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from css.errors import require
from css.utils import atomic_write_bytes

BACKGROUND_RGB = (80, 80, 80)
_QUALITATIVE = ("1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 7f7f7f bcbd22 17becf "
                "aec7e8 ffbb78 98df8a ff9896 c5b0d5 c49c94 f7b6d2 c7c7c7 dbdb8d 9edae5").split()
HEIGHT_CLIP = 0.8  # the PNG's top-down view leaves out the top 20 % of the height: ceilings would hide the room


def class_colours(num_channels: int) -> np.ndarray:
    """(C, 3) uint8: channel 0 = BACKGROUND_RGB, channel c >= 1 = the qualitative colour (c - 1) mod 20."""
    out = np.zeros((num_channels, 3), dtype=np.uint8)
    for c in range(num_channels):
        out[c] = BACKGROUND_RGB if c == 0 else tuple(int(_QUALITATIVE[(c - 1) % 20][i:i + 2], 16) for i in (0, 2, 4))
    return out


def write_ply(path: str | os.PathLike, coord: np.ndarray, rgb: np.ndarray) -> None:
    """A binary PLY of float64 x, y, z and uchar red, green, blue (open3d)."""
    o3d = require("open3d", needed_for="writing PLY files", install="pip install open3d==0.20.0")
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(np.asarray(coord, dtype=np.float64))
    cloud.colors = o3d.utility.Vector3dVector(np.asarray(rgb, dtype=np.float64) / 255.0)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.ply")  # open3d picks the format by the suffix
    if not o3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
        tmp.unlink(missing_ok=True)
        raise OSError(f"open3d could not write {path}")
    os.replace(tmp, path)


def render_png(path: str | os.PathLike, coord: np.ndarray, panels: Sequence[tuple[str, np.ndarray]], *,
               legend: Sequence[tuple[str, Sequence[int]]] = (), title: str = "") -> None:
    """Side-by-side top-down views (x right, y up) of one cloud, one panel per (title, (n, 3) uint8
    colours); points above HEIGHT_CLIP of the height are left out and the rest drawn lowest first,
    so the highest visible point of each spot shows. ``legend``: (name, rgb) entries below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    coord = np.asarray(coord, dtype=np.float64)
    z = coord[:, 2]
    keep = z <= z.min() + HEIGHT_CLIP * (z.max() - z.min()) if len(z) else np.zeros(0, bool)
    order = np.flatnonzero(keep)[np.argsort(z[keep], kind="stable")]
    extent = np.ptp(coord[:, :2], axis=0) if len(coord) else np.ones(2)
    aspect = float(extent[1] / extent[0]) if extent[0] > 0 else 1.0
    width = 4.0
    fig = Figure(figsize=(width * len(panels), width * min(max(aspect, 0.3), 3.0) + (1.0 if legend else 0.4)),
                 dpi=100)
    FigureCanvasAgg(fig)
    size = max(0.5, min(6.0, 4e4 / max(len(order), 1)))
    for k, (name, rgb) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), k)
        ax.scatter(coord[order, 0], coord[order, 1], c=np.asarray(rgb)[order] / 255.0, s=size, marker=".",
                   linewidths=0)
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if legend:
        handles = [Patch(color=np.asarray(rgb) / 255.0, label=name) for name, rgb in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 if legend else 0, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())

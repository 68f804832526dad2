"""Colours of predictions, shared by both modalities' pictures and the run report: a label coloured by
its model channel, and the error colours (correct, wrong, not scored). The per-channel palettes are
the modality's (css.image.samples, css.pointcloud.render); labels outside a palette, such as the
ignore label 255, are near white.
"""

from __future__ import annotations

import numpy as np

IGNORED_RGB = (230, 230, 230)
CORRECT_RGB = (170, 170, 170)
WRONG_RGB = (220, 20, 20)


def label_colours(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(*labels.shape, 3) uint8 colours of model labels; IGNORE (and anything outside the palette)
    -> IGNORED_RGB."""
    labels = np.asarray(labels, dtype=np.int64)
    valid = (labels >= 0) & (labels < len(colours))
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    out[:] = IGNORED_RGB
    out[valid] = colours[labels[valid]]
    return out


def error_colours(pred: np.ndarray, target: np.ndarray, num_channels: int) -> np.ndarray:
    """(*target.shape, 3) uint8: CORRECT_RGB where pred == target, WRONG_RGB where not, IGNORED_RGB
    where the target is not a class of the model (ignored pixels or points)."""
    target = np.asarray(target, dtype=np.int64)
    out = np.empty((*target.shape, 3), dtype=np.uint8)
    out[:] = IGNORED_RGB
    valid = (target >= 0) & (target < num_channels)
    out[valid & (pred == target)] = CORRECT_RGB
    out[valid & (pred != target)] = WRONG_RGB
    return out

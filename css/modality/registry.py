"""The modality registry: the one place the core reaches a modality from
(docs/architecture.md#the-modality-contract).

``get_modality(name)`` imports a branch only when it is asked for, so the core runs without the
heavy dependencies of the other branch. A new modality is one entry in ``get_modality``.
"""

from __future__ import annotations

from typing import Any

from css.errors import ConfigError
from css.modality.protocol import Modality

NAMES = ("image", "pointcloud")


def modality_names() -> tuple[str, ...]:
    return NAMES


def get_modality(name: str) -> Modality:
    if name == "image":
        from css.image.modality import ImageModality

        return ImageModality()
    if name == "pointcloud":
        from css.pointcloud.modality import PointCloudModality

        return PointCloudModality()
    raise ConfigError(f"modality: {name!r} is not one of {', '.join(NAMES)}")


def method_extensions() -> list[Any]:
    """The method presets every modality adds (css.methods.presets.MethodExtension), in registry order."""
    found = (get_modality(name).method_extension() for name in NAMES)
    return [ext for ext in found if ext is not None]

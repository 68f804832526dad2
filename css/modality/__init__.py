"""What a modality supplies to the core, and the registry that finds one (docs/architecture.md#the-modality-contract)."""

from css.modality.protocol import Modality
from css.modality.registry import get_modality, method_extensions, modality_names

__all__ = ["Modality", "get_modality", "method_extensions", "modality_names"]

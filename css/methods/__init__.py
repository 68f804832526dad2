"""Methods (docs/methods.md): the presets, their resolution into a config's ``method`` (with the
presets a modality adds), and the ``Objective``: a method instantiated for one step."""

from css.methods.objective import Objective, downsample_labels, upsample_logits
from css.methods.presets import COMMON, PRESETS, MethodExtension, StepLoss
from css.methods.resolve import all_presets, method_names, resolve_method

__all__ = ["COMMON", "MethodExtension", "Objective", "PRESETS", "StepLoss", "all_presets", "downsample_labels",
           "method_names", "resolve_method", "upsample_logits"]

"""The small DeepLabV3 and the randomised norms that the image model tests build
(tests/test_image_model.py, tests/test_image_model_weights.py)."""

from __future__ import annotations

import torch

from css.image.models import build_model


SMALL = dict(backbone="resnet18", base_channels=8, head_channels=16)


def small(classes=(3, 2), norm="bn", **kw):
    return build_model(list(classes), norm=norm, **{**SMALL, **kw})


def randomise_norms(model: torch.nn.Module) -> None:
    """Non-trivial norm parameters and statistics, negative gammas included."""
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "running_var", None) is not None:
                module.weight.normal_()
                module.bias.normal_(0.0, 0.5)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)

"""Image modality: datasets, transforms and the DeepLabV3 + ResNet model (docs/protocol-2d-model.md#model).

The model lives in css.image.models and the import of reference/ImageNet weights in
css.image.weights; the package gathers the most used names.
"""

from css.image.deeplab import DeepLabV3
from css.image.models import build_model
from css.image.weights import LoadReport, load_reference_weights

__all__ = ["DeepLabV3", "build_model", "LoadReport", "load_reference_weights"]

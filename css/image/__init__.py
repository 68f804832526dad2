"""Image modality: datasets, transforms and the DeepLabV3 + ResNet model (docs/protocol-2d-model.md#model).

The model lives in css.image.models and the import of reference/ImageNet weights in
css.image.weights; the most used names are re-exported here.
"""

from css.image.models import DeepLabV3, SegOutput, build_model
from css.image.weights import LoadReport, load_reference_weights

__all__ = ["DeepLabV3", "SegOutput", "build_model", "LoadReport", "load_reference_weights"]

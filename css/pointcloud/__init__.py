"""Point-cloud modality: the DGCNN segmentation model, its kNN and the 3DPC-CISS weight import.

The model lives in css.pointcloud.models (docs/pointcloud-model.md) and the weight import in
css.pointcloud.weights; the package gathers the most used names.
"""

from css.pointcloud.models import DGCNNSeg, build_model
from css.pointcloud.weights import PointCloudLoadReport, load_3dpc_ciss_weights

__all__ = ["DGCNNSeg", "build_model", "PointCloudLoadReport", "load_3dpc_ciss_weights"]

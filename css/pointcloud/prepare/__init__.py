"""Turn raw point-cloud datasets into prepared block files (docs/pointcloud-data.md).

``python -m css.pointcloud.prepare {s3dis,scannet,folder} --raw DIR --out DIR`` reads a raw layout,
cuts every scene into blocks (:mod:`css.pointcloud.prepare.blocks`) and writes ``OUT/train.h5``,
``OUT/test.h5`` (:mod:`css.pointcloud.store`) and ``OUT/summary.json``.
"""

from css.pointcloud.prepare.blocks import shift_to_origin, sweep, sweep_with_origins

__all__ = ["shift_to_origin", "sweep", "sweep_with_origins"]

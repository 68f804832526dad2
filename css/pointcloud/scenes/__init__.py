"""Whole scenes instead of 1 m blocks (docs/pointcloud-scenes.md): grid sampling at a voxel size, the
crop that bounds a training sample, the test fragments that cover every point of a scene once, and the
sparse-voxel UNet that classifies them."""

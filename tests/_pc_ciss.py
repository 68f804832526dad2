"""What the 3DPC-CISS tests share (tests/test_pc_ciss*.py): the ignore label, blocks of points on
the x axis, and the worked example of docs/pointcloud-ciss.md#label-spaces."""

import torch

IGN = 255


def x_axis(*blocks):
    return torch.tensor([[[v, 0.0, 0.0] for v in block] for block in blocks])


# The worked example of docs/pointcloud-ciss.md#label-spaces: old [bg, A, B, C], novel D = 4.
EX_LABELS = torch.tensor([[4, 0, 0, 0, 4]])
EX_PRED = torch.tensor([[3, 0, 1, 2, 1]])
EX_U = torch.tensor([[0.0, 0.0, 0.0, 0.1, 0.1]])
EX_NB = torch.tensor([[[0, 2, 1], [1, 2, 0], [2, 0, 1], [3, 4, 0], [4, 3, 2]]])

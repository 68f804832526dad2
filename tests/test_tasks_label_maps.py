"""Task label maps and image/block filters (docs/tasks.md#label-maps, docs/tasks.md#selection):
remap, label_map and keep for VOC, ADE, S3DIS and ScanNet."""

import numpy as np
import pytest
import torch

from css.errors import DataError
from css.tasks.registry import get_task


# --- label maps: VOC ----------------------------------------------------------------------------


def test_voc_remap_train_and_test():
    task = get_task("voc", "15-5s")
    labels = np.array([[0, 5, 16], [17, 255, 20]], dtype=np.uint8)
    np.testing.assert_array_equal(task.remap(labels, 0, "train"), [[0, 5, 0], [0, 255, 0]])
    np.testing.assert_array_equal(task.remap(labels, 2, "train"), [[0, 0, 0], [17, 255, 0]])
    np.testing.assert_array_equal(task.remap(labels, 2, "test"), [[0, 5, 16], [17, 255, 0]])
    np.testing.assert_array_equal(task.remap(labels, 5, "test"), [[0, 5, 16], [17, 255, 20]])
    # the disjoint setting masks the same way; it only keeps fewer images (docs/tasks.md#steps)
    np.testing.assert_array_equal(task.remap(labels, 2, "train", overlap=False), [[0, 0, 0], [17, 255, 0]])
    out = task.remap(labels, 0, "train")
    assert out.dtype == np.int64 and out.shape == (2, 3)


def test_voc_label_map_table():
    table = get_task("voc", "19-1").label_map(1, "train")
    assert table.dtype == np.int64 and table.shape == (256,)
    expected = np.zeros(256, dtype=np.int64)
    expected[20] = 20
    expected[255] = 255
    np.testing.assert_array_equal(table, expected)
    test_table = get_task("voc", "19-1").label_map(0, "test")
    assert test_table[19] == 19 and test_table[20] == 0 and test_table[255] == 255 and test_table[100] == 0


def test_voc_permuted_order_remap():
    # 15-5s_b: step 0 = [0, 12, 9, 20, 7, 15, 8, 14, 16, 5, 19, 4, 1, 13, 2, 11], then 17, 3, 6, 18, 10
    task = get_task("voc", "15-5s_b")
    labels = np.array([0, 12, 9, 20, 11, 17, 3, 6, 10, 255])
    np.testing.assert_array_equal(task.remap(labels, 0, "train"), [0, 1, 2, 3, 15, 0, 0, 0, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 2, "train"), [0, 0, 0, 0, 0, 0, 17, 0, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 2, "test"), [0, 1, 2, 3, 15, 16, 17, 0, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 5, "test"), [0, 1, 2, 3, 15, 16, 17, 18, 20, 255])
    assert task.channel_names(2)[:4] == ["background", "dog", "chair", "tvmonitor"]
    assert task.channel_names(2)[-2:] == ["sheep", "bird"]


def test_remap_torch_tensors_any_integer_dtype():
    task = get_task("voc", "15-5s")
    expected = torch.tensor([[[0, 0, 0], [17, 255, 0]]])
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        labels = torch.tensor([[[0, 5, 16], [17, 255, 20]]], dtype=dtype)
        out = task.remap(labels, 2, "train")
        assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
        assert torch.equal(out, expected), dtype  # uint8 must not be taken for a boolean mask
    for dtype in (np.uint8, np.int16, np.int32, np.uint16, np.int64):
        out = task.remap(np.array([[[0, 5, 16], [17, 255, 20]]], dtype=dtype), 2, "train")
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
        np.testing.assert_array_equal(out, expected.numpy())


def test_remap_edge_cases():
    task = get_task("voc", "15-5s")
    scalar = task.remap(np.array(17, dtype=np.uint8), 2, "train")
    assert scalar.shape == () and int(scalar) == 17
    assert task.remap(np.zeros((0, 4), dtype=np.uint8), 0, "train").shape == (0, 4)
    assert task.remap(torch.zeros(0, dtype=torch.uint8), 0, "test").shape == (0,)
    with pytest.raises(DataError, match="label value 300"):
        task.remap(np.array([1, 300], dtype=np.int32), 0, "train")
    with pytest.raises(DataError, match="label value -1"):
        task.remap(torch.tensor([-1, 3]), 0, "train")
    with pytest.raises(TypeError, match="integer dtype"):
        task.remap(np.array([1.0]), 0, "train")
    with pytest.raises(TypeError, match="integer dtype"):
        task.remap(torch.tensor([True]), 0, "train")


def test_label_map_is_a_fresh_copy():
    task = get_task("voc", "15-5s")
    table = task.label_map(0, "train")
    table[:] = 7
    assert task.label_map(0, "train")[3] == 3


# --- label maps: ADE ----------------------------------------------------------------------------


def test_ade_train_maps_void_and_255_to_background():
    task = get_task("ade", "100-50")
    labels = np.array([0, 50, 101, 150, 255], dtype=np.uint8)
    np.testing.assert_array_equal(task.remap(labels, 0, "train"), [0, 50, 0, 0, 0])
    np.testing.assert_array_equal(task.remap(labels, 1, "train"), [0, 0, 101, 150, 0])
    np.testing.assert_array_equal(task.remap(labels, 0, "test"), [0, 50, 0, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 1, "test"), [0, 50, 101, 150, 255])
    mid = get_task("ade", "50")
    labels = np.array([0, 50, 51, 100, 101, 255])
    np.testing.assert_array_equal(mid.remap(labels, 1, "train"), [0, 0, 51, 100, 0, 0])
    np.testing.assert_array_equal(mid.remap(labels, 1, "test"), [0, 50, 51, 100, 0, 255])


# --- label maps: S3DIS / ScanNet (synthetic background channel) -----------------------------------


def test_s3dis_remap_s0():
    task = get_task("s3dis", "12-1")
    labels = np.array([0, 1, 11, 12, 255])
    np.testing.assert_array_equal(task.remap(labels, 0, "train"), [1, 2, 12, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 1, "train"), [0, 0, 0, 13, 255])
    np.testing.assert_array_equal(task.remap(labels, 0, "test"), [1, 2, 12, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 1, "test"), [1, 2, 12, 13, 255])


def test_s3dis_remap_s1_and_multi_step():
    task = get_task("s3dis", "8-5_s1")  # base: beam board bookcase ceiling chair clutter column door
    labels = np.array([3, 11, 10, 0, 8, 12, 4, 6, 1, 9, 7, 2, 5])
    np.testing.assert_array_equal(task.remap(labels, 0, "train"), [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(task.remap(labels, 1, "train"), [0] * 8 + [9, 10, 11, 12, 13])
    np.testing.assert_array_equal(task.remap(labels, 1, "test"), list(range(1, 14)))
    multi = get_task("s3dis", "8-1")  # steps 1..5: chair 8, sofa 9, bookcase 10, board 11, clutter 12
    labels = torch.tensor([0, 8, 9, 10, 11, 12, 255], dtype=torch.uint8)
    assert multi.remap(labels, 3, "train").tolist() == [0, 0, 0, 11, 0, 0, 255]
    assert multi.remap(labels, 3, "test").tolist() == [1, 9, 10, 11, 0, 0, 255]
    assert multi.channel_names(3) == ["background", "ceiling", "floor", "wall", "beam", "column",
                                      "window", "door", "table", "chair", "sofa", "bookcase"]


def test_scannet_unannotated_is_ignored():
    task = get_task("scannet", "19-1")
    labels = np.array([0, 1, 5, 19, 20, 255])
    np.testing.assert_array_equal(task.remap(labels, 0, "train"), [255, 1, 5, 19, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 1, "train"), [255, 0, 0, 0, 20, 255])
    np.testing.assert_array_equal(task.remap(labels, 0, "test"), [255, 1, 5, 19, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 1, "test"), [255, 1, 5, 19, 20, 255])


def test_scannet_s1_one_class_per_step():
    task = get_task("scannet", "15-1_s1")  # steps 1..5: sofa 8, table 4, toilet 11, wall 1, window 15
    labels = np.array([0, 4, 8, 10, 1, 255])
    # channel of table = 1 (bg) + 15 base + 1 (sofa) = 17; bathtub (10) is first in S1 -> 1
    np.testing.assert_array_equal(task.remap(labels, 2, "train"), [255, 17, 0, 0, 0, 255])
    np.testing.assert_array_equal(task.remap(labels, 2, "test"), [255, 17, 16, 1, 0, 255])
    assert task.classes_per_step(2) == [16, 1, 1]
    assert task.channel_names(2)[-3:] == ["sink", "sofa", "table"]


# --- keep(): image / block filter (docs/tasks.md#selection) ---------------------------------------


def test_keep_voc():
    task = get_task("voc", "15-5s")  # step 1 learns 16
    assert task.keep({0, 16, 20}, 1, "train")
    assert not task.keep({0, 16, 20}, 1, "train", overlap=False)  # future class 20
    assert task.keep([0, 5, 16, 255], 1, "train", overlap=False)
    assert not task.keep({0, 5}, 1, "train") and not task.keep({0, 5}, 1, "train", overlap=False)
    assert not task.keep({0, 255}, 1, "train")
    assert not task.keep({0, 20}, 1, "test")  # only future classes
    assert task.keep({0, 16}, 1, "test") and task.keep(np.array([5]), 1, "test")
    assert not task.keep({0, 255}, 1, "test")  # background is not a seen foreground class
    assert task.keep({0, 1}, 0, "train", overlap=False)


def test_keep_ade_and_pointclouds():
    ade = get_task("ade", "100-50")
    assert ade.keep({0, 120, 255}, 1, "train", overlap=False)
    assert not ade.keep({0, 50}, 1, "train")
    s3dis = get_task("s3dis", "12-1")
    assert s3dis.keep({0, 12}, 0, "train")  # ceiling (0) is a real class here
    assert not s3dis.keep({0, 12}, 0, "train", overlap=False)  # clutter is still future
    assert s3dis.keep({12, 255}, 1, "train", overlap=False) and not s3dis.keep({0, 1}, 1, "train")
    assert s3dis.keep({0}, 0, "test") and not s3dis.keep({12}, 0, "test")
    scannet = get_task("scannet", "19-1")
    assert scannet.keep({0, 5, 20}, 1, "train", overlap=False)  # unannotated is allowed
    assert not scannet.keep({0, 5}, 1, "train")
    assert not scannet.keep({0, 20}, 0, "test") and scannet.keep({0, 3}, 0, "test")
    assert not scannet.keep({0, 20}, 0, "train", overlap=False)

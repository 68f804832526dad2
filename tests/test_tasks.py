"""Task registry (docs/tasks.md, docs/protocol-2d.md#task-tables): tables, aliases, label maps, image
filters."""

import dataclasses

import numpy as np
import pytest
import torch

from css.errors import DataError, TaskError
from css.tasks import Task, get_task, list_tasks, load_task, task_from_steps

# --- VOC tables (docs/protocol-2d.md#task-tables) -------------------------------------------------


def test_voc_standard_tables():
    assert get_task("voc", "offline").steps == [list(range(21))]
    assert get_task("voc", "19-1").steps == [list(range(20)), [20]]
    assert get_task("voc", "15-5").steps == [list(range(16)), [16, 17, 18, 19, 20]]
    assert get_task("voc", "15-5s").steps == [list(range(16)), [16], [17], [18], [19], [20]]
    ten = get_task("voc", "10-1")
    assert ten.num_steps == 11
    assert ten.steps[0] == list(range(11))
    assert ten.steps[1:] == [[label] for label in range(11, 21)]


# name -> (second entry of step 0, last entry of step 0, classes of steps 1..5), from the reference
# tables (docs/protocol-2d.md#task-tables)
VOC_RANDOM = {
    "15-5s_b": (12, 11, [17, 3, 6, 18, 10]),
    "15-5s_c": (13, 7, [12, 14, 6, 1, 2]),
    "15-5s_d": (15, 17, [6, 5, 13, 9, 4]),
    "15-5s_e": (7, 17, [15, 18, 6, 11, 20]),
    "15-5s_f": (7, 18, [8, 6, 10, 19, 17]),
    "15-5s_g": (7, 16, [12, 8, 6, 2, 13]),
    "15-5s_h": (12, 11, [13, 2, 20, 17, 1]),
    "15-5s_i": (13, 6, [2, 18, 9, 17, 1]),
    "15-5s_j": (1, 19, [3, 4, 17, 12, 13]),
    "15-5s_k": (16, 15, [4, 2, 10, 8, 17]),
    "15-5s_l": (10, 12, [2, 18, 20, 13, 5]),
    "15-5s_m": (18, 2, [5, 11, 20, 16, 19]),
    "15-5s_n": (5, 20, [1, 12, 11, 6, 17]),
    "15-5s_o": (9, 6, [14, 19, 11, 2, 3]),
    "15-5s_p": (9, 6, [14, 19, 1, 7, 3]),
    "15-5s_q": (3, 6, [12, 19, 1, 7, 9]),
    "15-5s_r": (3, 19, [12, 6, 18, 10, 20]),
    "15-5s_s": (3, 19, [15, 13, 18, 10, 8]),
    "15-5s_t": (3, 19, [14, 6, 12, 10, 4]),
    "15-5s_u": (3, 10, [1, 2, 12, 19, 5]),
    "15-5s_v": (1, 10, [3, 15, 13, 11, 7]),
    "15-5s_w": (1, 10, [3, 15, 6, 5, 17]),
}


@pytest.mark.parametrize("name", sorted(VOC_RANDOM))
def test_voc_random_orders(name):
    second, last, novel = VOC_RANDOM[name]
    task = get_task("voc", name)
    assert task.num_steps == 6
    assert len(task.steps[0]) == 16
    assert task.steps[0][0] == 0 and task.steps[0][1] == second and task.steps[0][-1] == last
    assert task.steps[1:] == [[label] for label in novel]
    assert sorted(task.order(5)) == list(range(21))
    assert task.classes_per_step(5) == [16, 1, 1, 1, 1, 1]
    alias = get_task("voc", "15-1" + name[5:])
    assert alias.steps == task.steps
    assert alias.name == "15-1" + name[5:] and alias.reference_name == name


def test_voc_full_rows_of_two_random_orders():
    assert get_task("voc", "15-5s_b").steps[0] == [0, 12, 9, 20, 7, 15, 8, 14, 16, 5, 19, 4, 1, 13, 2, 11]
    assert get_task("voc", "15-5s_w").steps[0] == [0, 1, 2, 12, 14, 13, 19, 18, 7, 11, 20, 8, 4, 9, 16, 10]


def test_voc_alias_15_1_and_names():
    task = get_task("voc", "15-1")
    assert task.steps == get_task("voc", "15-5s").steps
    assert task.name == "15-1" and task.reference_name == "15-5s"
    assert get_task("voc", "15-5s").reference_name == "15-5s"
    names = list_tasks("voc")
    assert len(names) == 5 + 22 + 1 + 22
    assert {"offline", "19-1", "15-5", "15-5s", "10-1", "15-5s_b", "15-5s_w", "15-1", "15-1_b", "15-1_w"} <= set(names)
    assert task.class_names[0] == "background" and task.class_names[20] == "tvmonitor"
    assert len(task.class_names) == 21


def test_classes_per_step_and_counts_voc():
    task = get_task("voc", "15-5s")
    assert task.classes_per_step(3) == [16, 1, 1, 1]  # docs/protocol-2d.md#task-tables example
    assert task.classes_per_step(0) == [16]
    assert task.num_classes(3) == 19 and task.num_old_classes(3) == 18
    assert task.num_classes(0) == 16 and task.num_old_classes(0) == 0
    assert get_task("voc", "15-5").classes_per_step(1) == [16, 5]


def test_label_sets_voc():
    task = get_task("voc", "15-5s")
    assert task.current_labels(2) == [17]
    assert task.old_labels(2) == list(range(1, 17))
    assert task.seen_labels(2) == list(range(1, 18))
    assert task.future_labels(2) == [18, 19, 20]
    assert task.current_labels(0) == list(range(1, 16))  # background excluded
    assert task.old_labels(0) == [] and task.future_labels(5) == []


# --- ADE tables ---------------------------------------------------------------------------------


def test_ade_tables():
    assert get_task("ade", "offline").steps == [list(range(151))]
    assert get_task("ade", "100-50").steps == [list(range(101)), list(range(101, 151))]
    t10 = get_task("ade", "100-10")
    assert t10.classes_per_step(5) == [101, 10, 10, 10, 10, 10]
    assert t10.steps[1] == list(range(101, 111)) and t10.steps[5] == list(range(141, 151))
    t5 = get_task("ade", "100-5")
    assert t5.num_steps == 11
    assert t5.steps[1] == [101, 102, 103, 104, 105] and t5.steps[10] == [146, 147, 148, 149, 150]
    t50 = get_task("ade", "50")
    assert t50.steps == [list(range(51)), list(range(51, 101)), list(range(101, 151))]
    alias = get_task("ade", "50-50")
    assert alias.steps == t50.steps and alias.name == "50-50" and alias.reference_name == "50"
    assert list_tasks("ade") == ["offline", "100-50", "100-10", "100-5", "50", "50-50"]
    assert len(t50.class_names) == 151
    assert t50.class_names[1] == "wall" and t50.class_names[150] == "flag"


# --- S3DIS / ScanNet tables (docs/tasks.md#tasks) -------------------------------------------------

S3DIS_S1 = ["beam", "board", "bookcase", "ceiling", "chair", "clutter", "column", "door", "floor",
            "sofa", "table", "wall", "window"]
SCANNET_S1 = ["bathtub", "bed", "bookshelf", "cabinet", "chair", "counter", "curtain", "desk", "door",
              "floor", "otherfurniture", "picture", "refrigerator", "shower curtain", "sink", "sofa",
              "table", "toilet", "wall", "window"]

# novel sets of the 3DPC-CISS splits (docs/tasks.md#tasks)
NOVEL = [
    ("s3dis", "12-1_s0", ["clutter"]),
    ("s3dis", "10-3_s0", ["bookcase", "board", "clutter"]),
    ("s3dis", "8-5_s0", ["chair", "sofa", "bookcase", "board", "clutter"]),
    ("s3dis", "12-1_s1", ["window"]),
    ("s3dis", "10-3_s1", ["table", "wall", "window"]),
    ("s3dis", "8-5_s1", ["floor", "sofa", "table", "wall", "window"]),
    ("scannet", "19-1_s0", ["otherfurniture"]),
    ("scannet", "17-3_s0", ["picture", "cabinet", "otherfurniture"]),
    ("scannet", "15-5_s0", ["shower curtain", "refrigerator", "picture", "cabinet", "otherfurniture"]),
    ("scannet", "19-1_s1", ["window"]),
    ("scannet", "17-3_s1", ["toilet", "wall", "window"]),
    ("scannet", "15-5_s1", ["sofa", "table", "toilet", "wall", "window"]),
]


@pytest.mark.parametrize("dataset,name,novel", NOVEL)
def test_pointcloud_novel_sets(dataset, name, novel):
    task = get_task(dataset, name)
    assert task.num_steps == 2
    assert [task.class_name(label) for label in task.steps[1]] == novel
    total = 13 if dataset == "s3dis" else 20
    assert len(task.steps[0]) == total - len(novel)
    assert task.background is None
    # synthetic background channel: head 0 has one more channel than step 0 lists
    assert task.classes_per_step(1) == [total - len(novel) + 1, len(novel)]
    assert task.order(1)[0] == -1 and task.num_classes(1) == total + 1


@pytest.mark.parametrize("dataset,multi,two_step", [
    ("s3dis", "8-1", "8-5"), ("scannet", "15-1", "15-5")])
@pytest.mark.parametrize("order", ["_s0", "_s1"])
def test_pointcloud_one_class_per_step(dataset, multi, two_step, order):
    task = get_task(dataset, multi + order)
    two = get_task(dataset, two_step + order)
    assert task.num_steps == 6
    assert task.steps[0] == two.steps[0]
    assert task.steps[1:] == [[label] for label in two.steps[1]]
    assert task.classes_per_step(5) == [len(two.steps[0]) + 1, 1, 1, 1, 1, 1]


def test_pointcloud_class_orders_and_aliases():
    s0 = get_task("s3dis", "12-1")
    assert s0.name == "12-1" and s0.reference_name == "12-1_s0"
    assert s0.steps == get_task("s3dis", "12-1_s0").steps == [list(range(12)), [12]]
    s1 = get_task("s3dis", "8-5_s1")
    assert [s1.class_name(label) for label in s1.order(1)[1:]] == S3DIS_S1
    assert s1.order(1) == [-1, 3, 11, 10, 0, 8, 12, 4, 6, 1, 9, 7, 2, 5]
    sc = get_task("scannet", "15-5_s1")
    assert [sc.class_name(label) for label in sc.order(1)[1:]] == SCANNET_S1
    assert get_task("scannet", "19-1").steps == [list(range(1, 20)), [20]]
    assert get_task("scannet", "offline").steps == [list(range(1, 21))]
    assert get_task("s3dis", "offline").classes_per_step(0) == [14]
    assert get_task("s3dis", "offline").class_names == (
        "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
        "bookcase", "board", "clutter")
    assert get_task("scannet", "offline").class_names[0] == "unannotated"
    assert get_task("scannet", "offline").class_names[16] == "shower curtain"
    assert set(list_tasks("s3dis")) == {
        "offline", "12-1", "12-1_s0", "12-1_s1", "10-3", "10-3_s0", "10-3_s1",
        "8-5", "8-5_s0", "8-5_s1", "8-1", "8-1_s0", "8-1_s1"}
    assert len(list_tasks("scannet")) == 13


def test_pointcloud_label_sets_include_label_zero():
    task = get_task("s3dis", "12-1_s0")  # S3DIS 0 is ceiling, a real class
    assert task.current_labels(0) == list(range(12))
    assert task.seen_labels(1) == list(range(13))
    assert task.future_labels(0) == [12]
    assert task.channel_names(0)[:3] == ["background", "ceiling", "floor"]


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


# --- errors ---------------------------------------------------------------------------------------


def test_step_and_split_errors():
    task = get_task("voc", "15-5s")
    with pytest.raises(TaskError, match=r"step 6 .*6 step\(s\).*0\.\.5"):
        task.order(6)
    with pytest.raises(TaskError, match=r"0\.\.5"):
        task.num_old_classes(-1)
    with pytest.raises(TaskError, match="step"):
        task.label_map(1.0, "train")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        task.label_map(0, "val")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        task.keep({1}, 0, "validation")


def test_unknown_dataset_and_task_suggest_names():
    with pytest.raises(TaskError, match=r"unknown dataset 'vco'.*did you mean 'voc'.*voc, ade, s3dis, scannet"):
        get_task("vco", "15-1")
    with pytest.raises(TaskError, match=r"unknown task '15-5x'.*did you mean.*'15-5s'.*valid tasks: offline"):
        get_task("voc", "15-5x")
    with pytest.raises(TaskError, match=r"did you mean '12-1'"):
        get_task("s3dis", "12_1")
    with pytest.raises(TaskError, match="unknown dataset"):
        list_tasks("cityscapes")
    with pytest.raises(TaskError, match=r"\[\[0, 1, 2\], \[3\]\]"):
        get_task("ade", "nonsense")


def test_user_defined_task():
    task = task_from_steps("voc", [[0, 1, 2], (5, 3)])
    assert task.name == "custom" and task.reference_name == "custom"
    assert task.steps == [[0, 1, 2], [5, 3]]
    assert task.classes_per_step(1) == [3, 2] and task.order(1) == [0, 1, 2, 5, 3]
    np.testing.assert_array_equal(task.remap(np.array([0, 1, 3, 4, 5, 255]), 1, "train"), [0, 0, 4, 0, 3, 255])
    np.testing.assert_array_equal(task.remap(np.array([0, 1, 3, 4, 5, 255]), 0, "test"), [0, 1, 0, 0, 0, 255])
    cloud = task_from_steps("s3dis", [[0, 1, 2], [3]], name="mine")
    assert cloud.name == "mine" and cloud.order(1) == [-1, 0, 1, 2, 3] and cloud.classes_per_step(1) == [4, 1]
    assert task_from_steps("scannet", [[1, 2], [20]]).remap(np.array([0, 20]), 1, "train").tolist() == [255, 3]
    assert task_from_steps("ade", [[0, 150]]).num_classes(0) == 2
    assert task_from_steps("voc", [[np.int64(0), np.int32(4)]]).steps == [[0, 4]]


@pytest.mark.parametrize("dataset,steps,message", [
    ("voc", [[1, 2], [3]], r"step 0 must start with the background label 0.*add 0 as the first label"),
    ("voc", [[2, 0], [3]], r"must start with the background label 0"),
    ("ade", [[1, 2]], r"must start with the background label 0"),
    ("voc", [[0, 1], [1, 2]], r"label 1 appears twice \(steps 0 and 1\)"),
    ("voc", [[0, 1, 1]], r"label 1 appears twice \(steps 0 and 0\)"),
    ("voc", [[0, 1], [21]], r"step 1 holds class ids \[21\] outside the voc label range 0\.\.20"),
    ("voc", [[0, 1], [255]], r"outside the voc label range"),
    ("ade", [[0, 151]], r"outside the ade label range 0\.\.150"),
    ("s3dis", [[0, 13]], r"outside the s3dis label range 0\.\.12"),
    ("scannet", [[0, 1], [2]], r"\[0\] outside the scannet label range 1\.\.20.*unannotated"),
    ("voc", [[0, 1.5]], r"step 0 holds non-integer class ids \[1\.5\]"),
    ("voc", [[0, True]], r"non-integer class ids \[True\]"),
    ("voc", [[0, "3"]], r"non-integer"),
    ("voc", [[0, 1], 2], r"step 1 must be a list of class ids, got 2"),
    ("voc", [], r"non-empty list of class groups"),
    ("voc", "15-1", r"non-empty list of class groups"),
    ("voc", [[0, 1], []], r"step 1 is empty"),
    ("voc", [[0], [1]], r"step 0 holds only the background label"),
])
def test_user_defined_task_errors(dataset, steps, message):
    with pytest.raises(TaskError, match=message):
        task_from_steps(dataset, steps)


def test_direct_task_construction_is_validated():
    with pytest.raises(TaskError, match="reserved"):
        Task("folder", "x", [[0, 1], [255]])
    with pytest.raises(TaskError, match="reserved"):
        Task("folder", "x", [[1], [0]], background=None, void_labels=(0,))
    task = Task("folder", "x", [[0, 1], [2]])
    assert task.reference_name == "x" and task.channel_names(1) == ["background", "class_1", "class_2"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "y"


def test_load_task():
    assert load_task("voc", "15-1").reference_name == "15-5s"
    assert load_task("ade", 50).steps == get_task("ade", "50").steps  # YAML reads `task: 50` as int
    custom = load_task("voc", [[0, 1], [2]])
    assert custom.steps == [[0, 1], [2]] and custom.name == "custom"
    with pytest.raises(TaskError, match=r"task name .* or a list of class groups.*type dict"):
        load_task("voc", {"0": [0, 1]})
    with pytest.raises(TaskError, match="unknown task '99'"):
        load_task("voc", 99)
    with pytest.raises(TaskError, match="must start with the background label 0"):
        load_task("voc", [[1, 2]])


def test_dataset_name_is_case_insensitive():
    assert get_task("VOC", "19-1").dataset == "voc"


def test_describe():
    text = get_task("voc", "15-1").describe()
    lines = text.splitlines()
    assert lines[0] == "voc task '15-1' (reference name '15-5s'): 6 step(s), 21 channels after the last step"
    assert lines[1].startswith("  step 0: 16 classes: background (0), aeroplane (1), bicycle (2)")
    assert lines[1].endswith("person (15)")
    assert lines[2] == "  step 1: 1 class: pottedplant (16)"
    assert lines[-1] == "  step 5: 1 class: tvmonitor (20)"
    cloud = get_task("s3dis", "12-1_s1").describe().splitlines()
    assert cloud[0] == "s3dis task '12-1_s1': 2 step(s), 14 channels after the last step"
    assert cloud[1] == "  channel 0: synthetic background (no dataset label)"
    assert cloud[-1] == "  step 1: 1 class: window (5)"

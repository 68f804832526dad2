"""Task registry (docs/tasks.md, docs/protocol-2d.md#task-tables): the reference tables, aliases and
class orders. The label maps and image filters are in test_tasks_label_maps.py, user tasks and
errors in test_tasks_errors.py."""

import pytest

from css.tasks.registry import get_task, list_tasks

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
    assert len(names) == 5 + 22 + 2 + 1 + 22  # the published tables, the random orders, MiB's two, the aliases
    assert {"offline", "19-1", "15-5", "15-5s", "10-1", "15-5s_b", "15-5s_w", "15-1", "15-1_b", "15-1_w", "19-1b",
            "10-5-5"} <= set(names)
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
    assert list_tasks("ade") == ["offline", "100-50", "100-10", "100-5", "50",  # the published tables
                                 "100-50b", "100-50c", "100-10b", "100-10c", "50b", "50c",  # MiB's orders
                                 "50-50", "50-50b", "50-50c"]
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

"""Task errors and user tasks (docs/tasks.md): out-of-range steps and splits, unknown names with
suggestions, user-defined class groups, load_task and describe."""

import dataclasses

import numpy as np
import pytest

from css.errors import TaskError
from css.tasks.task import Task
from css.tasks.registry import get_task, list_tasks, load_task, task_from_steps


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

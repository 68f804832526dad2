"""Image dataset layouts: every user error (missing folders, list files, images or masks, bad
mask values, malformed lists) names the file and the fix; accepted layout variants."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from _image_fixtures import make_ade, make_voc, write_png
from _image_reference import voc_order
from css.errors import ConfigError, DataError, TaskError
from css.image.data import build_dataset, label_histograms
from css.tasks.registry import get_task


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    masks = make_voc(root)
    return root, masks


# --- errors ----------------------------------------------------------------------------------

def test_missing_root_and_bad_layout(tmp_path):
    task = get_task("voc", "15-1")
    with pytest.raises(DataError, match="not a folder"):
        build_dataset("voc", tmp_path / "nowhere", task=task, step=0, split="train")
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=task, step=0, split="train")
    assert "PascalVOC2012" in str(info.value) and "Expected layout" in str(info.value)
    assert "prepare_voc.sh" in str(info.value)
    with pytest.raises(DataError, match="ADEChallengeData2016"):
        build_dataset("ade", tmp_path, task=get_task("ade", "100-50"), step=0, split="train")
    with pytest.raises(DataError, match="classes.yaml"):
        (tmp_path / "images").mkdir()
        (tmp_path / "masks").mkdir()
        build_dataset("folder", tmp_path, task=task, step=0, split="train")


def test_missing_list_file(tmp_path):
    make_voc(tmp_path, num_train=3, num_val=2)
    (tmp_path / "PascalVOC2012" / "list" / "val.txt").unlink()
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="test")
    assert "val.txt" in str(info.value) and "/JPEGImages/<id>.jpg" in str(info.value)


def test_missing_mask_names_the_image(tmp_path):
    make_voc(tmp_path, num_train=5, num_val=2)
    (tmp_path / "PascalVOC2012" / "SegmentationClassAug" / "2007_train0003.png").unlink()
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="train")
    message = str(info.value)
    assert "2007_train0003" in message and "SegmentationClassAug" in message and "no label file" in message


def test_missing_image_is_reported(tmp_path):
    make_voc(tmp_path, num_train=5, num_val=2)
    (tmp_path / "PascalVOC2012" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_train0001.jpg").unlink()
    with pytest.raises(DataError, match="2007_train0001.jpg"):
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="train")


def test_ade_image_without_annotation(tmp_path):
    make_ade(tmp_path, num_train=3, num_val=1)
    (tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_training_00000001.png").unlink()
    with pytest.raises(DataError, match="ADE_training_00000001"):
        build_dataset("ade", tmp_path, task=get_task("ade", "100-50"), step=0, split="train")


def test_out_of_range_mask_values(tmp_path):
    make_voc(tmp_path, num_train=4, num_val=2)
    bad = np.zeros((24, 32), dtype=np.uint8)
    bad[3, 3], bad[4, 4] = 30, 21
    write_png(tmp_path / "PascalVOC2012" / "SegmentationClassAug" / "2007_train0002.png", bad)
    with pytest.raises(DataError) as info:
        build_dataset("voc", tmp_path, task=get_task("voc", "15-1"), step=0, split="train", cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "2007_train0002.png" in message and "[21, 30]" in message and "0..20" in message


def test_colour_mask_is_rejected(tmp_path):
    make_voc(tmp_path, num_train=2, num_val=1)
    Image.new("RGB", (32, 24)).save(tmp_path / "PascalVOC2012" / "SegmentationClassAug" / "2007_train0000.png")
    with pytest.raises(DataError, match="mode RGB"):
        label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")


def test_malformed_list_line(tmp_path):
    make_voc(tmp_path, num_train=2, num_val=1)
    (tmp_path / "PascalVOC2012" / "list" / "val.txt").write_text("/JPEGImages/a.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        label_histograms("voc", tmp_path, "test", cache_dir=tmp_path / "c")


def test_list_parsing_accepts_missing_final_newline_and_crlf(tmp_path):
    masks = make_voc(tmp_path, num_train=3, num_val=2)
    list_file = tmp_path / "PascalVOC2012" / "list" / "train_aug.txt"
    list_file.write_text(list_file.read_text().rstrip("\n").replace("\n", "\r\n"))
    ids, _ = label_histograms("voc", tmp_path, "train", cache_dir=tmp_path / "c")
    assert ids == voc_order("train", masks)


def test_voc_folder_itself_as_root(voc, tmp_path):
    root, masks = voc
    ids, _ = label_histograms("voc", root / "PascalVOC2012", "test", cache_dir=tmp_path)
    assert ids == voc_order("test", masks)


def test_task_of_another_dataset_is_refused(voc, tmp_path):
    root, _ = voc
    with pytest.raises(TaskError, match="0..20"):
        build_dataset("voc", root, task=get_task("ade", "100-50"), step=0, split="train", cache_dir=tmp_path)


def test_unknown_dataset_and_options():
    task = get_task("voc", "15-1")
    with pytest.raises(ConfigError, match="cityscapes"):
        build_dataset("cityscapes", "x", task=task, step=0, split="train")
    with pytest.raises(ConfigError, match="num_clases"):
        build_dataset("synthetic", None, task=task, step=0, split="train", options={"num_clases": 3})
    with pytest.raises(ConfigError, match="split"):
        build_dataset("synthetic", None, task=task, step=0, split="val")

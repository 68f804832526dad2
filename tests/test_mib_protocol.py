"""MiB's own conventions, ``protocol: mib`` (docs/protocol.md#mib-conventions): its label maps, its
task orders, its regulariser weights and its configs. Expected values are typed in from MiB's code
as described in the docs (its tasks.py tables, its dataset masking and its argparser presets)."""

from pathlib import Path

import numpy as np
import pytest

from css.config.build import load_config
from css.config.schema import step_value
from css.errors import ConfigError
from css.image.data import build_dataset
from css.methods.resolve import resolve_method
from css.modality.registry import get_modality
from css.tasks.registry import get_task, with_protocol

from _image_fixtures import make_ade, make_voc

ROOT = Path(__file__).resolve().parents[1]


def test_voc_label_maps_under_mib():
    task = with_protocol(get_task("voc", "15-1"), "mib")  # step 1 adds pottedplant (16)
    train, test = task.label_map(1, "train"), task.label_map(1, "test")
    # training: the current class keeps its channel, old and future classes and 255 become background
    assert [train[v] for v in (0, 3, 15, 16, 17, 20, 255)] == [0, 0, 0, 16, 0, 0, 0]
    # test: background and seen classes keep their channel, future classes and 255 are ignored
    assert [test[v] for v in (0, 3, 15, 16, 17, 20, 255)] == [0, 3, 15, 16, 255, 255, 255]
    reference = get_task("voc", "15-1")
    assert reference.label_map(1, "train")[255] == 255 and reference.label_map(1, "test")[17] == 0


def test_ade_void_is_ignored_at_test_under_mib():
    task = with_protocol(get_task("ade", "100-50"), "mib")
    test, train = task.label_map(0, "test"), task.label_map(0, "train")
    assert [test[v] for v in (0, 1, 100, 101, 150)] == [255, 1, 100, 255, 255]
    assert [train[v] for v in (0, 1, 101, 255)] == [0, 1, 0, 0]
    assert get_task("ade", "100-50").label_map(0, "test")[0] == 0  # reference: void is class 0


def test_a_mib_dataset_reads_the_masks_with_those_maps(tmp_path):
    masks = make_voc(tmp_path, num_train=6, num_val=6)
    task = with_protocol(get_task("voc", "15-5"), "mib")
    test = build_dataset("voc", tmp_path, task=task, step=0, split="test", transform=None)
    for i, image_id in enumerate(test.ids):
        raw = masks[image_id]
        want = np.where(raw <= 15, raw, 255)  # classes 16..20 are future at step 0; 255 stays ignored
        assert np.array_equal(test[i][1].numpy(), want)
    train = build_dataset("voc", tmp_path, task=task, step=1, split="train", transform=None)
    image_id = train.ids[0]
    raw = masks[image_id]
    assert np.array_equal(train[0][1].numpy(), np.where((raw >= 16) & (raw <= 20), raw, 0))


def test_ade_through_the_image_modality(tmp_path):
    make_ade(tmp_path, num_train=6, num_val=6)
    cfg = load_config(ROOT / "configs" / "mib" / "ade_100-50.yaml", [f"data.root={tmp_path}"])
    task = get_modality("image").task(cfg)
    assert task.test_ignores_background and task.test_ignores_unseen and task.train_ignore_as_background


def test_mib_task_orders():
    assert get_task("voc", "19-1b").steps == [[0, 1, 2, 3, 4] + list(range(6, 21)), [5]]
    assert get_task("voc", "19-1b").order(1)[-1] == 5  # bottle is the last channel
    assert get_task("voc", "10-5-5").steps == [list(range(11)), list(range(11, 16)), list(range(16, 21))]
    b, c = get_task("ade", "100-50b"), get_task("ade", "100-50c")
    assert b.steps[1][:6] == [2, 4, 7, 11, 15, 16] and c.steps[1][:6] == [2, 3, 4, 7, 15, 18]
    assert get_task("ade", "100-10b").steps[1] == [11, 16, 50, 64, 66, 73, 89, 92, 145, 146]
    assert get_task("ade", "100-10c").steps[5] == [15, 21, 72, 75, 88, 93, 103, 107, 122, 150]
    assert get_task("ade", "50-50b").steps[0][:5] == [0, 1, 9, 14, 18]
    assert get_task("ade", "50c").steps[1][:5] == [1, 6, 8, 9, 14]
    for name in ("100-50b", "100-50c", "100-10b", "100-10c", "50b", "50c"):
        task = get_task("ade", name)
        assert sorted(label for group in task.steps for label in group) == list(range(151)), name
        assert len(task.steps[0]) == (101 if name.startswith("100") else 51)
    # the b / c orders share their novel classes between 100-50 and the last step of 50-50
    assert get_task("ade", "50b").steps[2] == b.steps[1] and get_task("ade", "50c").steps[2] == c.steps[1]
    assert get_task("ade", "100-10b").steps[0] == b.steps[0]


@pytest.mark.parametrize("method, weight", [("ewc", 500.0), ("pi", 500.0), ("rw", 100.0)])
def test_mib_regulariser_weights(method, weight):
    cfg = load_config(ROOT / "configs" / "mib" / "voc_15-5.yaml", [f"method.name={method}"])
    assert resolve_method(cfg.method, dataset="voc", protocol="mib").reg_importance == weight
    assert resolve_method(cfg.method, dataset="voc", protocol="reference").reg_importance == 100.0


# config: (task, epochs, overlap) of MiB's README (global batch 24, lr 0.01 then 0.001)
MIB_CONFIGS = {"voc_19-1": ("19-1", 30, False), "voc_15-5": ("15-5", 30, False), "voc_15-1": ("15-1", 30, False),
               "voc_19-1b": ("19-1b", 30, False), "voc_10-5-5": ("10-5-5", 30, False),
               "ade_100-50": ("100-50", 60, True), "ade_100-10": ("100-10", 60, True),
               "ade_50-50": ("50-50", 60, True), "ade_100-50b": ("100-50b", 60, True),
               "ade_100-10b": ("100-10b", 60, True), "ade_50-50b": ("50-50b", 60, True)}


def test_every_mib_config():
    shipped = {p.stem for p in (ROOT / "configs" / "mib").glob("*.yaml")} - {"voc_base", "ade_base"}
    assert shipped == set(MIB_CONFIGS)
    for stem, (task, epochs, overlap) in MIB_CONFIGS.items():
        cfg = load_config(ROOT / "configs" / "mib" / f"{stem}.yaml")
        assert (cfg.protocol, cfg.method.name, cfg.task.name, cfg.data.overlap) == ("mib", "mib", task, overlap)
        assert cfg.data.dataset == stem.split("_")[0]
        assert [step_value(cfg, k, 0) for k in ("batch_size", "lr", "epochs")] == [24, 0.01, epochs]
        assert [step_value(cfg, k, 1) for k in ("batch_size", "lr", "epochs")] == [24, 0.001, epochs]


def test_mib_is_refused_for_point_clouds():
    with pytest.raises(ConfigError, match="protocol: mib is MiB's image conventions"):
        load_config(ROOT / "configs" / "s3dis" / "12-1_lgkd.yaml", ["protocol=mib"])

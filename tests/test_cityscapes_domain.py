"""Cityscapes domain-incremental (docs/tasks.md#domain-steps, docs/datasets.md#cityscapes-domains): a
tiny tree in the published layout, the published listing, shuffle and 80 / 20 cut written out here
from the docs, the reference quirk (test images an earlier step trained on) and its fix, the label
ids, the tasks, and one CLI run whose steps keep the 19 classes."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from css.config.build import load_config
from css.errors import ConfigError
from css.image.data import build_dataset
from css.methods.resolve import resolve_method
from css.modality.registry import get_modality
from css.tasks.registry import get_task, list_tasks, with_protocol

from _image_fixtures import make_cityscapes
from _tiny import TINY

ROOT = Path(__file__).resolve().parents[1]
# the published domain ids of the cities the tree holds, and the train ids of its labelIds
CITY_IDS = {"aachen": 0, "bremen": 1, "dusseldorf": 11, "frankfurt": 18}
TRAIN_ID = {7: 0, 24: 11, 26: 13, 33: 18}  # road, person, car, bicycle; everything else 255
CITIES = {"aachen": ("train", 6), "bremen": ("train", 5), "dusseldorf": ("train", 5), "frankfurt": ("val", 4)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    return root, make_cityscapes(root, CITIES)


def published_list(root: Path) -> list[tuple[str, int]]:
    """(image path, domain) of every image: sorted train paths, then sorted val paths."""
    paths = sorted(glob.glob(str(root / "leftImg8bit" / "train" / "*" / "*.png")))
    paths += sorted(glob.glob(str(root / "leftImg8bit" / "val" / "*" / "*.png")))
    return [(p, CITY_IDS[p.split(os.sep)[-2]]) for p in paths]


def published_cut(root: Path, domains: list[int], split: str) -> list[str]:
    """The images of ``domains`` shuffled by RandomState(1), then int(0.8 n) train / the rest test."""
    items = published_list(root)
    idxs = [i for i, (_, d) in enumerate(items) if d in domains]
    np.random.RandomState(1).shuffle(idxs)
    cut = int(0.8 * len(idxs))
    return [items[i][0] for i in (idxs[:cut] if split == "train" else idxs[cut:])]


def image_paths(dataset) -> list[str]:
    return [dataset.source.listing.images[i] for i in dataset.indices]


def test_the_tasks():
    assert set(list_tasks("cityscapes_domain")) == {"offline", "11-5", "11-1", "1-1"}
    task = get_task("cityscapes_domain", "11-1")
    assert task.adds == "domains" and task.steps[0] == list(range(11)) and task.steps[1:] == [[d] for d in range(11, 21)]
    assert get_task("cityscapes_domain", "11-5").steps == [list(range(11)), list(range(11, 16)), list(range(16, 21))]
    assert get_task("cityscapes_domain", "1-1").num_steps == 21
    # 19 channels at every step, one head; C_old and n_t are 19 from step 1 on, as published
    assert [task.classes_per_step(s) for s in (0, 1, 10)] == [[19], [19], [19]]
    assert (task.num_old_classes(0), task.num_old_classes(3), task.num_new_classes(3)) == (0, 19, 19)
    assert task.channel_names(2)[:3] == ["road", "sidewalk", "building"] and task.domain_name(18) == "frankfurt"


def test_reference_images_in_the_published_order(tree):
    root, _ = tree
    task = get_task("cityscapes_domain", "11-1")
    train0 = build_dataset("cityscapes_domain", root, task=task, step=0, split="train", overlap=True, transform=None)
    assert image_paths(train0) == published_cut(root, list(range(11)), "train") and len(train0) == 8
    assert train0.ids[0].count("/") == 2  # split/city/frame
    for step, domains in ((1, list(range(12))), (8, list(range(19)))):
        test = build_dataset("cityscapes_domain", root, task=task, step=step, split="test", transform=None)
        assert image_paths(test) == published_cut(root, domains, "test")
    train8 = build_dataset("cityscapes_domain", root, task=task, step=8, split="train", transform=None)
    assert image_paths(train8) == published_cut(root, [18], "train")


def test_the_reference_tests_on_images_an_earlier_step_trained_on_and_fixed_does_not(tree):
    root, _ = tree
    reference = get_task("cityscapes_domain", "11-1")
    trained = set(published_cut(root, list(range(11)), "train")) | set(published_cut(root, [11], "train"))
    test1 = set(published_cut(root, list(range(12)), "test"))
    assert test1 & trained  # the quirk, on this tree: computed from the published cut alone
    ref_test = build_dataset("cityscapes_domain", root, task=reference, step=1, split="test", transform=None)
    assert set(image_paths(ref_test)) & trained

    fixed = with_protocol(reference, "fixed")
    train_sets = [set(image_paths(build_dataset("cityscapes_domain", root, task=fixed, step=s, split="train",
                                                transform=None))) for s in (0, 1, 8)]
    test_sets = [set(image_paths(build_dataset("cityscapes_domain", root, task=fixed, step=s, split="test",
                                               transform=None))) for s in (0, 1, 8)]
    every_train = set().union(*train_sets)
    assert not (set().union(*test_sets) & every_train)
    # each city cut once: 80 % of each of aachen (6), bremen (5), dusseldorf (5), frankfurt (4) trains
    assert [len(s) for s in train_sets] == [4 + 4, 4, 3] and [len(s) for s in test_sets] == [2 + 1, 2 + 1 + 1, 5]
    assert test_sets[0] <= test_sets[1] <= test_sets[2]  # a city's test images stay the same at every step


def test_label_ids_are_read_as_train_ids(tree):
    root, masks = tree
    task = get_task("cityscapes_domain", "11-5")
    test = build_dataset("cityscapes_domain", root, task=task, step=2, split="test", transform=None)
    assert len(test) > 0
    for i, path in enumerate(image_paths(test)):
        want = np.vectorize(lambda v: TRAIN_ID.get(int(v), 255))(masks[path])
        assert np.array_equal(test[i][1].numpy(), want)
        assert test[i][0].shape == (3, 24, 48)


def test_a_class_task_on_the_domain_dataset_is_refused(tree):
    root, _ = tree
    with pytest.raises(Exception, match="adds classes but the cityscapes_domain dataset has domains"):
        build_dataset("cityscapes_domain", root, task=get_task("voc", "15-5"), step=0, split="train")


@pytest.mark.parametrize("method", ["mib", "plop", "lgkd", "lgkd-only"])
def test_methods_that_need_new_classes_are_refused(method, tree, tmp_path):
    root, _ = tree
    cfg = load_config(ROOT / "configs" / "cityscapes_domain" / "1-1_kd.yaml",
                      [f"data.root={root}", f"method.name={method}", "method.loss_kd=null"])
    from css.controller.steps import Controller
    from css.distributed import DistEnv
    import torch
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    with pytest.raises(ConfigError, match="does not apply to a domain-incremental task"):
        Controller(cfg, env, get_modality("image"))


def test_the_configs_of_the_three_scripts():
    want = {"1-1_kd": ("1-1", "kd", 10.0, "none", None), "1-1_pod": ("1-1", "none", 0.0, "local", (0.0001, 0.001)),
            "11-1_pod": ("11-1", "none", 0.0, "local", (0.0001, 0.0001))}
    for name, (task, kd, weight, pod, factors) in want.items():
        cfg = load_config(ROOT / "configs" / "cityscapes_domain" / f"{name}.yaml")
        m = resolve_method(cfg.method, dataset=cfg.data.dataset, protocol=cfg.protocol)
        assert (cfg.task.name, m.kd, m.loss_kd, m.pod, m.pseudo, m.init_balanced) == (task, kd, weight, pod, "none", False)
        if factors:
            assert (m.pod_factor, m.pod_logits_factor, m.pod_logits) == (*factors, True)
        assert (cfg.train.batch_size, cfg.train.step0.lr, cfg.train.lr, cfg.train.epochs) == (24, 0.01, 0.001, 50)
    with pytest.raises(ConfigError, match="protocol: mib has no Cityscapes conventions"):
        load_config(ROOT / "configs" / "cityscapes_domain" / "1-1_kd.yaml", ["protocol=mib"])


def test_a_domain_run_keeps_its_19_classes_and_reports_no_bg_old_new(tree, tmp_path):
    root, _ = tree
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    cfg.update(name="city", output_dir=str(tmp_path / "runs"), protocol="reference")
    cfg["data"] = dict(cfg["data"], dataset="cityscapes_domain", root=str(root), options={}, crop_size=24)
    cfg["task"] = {"name": "cities", "steps": [[0, 1], [11]]}
    cfg["method"] = {"name": "ft", "loss_kd": 10, "pod": "local", "pod_factor": 0.0001, "pod_logits": True,
                     "pod_scales": [1, 2]}
    cfg["train"] = dict(cfg["train"], batch_size=2, epochs=1, max_iters_per_epoch=2, step0={"epochs": 1})
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run([sys.executable, "-m", "css.train", "--config", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    results = json.loads((tmp_path / "runs" / "city" / "results.json").read_text())
    assert results["adds"] == "domains" and len(results["class_names"]) == 19
    assert [len(s["iou"]) for s in results["steps"]] == [19, 19]
    assert all(results["final"][k] is None for k in ("bg", "old", "new", "hiou"))
    assert results["final"]["all"] == results["steps"][-1]["mean_iou"]
    assert "a domain step: bg, old, new and hIoU do not apply" in proc.stdout
    assert "KD" in proc.stdout and "POD" in proc.stdout  # step 1 distils from the old model
    report = subprocess.run([sys.executable, "-m", "css.report", str(tmp_path / "runs" / "city")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0 and "domain-incremental" in report.stdout


def test_inspect_lists_every_class_of_a_domain_step(tree):
    root, _ = tree
    from css.image.inspect import inspect
    report = inspect("cityscapes_domain", str(root), "11-1", overlap=True, cache_dir=None, options=None,
                     from_config=False)
    # step 1: dusseldorf's 5 images, int(0.8 * 5) = 4 train; test: the last 16 - int(12.8) = 4 of cities 0..11
    assert "step 1: 4 train images, 4 test images" in report
    assert "train pixels per class (a domain step masks no class):" in report
    step1 = report.split("step 1: 4 train images")[1].split("step 2:")[0]
    assert "channel  18  bicycle (18)" in step1 and "channel   0  road (0)" in step1

"""Every step a run will train is checked before the first one trains (docs/controller.md#preflight):
one error lists every failing step with its fix, and nothing is trained or left in the run folder."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from css.controller.preflight import step_problems
from css.distributed import DistEnv
from css.tasks.registry import get_task, task_from_steps

from _image_fixtures import write_jpg, write_png
from _tiny import write_config

ROOT = Path(__file__).resolve().parents[1]


class Built:
    """What the check reads of a built dataset: its length and the labels its items show."""

    def __init__(self, n: int, shown=()):
        self.n, self.shown = n, set(shown)

    def __len__(self):
        return self.n

    def shown_labels(self):
        return self.shown


def env(world: int) -> DistEnv:
    return DistEnv(rank=0, world_size=world, local_rank=0, device=torch.device("cpu"))


def problems(task, step, train, test, batch, world=1, protocol="fixed"):
    return step_problems(task, step, train, test, batch_size=batch, env=env(world), protocol=protocol,
                         batch_key="train.batch_size")


def test_a_training_set_smaller_than_one_batch():
    task = get_task("voc", "15-5")
    found, _ = problems(task, 1, Built(6, range(16, 21)), Built(5), 8)
    assert found == ["step 1: the training set has 6 sample(s), fewer than one batch of 8 (train.batch_size; "
                     "the last incomplete batch is dropped); set train.batch_size to at most 6"]
    assert problems(task, 1, Built(8, range(16, 21)), Built(5), 8) == ([], [])


def test_the_batch_rule_follows_the_sampler_of_each_protocol():
    # 7 samples on 2 processes, global batch 8 (4 each): the published sampler pads to 8, so each
    # process has 4 and one batch; without padding (fixed) each has 3 and none, so at most 6.
    task = get_task("voc", "15-5")
    assert problems(task, 1, Built(7, range(16, 21)), Built(5), 8, world=2, protocol="reference") == ([], [])
    found, _ = problems(task, 1, Built(7, range(16, 21)), Built(5), 8, world=2, protocol="fixed")
    assert len(found) == 1 and found[0].endswith("set train.batch_size to at most 6")


def test_an_empty_test_set_and_an_unshown_class():
    task = task_from_steps("voc", [[0, 1, 2], [3, 4]])
    found, warned = problems(task, 1, Built(20, {3}), Built(0), 8)
    assert warned == []
    assert found == [
        "step 1: no training sample shows boat (4), so the step cannot learn it; add data that shows it, or "
        "move it to a step whose training data shows it (task.steps)",
        "step 1: the test set is empty (no test sample shows a class seen by this step); check data.root and "
        "the task",
    ]


def test_an_unshown_class_of_a_published_step_is_a_warning():
    task = get_task("voc", "15-5")
    found, warned = problems(task, 1, Built(20, range(16, 20)), Built(5), 8)
    assert found == [] and warned == ["step 1: no training sample shows tvmonitor (20), so the step cannot learn "
                                      "it (the published protocol has this step as it is)"]


def test_an_imported_step_is_checked_for_its_test_set_only():
    task = get_task("voc", "15-5")
    assert step_problems(task, 0, None, Built(3), batch_size=8, env=env(1), protocol="fixed",
                         batch_key="train.batch_size", trains=False) == ([], [])
    found, _ = step_problems(task, 0, None, Built(0), batch_size=8, env=env(1), protocol="fixed",
                             batch_key="train.batch_size", trains=False)
    assert len(found) == 1 and "the test set is empty" in found[0]


def _folder(root: Path) -> None:
    """Classes background, a, b, c, d. Train: 10 images of a, 3 of b, none of c or d; test: all four."""
    rng = np.random.default_rng(0)
    shows = {f"tr{n}": 1 for n in range(10)} | {f"trb{n}": 2 for n in range(3)}
    shows |= {f"te{n}": n % 4 + 1 for n in range(8)}
    for image_id, label in shows.items():
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[4:12, 4:12] = label
        write_jpg(root / "images" / f"{image_id}.jpg", rng, 16, 16)
        write_png(root / "masks" / f"{image_id}.png", mask)
    train = [i for i in shows if i.startswith("tr")]
    test = [i for i in shows if i.startswith("te")]
    (root / "classes.yaml").write_text(
        f"classes: [background, a, b, c, d]\nsplits:\n  train: [{', '.join(train)}]\n  test: [{', '.join(test)}]\n")


def test_the_cli_lists_every_failing_step_before_step_0_trains(tmp_path):
    data = tmp_path / "mine"
    _folder(data)
    cfg = write_config(tmp_path, name="pre", data={"dataset": "folder", "root": str(data), "options": {}},
                       task={"name": "steps", "steps": [[0, 1], [2], [3, 4]]})
    env_vars = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run([sys.executable, "-m", "css.train", "--config", str(cfg)], cwd=tmp_path, env=env_vars,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for line in ("the run would fail at a later step, so no step was trained:",
                 "step 1: the training set has 3 sample(s), fewer than one batch of 8",
                 "set train.batch_size to at most 3",
                 "step 2: the training set has 0 sample(s), fewer than one batch of 8",
                 "step 2: no training sample shows c (3), d (4)"):
        assert line in proc.stderr, (line, proc.stderr[-3000:])
    assert "step 0:" not in proc.stderr  # step 0 (10 images of a) passes
    assert not (tmp_path / "runs").exists()  # nothing trained, no run folder left

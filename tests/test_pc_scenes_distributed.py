"""Whole scenes on 2 gloo processes train like 1 with the same global batch (docs/pointcloud-scenes.md#processes):
the same seeded crops and augmentations, batch norm synchronised over the processes' points, averaged
gradients. Every crop holds data.max_points points, so a process's mean over its points is the mean
over the global batch; the first iteration of a step then agrees to float32 rounding."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _spawn import close as _close, history as _history, run as _run  # noqa: E402
from test_pc_scenes_e2e import scene_config  # noqa: E402


def test_two_processes_equal_one_at_the_first_iteration(tmp_path):
    runs = tmp_path / "runs"
    train = {"max_iters_per_epoch": 1, "epochs": 1}
    _run(1, (scene_config(tmp_path, name="one", train=train), None))
    # "two" starts step 1 from the 1-process step 0, so both step 1s start from the same weights
    _run(2, (scene_config(tmp_path, name="two", train=train), None),
         (scene_config(tmp_path, name="init", train=train), runs / "one" / "step0" / "model.pt"))
    h1, h2 = _history(runs / "one", 0), _history(runs / "two", 0)
    assert [e["iterations"] for e in h1] == [e["iterations"] for e in h2] == [1]
    assert set(h1[0]["terms"]) == {"ce", "total"}
    assert _close(h1[0]["terms"], h2[0]["terms"], 1e-5), (h1[0], h2[0])
    h1, h3 = _history(runs / "one", 1), _history(runs / "init", 1)
    assert set(h1[0]["terms"]) == {"ce", "kd", "total"}  # LGKD
    assert _close(h1[0]["terms"], h3[0]["terms"], 1e-5), (h1[0], h3[0])

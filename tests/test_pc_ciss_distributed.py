"""3dpc-ciss under protocol fixed does not depend on the number of processes
(docs/pointcloud-ciss.md#wiring): per-block neighbours, the old model's MC-dropout masks seeded
per sample, and the CE rescaled to the mean over the global batch."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pc_tiny import PC_TINY, write_pc_config  # noqa: E402
from _spawn import close as _close, history as _history, run as _run  # noqa: E402


def test_two_process_ciss_step_matches_one_process(tmp_path):
    """Step 1 of 3dpc-ciss with dropout 0.3 in both models (the new one training, the old one in
    MC-dropout mode), global batch 4 split 2 + 2; the 2-process run starts from the 1-process
    step-0 model, so the first iteration of step 1 sees the same weights in both: its CE and GFT
    agree to float32 rounding. (With the old model's masks from each process's global RNG the
    pseudo-labels, and so the CE, would differ.)"""
    runs = tmp_path / "runs"
    train = dict(PC_TINY["train"], epochs=1, max_iters_per_epoch=1)
    method = {"name": "3dpc-ciss", "ciss_centres": 32}
    _run(1, (write_pc_config(tmp_path, name="one", train=train, method=method), None))
    _run(2, (write_pc_config(tmp_path, name="two", train=train, method=method), runs / "one" / "step0" / "model.pt"))
    h1, h2 = _history(runs / "one", 1), _history(runs / "two", 1)
    assert set(h1[0]["terms"]) == {"ce", "gft", "total"}
    assert h1[0]["terms"]["gft"] > 0  # the new model's training dropout moves its features
    assert _close(h1[0]["terms"], h2[0]["terms"], 1e-5), (h1[0], h2[0])

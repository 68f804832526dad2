"""A 2-process gloo run interrupted in step 1 (after its first epoch was saved to resume.pt) and
started again continues exactly where it stopped: the same epoch logs, weights and test figures as
the uninterrupted 2-process run (docs/controller.md#recovery; every epoch is seeded from seed,
step, epoch and rank, and the pseudo-label thresholds travel in resume.pt)."""

import json
import os
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _spawn import free_port, strict_warnings  # noqa: E402
from _tiny import write_config  # noqa: E402


def _worker(rank: int, world: int, port: int, full: str, part: str, out: str) -> None:
    strict_warnings()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from css.engine import trainer as engine
    from css.config.build import load_config
    from css.controller.steps import run_from_config
    from css.distributed import shutdown

    try:
        run_from_config(load_config(full))
        original = engine.Trainer._epoch

        def crash(self, epoch):  # every rank stops at the same point, before any collective
            if self.settings.step == 1 and epoch == 1:
                raise KeyboardInterrupt
            return original(self, epoch)

        engine.Trainer._epoch = crash
        try:
            run_from_config(load_config(part))
        except KeyboardInterrupt:
            Path(out, f"interrupted{rank}").write_text("1")
        finally:
            engine.Trainer._epoch = original
        resume = Path(load_config(part).run_dir) / "step1" / "resume.pt"
        if rank == 0:
            Path(out, "resume_epoch").write_text(str(torch.load(resume, weights_only=False)["epoch"]))
        run_from_config(load_config(part))
    finally:
        shutdown()


def test_interrupted_two_process_run_resumes_to_the_uninterrupted_one(tmp_path):
    full = write_config(tmp_path, name="full")
    part = write_config(tmp_path, name="part")
    mp.spawn(_worker, args=(2, free_port(), str(full), str(part), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "interrupted0").is_file() and (tmp_path / "interrupted1").is_file()
    assert (tmp_path / "resume_epoch").read_text() == "1"
    runs = tmp_path / "runs"
    log = (runs / "part" / "log.txt").read_text()
    assert "step 1: resuming from" in log and "after epoch 1/2" in log
    for step in (0, 1):
        a = torch.load(runs / "full" / f"step{step}" / "model.pt", weights_only=False)
        b = torch.load(runs / "part" / f"step{step}" / "model.pt", weights_only=False)
        assert [h["terms"] for h in a["history"]] == [h["terms"] for h in b["history"]], step
        assert a["model"].keys() == b["model"].keys()
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), (step, key)
        assert a["world_size"] == b["world_size"] == 2
    ra = json.loads((runs / "full" / "results.json").read_text())
    rb = json.loads((runs / "part" / "results.json").read_text())
    assert [s["iou"] for s in ra["steps"]] == [s["iou"] for s in rb["steps"]]
    assert not (runs / "part" / "step1" / "resume.pt").exists()

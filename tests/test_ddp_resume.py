"""A 2-process gloo run under protocol reference keeps each process's own state across a resume
(docs/controller.md#recovery): the pseudo-label thresholds, which each process computes from its own
shard (docs/protocol-2d-losses.md#thresholds), and the RNG state. The resumed run equals the uninterrupted one."""

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.multiprocessing as mp

from _spawn import free_port, strict_warnings
from _tiny import TINY, write_config


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.cpu().numpy().tobytes()).hexdigest()


def _worker(rank: int, world: int, port: int, straight: str, broken: str, out: str) -> None:
    strict_warnings()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from css.engine import trainer as engine
    from css.config.build import load_config
    from css.controller.steps import run_from_config
    from css.distributed import shutdown

    crash = {"armed": False}
    epoch_fn, resume_fn = engine.Trainer._epoch, engine.Trainer.try_resume
    seen: dict[str, object] = {}

    def run_name(trainer) -> str:
        return trainer.resume_file.parent.parent.name

    def epoch(self, e):
        step = self.settings.step
        if crash["armed"] and step == 1 and e == 1:
            raise KeyboardInterrupt  # after step 1's first epoch was saved in resume.pt
        key = f"{run_name(self)}/s{step}/e{e}"
        if self.objective.thresholds is not None:
            seen[f"{key}/thresholds"] = self.objective.thresholds.cpu().tolist()
        entry = epoch_fn(self, e)
        seen[f"{key}/rng_after"] = _digest(torch.get_rng_state())  # the state the resume file records
        return entry

    def try_resume(self):
        resumed = resume_fn(self)
        if resumed:
            seen[f"{run_name(self)}/s{self.settings.step}/rng_resumed"] = _digest(torch.get_rng_state())
        return resumed

    engine.Trainer._epoch, engine.Trainer.try_resume = epoch, try_resume
    try:
        run_from_config(load_config(straight))
        crash["armed"] = True
        try:
            run_from_config(load_config(broken))
        except KeyboardInterrupt:
            seen["interrupted"] = True
        crash["armed"] = False
        run_from_config(load_config(broken))  # the same command again: resumes step 1 after epoch 1
    finally:
        Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
        shutdown()


def test_a_resumed_ddp_run_keeps_each_process_state(tmp_path):
    train = dict(TINY["train"], max_iters_per_epoch=2)
    straight = write_config(tmp_path, name="straight", protocol="reference", train=train)
    broken = write_config(tmp_path, name="broken", protocol="reference", train=train)
    mp.spawn(_worker, args=(2, free_port(), str(straight), str(broken), str(tmp_path)), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(s["interrupted"] for s in seen)
    # The premise: under protocol reference the two processes hold different thresholds.
    assert seen[0]["straight/s1/e0/thresholds"] != seen[1]["straight/s1/e0/thresholds"]
    for s in seen:
        # Each process continues with its own thresholds, those of the uninterrupted run.
        assert s["broken/s1/e1/thresholds"] == s["broken/s1/e0/thresholds"] == s["straight/s1/e1/thresholds"]
        # ... and with the RNG state it had when the resume file was written.
        assert s["broken/s1/rng_resumed"] == s["broken/s1/e0/rng_after"]
    assert seen[0]["broken/s1/rng_resumed"] != seen[1]["broken/s1/rng_resumed"]

    runs = tmp_path / "runs"
    a = torch.load(runs / "straight" / "step1" / "model.pt", weights_only=False)
    b = torch.load(runs / "broken" / "step1" / "model.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "the resumed model differs"
    terms = [[e["terms"] for e in x["history"]] for x in (a, b)]
    assert terms[0] == terms[1] and len(terms[0]) == 2
    iou = [json.loads((runs / n / "results.json").read_text())["steps"][1]["iou"] for n in ("straight", "broken")]
    assert iou[0] == iou[1]

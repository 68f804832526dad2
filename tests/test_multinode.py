"""Two torchrun "nodes" on this machine over loopback, gloo, one process each (docs/clusters.md).

Three runs of one tiny point-cloud config (2 steps; step 1 trains 8 epochs of 1 iteration, so that
a node can be killed in the middle of it):

- "nodes": ``--nnodes 2 --node_rank {0,1} --nproc_per_node 1``, uninterrupted;
- "procs": one node with ``--nproc_per_node 2`` (the same 2 processes, the same global batch);
- "killed": like "nodes", but node 1 is killed (SIGKILL, its agent and worker) once step 1 has
  written its first resume state. Node 0 must then stop. The same two commands, run again (on a
  free port: the old one may still be held by the closed connections), resume step 1.

Each run's logged first iteration equals the one-node run's. The run folder is written once:
rank 0's files, the same as one node's. And the resumed run ends with the uninterrupted run's
results.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _pc_tiny import PC_TINY, write_pc_config
from _spawn import free_port, history

ROOT = Path(__file__).resolve().parent.parent
TRAIN = dict(PC_TINY["train"], max_iters_per_epoch=1, epochs=8, step0={"epochs": 2}, dist_timeout=60)


def _launch(cfg: Path, log: Path, *, nnodes: int, node_rank: int, nproc: int, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--node_rank={node_rank}",
           f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={port}",
           "-m", "css.train", "--config", str(cfg)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    with open(log, "a") as out:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _kill_tree(pid: int) -> None:
    """SIGKILL a torchrun agent and every process below it: its workers run in sessions of their
    own, so killing the agent's process group would leave them training."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for member in reversed(tree):  # workers first, so the agent cannot restart one
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _two_nodes(cfg: Path, logs: Path, port: int) -> list[subprocess.Popen]:
    return [_launch(cfg, logs / f"node{r}.log", nnodes=2, node_rank=r, nproc=1, port=port) for r in (0, 1)]


def _wait(procs: list[subprocess.Popen], logs: Path, timeout: float = 300) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            _kill_tree(p.pid)
        raise AssertionError("the nodes did not finish:\n" + "\n".join(
            f.read_text()[-3000:] for f in sorted(logs.glob("*.log"))))


def _results(run: Path) -> dict:
    doc = json.loads((run / "results.json").read_text())
    return {"steps": [{k: v for k, v in s.items() if k != "config_hash"} for s in doc["steps"]],
            "final": doc["final"], "world_size": doc["metadata"]["world_size"]}


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "tb" not in p.parts}


def test_two_torchrun_nodes_train_as_one_node_and_resume_after_one_dies(tmp_path):
    runs = tmp_path / "runs"
    cfgs = {name: write_pc_config(tmp_path, name=name, train=TRAIN) for name in ("nodes", "procs", "killed")}
    logs = {name: tmp_path / f"logs_{name}" for name in cfgs}
    for folder in logs.values():
        folder.mkdir()

    # One node, two processes: prepares the synthetic rooms the other runs then read.
    assert _wait([_launch(cfgs["procs"], logs["procs"] / "node0.log", nnodes=1, node_rank=0, nproc=2,
                          port=free_port())], logs["procs"]) == [0]
    assert _wait(_two_nodes(cfgs["nodes"], logs["nodes"], free_port()), logs["nodes"]) == [0, 0]

    nodes, procs = runs / "nodes", runs / "procs"
    first_nodes, first_procs = history(nodes, 0)[0]["terms"], history(procs, 0)[0]["terms"]
    assert set(first_nodes) == {"ce", "total"}
    assert all(abs(first_nodes[k] - first_procs[k]) <= 1e-6 * abs(first_procs[k]) for k in first_procs)
    assert _results(nodes)["world_size"] == 2
    # Written once, by global rank 0: the files of the one-node run, no lock left behind, and the
    # final table in node 0's output only.
    assert _files(nodes) == _files(procs) and "run.lock" not in _files(nodes)
    assert "results.json" in _files(nodes) and "step1/model.pt" in _files(nodes)
    assert str(nodes) in (logs["nodes"] / "node0.log").read_text()
    assert str(nodes) not in (logs["nodes"] / "node1.log").read_text()

    # Node 1 dies in the middle of step 1: node 0 stops, and the same two commands resume.
    killed = runs / "killed"
    port = free_port()
    first = _two_nodes(cfgs["killed"], logs["killed"], port)
    deadline = time.monotonic() + 300
    while not (killed / "step1" / "resume.pt").is_file():
        assert time.monotonic() < deadline and first[0].poll() is None, (logs["killed"] / "node0.log").read_text()
        time.sleep(0.05)
    _kill_tree(first[1].pid)
    node0 = _wait(first[:1], logs["killed"], timeout=120)[0]
    first[1].wait()
    assert node0 != 0
    said = (logs["killed"] / "node0.log").read_text()
    assert "rank 0: another process of this DDP run closed its connection" in said
    assert "docs/clusters.md#after-a-failure" in said
    assert not (killed / "step1" / "model.pt").exists()  # step 1 did not finish
    assert _wait(_two_nodes(cfgs["killed"], logs["killed"], free_port()), logs["killed"]) == [0, 0]
    text = (logs["killed"] / "node0.log").read_text()
    assert "step 0: already finished" in text and "step 1: resuming from" in text
    assert _results(killed) == _results(nodes)

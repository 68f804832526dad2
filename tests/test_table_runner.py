"""scripts/table.py: every (config, seed) through css.train, then css.report over the runs."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from _pc_tiny import write_pc_config

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "table.py"


def table(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd)


def test_dry_run_prints_every_command(tmp_path):
    a, b = tmp_path / "a_lgkd.yaml", tmp_path / "b_ft.yaml"
    a.write_text("{}")
    b.write_text("{}")
    proc = table("--configs", a, b, "--seeds", 0, 2, "--runs-root", tmp_path / "r", "--dry-run",
                 "--modality", "pointcloud", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr
    lines = [shlex.split(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 5
    root = tmp_path / "r"
    for line, (cfg, seed) in zip(lines, [(a, 0), (a, 2), (b, 0), (b, 2)]):
        name = f"{cfg.stem}_s{seed}"
        assert line[1:] == ["-m", "css.train", "--config", str(cfg), "--modality", "pointcloud", f"seed={seed}",
                            f"name={name}", f"output_dir={root}", "train.epochs=1"]
    assert lines[4][1:] == ["-m", "css.report"] + [str(root / n) for n in
                                                    ("a_lgkd_s0", "a_lgkd_s2", "b_ft_s0", "b_ft_s2")]
    assert not root.exists()  # nothing ran


def test_bad_arguments_exit_2(tmp_path):
    assert "does not exist" in table("--configs", tmp_path / "none.yaml", "--dry-run").stderr
    (tmp_path / "x").mkdir()
    for p in (tmp_path / "c.yaml", tmp_path / "x" / "c.yaml"):
        p.write_text("{}")
    proc = table("--configs", tmp_path / "c.yaml", tmp_path / "x" / "c.yaml", "--dry-run")
    assert proc.returncode == 2 and "two configs are named 'c'" in proc.stderr
    assert table("--configs", tmp_path / "c.yaml", "--seeds", 1, 1, "--dry-run").returncode == 2


def test_a_real_table_of_two_seeds_ends_with_the_grouped_report(tmp_path):
    cfg = write_pc_config(tmp_path, name="pc_tiny", train={"epochs": 1, "max_iters_per_epoch": 1})
    root = tmp_path / "table"
    proc = table("--configs", cfg, "--seeds", 0, 1, "--runs-root", root, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert [r["run"] for r in report["runs"]] == ["pc_tiny_s0", "pc_tiny_s1"]
    (group,) = report["groups"]
    assert group["n"] == 2 and group["runs"] == ["pc_tiny_s0", "pc_tiny_s1"]
    finals = [json.loads((root / n / "results.json").read_text())["final"]["all"] for n in group["runs"]]
    assert abs(group["mean"]["all"] - sum(finals) / 2) < 1e-12
    assert abs(group["std"]["all"] - abs(finals[0] - finals[1]) / 2 ** 0.5) < 1e-12  # n - 1 = 1

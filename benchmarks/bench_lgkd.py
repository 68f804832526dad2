"""Time css.losses.lgkd (forward + backward) against a boolean-mask formulation of docs/protocol-2d-losses.md#lgkd.

The boolean-mask version follows the reference algorithm step by step: flatten to (N, C), drop
ignored elements, split prev and novel elements with masks, build the zero-padded target for the
novel ones and take log-softmax of each subset. `lgkd` instead weights the elements in place.

Usage: python benchmarks/bench_lgkd.py [--quick]
Writes benchmarks/results/lgkd.json and benchmarks/results/lgkd.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from css.losses import lgkd  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# (name, batch, classes, spatial shape, old classes)
SHAPES = [
    ("voc 15-1 stride 16", 12, 17, (32, 32), 16),
    ("voc full resolution", 4, 21, (256, 256), 20),
    ("point cloud", 32, 21, (2048,), 20),
    ("ade 100-50 stride 16", 6, 151, (32, 32), 101),
]
PREV_WEIGHT, NOVEL_WEIGHT, ALPHA = 5.0, 1.0, 1.0


def mask_lgkd(new_logits, old_logits, labels, *, prev_weight, novel_weight, alpha=1.0, ignore_index=255):
    """Straightforward boolean-mask LGKD, docs/protocol-2d-losses.md#lgkd steps 1-5."""
    num_old, num_cur = old_logits.shape[1], new_logits.shape[1]
    targets = labels.clone()
    targets[targets < num_old] = 0  # step 1
    new_flat = new_logits.movedim(1, -1).reshape(-1, num_cur)  # step 2
    old_flat = old_logits.movedim(1, -1).reshape(-1, num_old)
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    new_flat, old_flat, targets = new_flat[keep], old_flat[keep], targets[keep]
    old_flat = old_flat * alpha  # step 3
    novel, prev = targets >= num_old, targets < num_old  # step 4

    q_novel = torch.softmax(old_flat[novel], dim=1)  # step 5
    q_novel = torch.cat([q_novel, q_novel.new_zeros(len(q_novel), num_cur - num_old)], dim=1)
    rows = torch.arange(len(q_novel), device=q_novel.device)
    q_novel[rows, targets[novel]] = q_novel[:, 0].clone()
    q_novel[:, 0] = 0
    new_novel = new_flat[novel]
    log_p_novel = new_novel - torch.logsumexp(new_novel, dim=1, keepdim=True)
    loss_novel = (q_novel * log_p_novel).sum(dim=1)

    q_prev = torch.softmax(old_flat[prev], dim=1)  # step 6
    new_prev = new_flat[prev]
    log_p_prev = new_prev - torch.logsumexp(new_prev, dim=1, keepdim=True)
    loss_prev = (q_prev * log_p_prev[:, :num_old]).sum(dim=1)

    return -torch.cat([prev_weight * loss_prev, novel_weight * loss_novel]).mean()  # step 7


def make_inputs(batch, classes, spatial, num_old, seed=0):
    """Random logits and labels: ~85% background, ~10% novel, ~5% ignored."""
    gen = torch.Generator().manual_seed(seed)
    new = torch.randn(batch, classes, *spatial, generator=gen)
    old = torch.randn(batch, num_old, *spatial, generator=gen)
    u = torch.rand(batch, *spatial, generator=gen)
    novel = torch.randint(num_old, classes, (batch, *spatial), generator=gen)
    labels = torch.where(u < 0.10, novel, torch.zeros_like(novel))
    labels = torch.where(u > 0.95, torch.full_like(labels, 255), labels)
    return new, old, labels


def forward_backward(fn, new, old, labels):
    """One forward and backward pass of ``fn`` with respect to ``new``."""
    new.grad = None
    fn(new, old, labels, prev_weight=PREV_WEIGHT, novel_weight=NOVEL_WEIGHT, alpha=ALPHA).backward()
    if new.is_cuda:  # time the kernels, not their launch
        torch.cuda.synchronize()


def time_pair(fn_a, fn_b, new, old, labels, min_run_time):
    """Median seconds per forward+backward call of two functions, timed alternately.

    Alternating the calls after a warm-up makes both functions see the same machine load, which
    matters on a shared machine where a block-wise timer would compare different load periods.
    """
    for _ in range(3):
        forward_backward(fn_a, new, old, labels)
        forward_backward(fn_b, new, old, labels)
    times_a, times_b = [], []
    while len(times_a) < 7 or sum(times_a) + sum(times_b) < min_run_time:
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            forward_backward(fn, new, old, labels)
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    parser.add_argument("--device", default="cpu", help="cpu (the issue's target, default) or cuda")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(2)
    min_run_time = 1.0 if args.quick else 10.0

    load_at_start = os.getloadavg()[0]
    rows = []
    for name, batch, classes, spatial, num_old in SHAPES:
        new, old, labels = (t.to(device) for t in make_inputs(batch, classes, spatial, num_old))
        new.requires_grad_(True)
        ours = lgkd(new, old, labels, prev_weight=PREV_WEIGHT, novel_weight=NOVEL_WEIGHT, alpha=ALPHA)
        ref = mask_lgkd(new, old, labels, prev_weight=PREV_WEIGHT, novel_weight=NOVEL_WEIGHT, alpha=ALPHA)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
        t_ref, t_ours = time_pair(mask_lgkd, lgkd, new, old, labels, min_run_time)
        rows.append(
            {
                "shape": name,
                "logits": [batch, classes, *spatial],
                "num_old": num_old,
                "mask_ms": round(t_ref * 1e3, 3),
                "lgkd_ms": round(t_ours * 1e3, 3),
                "speedup": round(t_ref / t_ours, 2),
            }
        )
        print(f"{name:24s} {str(rows[-1]['logits']):22s} mask {t_ref*1e3:9.3f} ms  "
              f"lgkd {t_ours*1e3:9.3f} ms  speedup {t_ref/t_ours:5.2f}x")

    machine = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        # Other work on the machine slows both versions; alternating calls keep the ratio fair.
        "load_average_1min_at_start": load_at_start,
    }
    report = {
        "benchmark": f"lgkd forward+backward, {device.type} fp32, median of alternating calls",
        "quick": args.quick,
        "machine": machine,
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "lgkd" if device.type == "cpu" else f"lgkd_{device.type}"
    write_atomic(RESULTS / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    write_atomic(RESULTS / f"{stem}.md", markdown(report))


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or "" where that file does not exist."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def markdown(report):
    """The report as a markdown table."""
    m = report["machine"]
    lines = [
        f"# LGKD loss: weighted elements vs boolean masks (forward + backward, {m['device']} fp32)",
        "",
        (f"GPU: {m['gpu']}. " if m.get("gpu") else "")
        + f"Machine: {m['processor']} {m['cpu_model']}, {m['cpu_count']} CPUs ({m['threads']} torch threads), "
        f"{m['platform']}, torch {m['torch']}, Python {m['python']}; 1-minute load average at start "
        f"{m['load_average_1min_at_start']:.2f}. Times are medians of alternating calls."
        + (" Quick run." if report["quick"] else ""),
        "",
        "| shape | logits | C_old | boolean masks (ms) | lgkd (ms) | speedup |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['shape']} | {tuple(r['logits'])} | {r['num_old']} | {r['mask_ms']:.3f} | "
            f"{r['lgkd_ms']:.3f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and os.replace."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()

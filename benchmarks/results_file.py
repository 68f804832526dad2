"""What a benchmark writes: ``benchmarks/results/<stem>.json`` (the machine and the rows) and ``<stem>.md``
(a title, the machine, a table), with ``_<device>`` added to the stem off the CPU, so that CPU and GPU
figures sit side by side. Used by the benchmarks that time one step per setting."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: torch.device) -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}


def write(stem: str, device: torch.device, rows: list[dict], title: str, table: list[str]) -> list[str]:
    """Write both files; ``table`` is the markdown table's lines (header, rule, rows). Returns the
    markdown lines (the caller prints them)."""
    about = machine(device)
    stem = stem if device.type == "cpu" else f"{stem}_{device.type}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"machine": about, "results": rows}, indent=2) + "\n")
    lines = [title, "", f"Machine: {about['processor']}, {about['cpu_count']} CPUs, torch {about['torch']}"
             + (f", {about['gpu']}" if about["gpu"] else ""), "", *table]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return lines

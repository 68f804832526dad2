"""A tiny image run (synthetic data, narrow ResNet-18, 64x64) shared by the end-to-end tests."""

from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "protocol": "fixed",
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "synthetic", "crop_size": 64, "eval_mode": "whole", "num_workers": 0,
             "options": {"num_images": {"train": 48, "test": 16}, "size": 64, "num_classes": 4, "seed": 0}},
    "task": {"name": "2-2"},
    "model": {"backbone": "resnet18", "norm": "bn", "base_channels": 8, "head_channels": 16, "pretrained": None},
    "method": {"name": "lgkd", "prev_kd": 5, "novel_kd": 1},
    "train": {"batch_size": 8, "lr": 0.01, "epochs": 2, "max_iters_per_epoch": 3, "step0": {"epochs": 2}},
}


def write_config(tmp: Path, **sections) -> Path:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    cfg.setdefault("output_dir", str(tmp / "runs"))
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path

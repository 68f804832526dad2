"""A tiny point-cloud run (built-in synthetic rooms, DGCNN with k=8 on 128 points) shared by the
point-cloud end-to-end tests.

Task 3-2 on the synthetic labels 0 floor, 1 wall, 2 ceiling, 3 table, 4 chair: step 0 learns the
three structure classes (plus the synthetic background channel 0: 4 channels), step 1 the two
object classes (2 channels). ``data.root`` is the synthetic cache folder; ``write_pc_config``
puts it inside the test's tmp_path so that no generated rooms are shared between tests.
"""

from pathlib import Path

import yaml

PC_TINY = {
    "name": "pc_tiny",
    "modality": "pointcloud",
    "protocol": "fixed",
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "synthetic", "num_points": 128, "num_workers": 0,
             "options": {"num_rooms": {"train": 3, "test": 1}, "room_size": [2.0, 3.0], "points_per_m2": 150,
                         "objects_per_m2": 1.0, "num_classes": 2, "min_points": 100, "seed": 0}},
    "task": {"name": "3-2"},
    "model": {"k": 8},
    "method": {"name": "lgkd"},
    "train": {"batch_size": 4, "lr": 0.001, "epochs": 2, "max_iters_per_epoch": 2, "eval_batch_size": 8},
}


def write_pc_config(tmp: Path, **sections) -> Path:
    """``PC_TINY`` with sections merged key by key (``train={"epochs": 3}``) or replaced (``name="x"``),
    or removed (``modality=None``), written to ``tmp/<name>.yaml``; the runs go to ``tmp/runs``, the synthetic cache to ``tmp/pc_data``."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PC_TINY.items()}
    for key, value in sections.items():
        if value is None:
            cfg.pop(key, None)  # e.g. modality=None: the modality then comes from the command line
        elif isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    cfg.setdefault("output_dir", str(tmp / "runs"))
    cfg["data"].setdefault("root", str(tmp / "pc_data"))
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path

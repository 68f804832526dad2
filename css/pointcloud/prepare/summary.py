"""The preparation summary: printed at the end and written to ``OUT/summary.json``
(docs/pointcloud-data.md#summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from css.pointcloud import store


def build_summary(source, options, out: Path, metas: dict[str, list[dict[str, Any]]], *,
                  resumed: int, redone: list[str]) -> dict[str, Any]:
    """Scenes, blocks, points and points per class of every split, every repair, the options."""
    splits: dict[str, Any] = {}
    repairs: list[dict[str, Any]] = []
    notes = list(source.notes)
    for split, scene_metas in metas.items():
        blocks = store.BlockStore(out / f"{split}.h5")
        per_set = {}
        for s in source.label_sets:
            counts = blocks.counts(s).sum(0) if len(blocks) else np.zeros(len(source.class_names), np.int64)
            raw = np.zeros(len(source.class_names), np.int64)
            for m in scene_metas:
                raw += np.asarray(m["raw_counts"][s], dtype=np.int64)
            per_set[s] = {name: {"points": int(c), "scene_points": int(r)}
                          for name, c, r in zip(source.class_names, counts, raw)}
        sizes = blocks.sizes
        with_blocks = set(blocks.scenes)
        splits[split] = {
            "scenes": len(scene_metas),
            "blocks": len(blocks),
            # border points belong to two blocks and are counted twice here
            "points": int(sizes.sum()),
            "scene_points": int(sum(m["raw_points"] for m in scene_metas)),
            "points_per_block": ({"min": int(sizes.min()), "median": float(np.median(sizes)),
                                  "max": int(sizes.max())} if len(sizes) else None),
            "scenes_without_blocks": [m["scene"] for m in scene_metas if m["scene"] not in with_blocks],
            # every scene whole, each point once (docs/pointcloud-data.md#whole-scenes)
            "scene_file": store.scene_file(split),
            "points_per_class": per_set,
        }
        for m in scene_metas:
            repairs.extend(m["repairs"])
            notes.extend(m["notes"])
    return {
        "dataset": source.dataset,
        "raw": str(source.raw),
        "options": {"block_size": options.block_size, "stride": options.stride,
                    "min_points": options.min_points, "repair": options.repair, "workers": options.workers,
                    **{k: v for k, v in source.attrs.items() if k != "classes_yaml"}},
        "label_sets": list(source.label_sets),
        "splits": splits,
        "repairs": repairs,
        "notes": notes,
        "resumed_scenes": resumed,
        "redone_partials": redone,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A human-readable version of the summary for the terminal."""
    opts = summary["options"]
    lines = [f"prepared {summary['dataset']} from {summary['raw']}",
             "options: " + ", ".join(f"{k}={v}" for k, v in opts.items())]
    if summary["resumed_scenes"]:
        lines.append(f"resumed: {summary['resumed_scenes']} scenes were already done"
                     + (f", {len(summary['redone_partials'])} damaged partial files redone"
                        if summary["redone_partials"] else ""))
    for split, info in summary["splits"].items():
        lines.append(f"{split}: {info['scenes']} scenes, {info['blocks']} blocks, {info['points']:,} points "
                     f"in blocks ({info['scene_points']:,} in the scenes, kept whole in {info['scene_file']})")
        if info["scenes_without_blocks"]:
            missing = info["scenes_without_blocks"]
            lines.append(f"  {len(missing)} scenes gave no block with >= {opts['min_points']} points: "
                         + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    sets = summary["label_sets"]
    names = list(summary["splits"]["train"]["points_per_class"][sets[0]])
    header = "class".ljust(16) + "".join(f"{split}[{s}]".rjust(20) for s in sets for split in summary["splits"])
    lines += ["points per class (in blocks):", header]
    for name in names:
        row = name.ljust(16)
        for s in sets:
            for info in summary["splits"].values():
                row += f"{info['points_per_class'][s][name]['points']:,}".rjust(20)
        lines.append(row)
    if summary["repairs"]:
        lines.append(f"repairs ({len(summary['repairs'])}):")
        lines += [f"  {r['file']}:{r['line']}: {r['action']}" for r in summary["repairs"]]
    else:
        lines.append("repairs: none")
    lines += [f"note: {n}" for n in summary["notes"]]
    return "\n".join(lines)

"""``results.json``: the record of a run's test figures, built, written and read back.

``results.json`` layout (NaN is stored as ``null``)::

    {
      "task": str | null, "dataset": str | null, "method": str | null,
      "steps": [{"step": t, "num_old": C_old (classes learnt before step t, 0 at step 0),
                 "num_base": the step-0 channels (where this entry's old/new split lies),
                 "num_classes": C_cur,
                 "summary": {"bg", "old", "new", "all", "hiou"},   # this step's own split
                 "iou": [IoU of each class 0..C_cur-1, null if absent from the ground truth],
                 "mean_iou": float,
                 "full": {"metric": "full", "summary", "iou", "mean_iou", "num_points", "num_blocks"}
                         # optional: the full-coverage figures (docs/pointcloud-evaluation.md#full-coverage)
                }, ...],
      "final": {"bg", "old", "new", "all", "avg", "hiou", "oa"},
      "metric": "sampled",             # point clouds: what "steps"/"final" hold
      "full": {"metric": "full", "final": {...}},   # point clouds with data.full_coverage only
      "class_names": [...],
      "metadata": {"protocol", "seed", "world_size", "global_batch", "precision",
                   "versions": {...}, "git_commit": str | null, "created": ISO time,
                   "config": {resolved configuration}}
    }

``final`` is computed from the steps as css.results.summary says (docs/protocol-2d.md#final-summary).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from css.errors import CSSError
from css.results.summary import METRICS, OPTIONAL_METRICS, final_summary, nan_if_none, step_entry
from css.utils import atomic_write_text

# The names of the two point-cloud metrics (docs/pointcloud-evaluation.md): "sampled" is the
# reference's (the figures of every run), "full" scores every point and sits under its own key.
SAMPLED, FULL = "sampled", "full"


def build_results(
    steps_entries: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    metadata: Mapping[str, Any],
    *,
    task: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
    background: bool = True,
    metric: str | None = None,
    domains: bool = False,
) -> dict[str, Any]:
    """The results.json document (module docstring), with ``final`` computed from the steps.

    ``domains``: a domain-incremental task (docs/tasks.md#domain-steps): the document says so
    (``"adds": "domains"``) and its final bg, old, new and hIoU are null (they do not apply).

    ``metric`` names what steps/final hold (point clouds: "sampled"); omitted when None (images).
    Step entries with a ``full`` block, all of them, add the document's ``full`` final.

    ``background=False``: channel 0 is a synthetic background channel (point clouds), so the
    final ``bg`` is not reported (null); ``all`` already leaves it out (ConfusionMatrix.summary).
    ``final.oa`` is the last step's overall accuracy."""
    if not steps_entries:
        raise ValueError("build_results needs at least one step entry")
    # A nan mean IoU or OA is written as null and read back as None: it stays nan in the final, so a
    # results.json rebuilt from disk has the same final as the one first written.
    final = _final(
        [e["iou"] for e in steps_entries],
        [nan_if_none(e["mean_iou"]) for e in steps_entries],
        num_base=int(steps_entries[0]["num_classes"]),
        oa=nan_if_none(steps_entries[-1].get("summary", {}).get("oa")),
        background=background,
    )
    results = {
        "task": task,
        "dataset": dataset,
        "method": method,
        "steps": [dict(e) for e in steps_entries],
        "final": final,
        "class_names": list(class_names),
        "metadata": dict(metadata),
    }
    if metric is not None:
        results["metric"] = metric
    if domains:
        results["adds"] = "domains"
        final.update(bg=math.nan, old=math.nan, new=math.nan, hiou=math.nan)
    full = full_final(steps_entries, background=background)
    if full is not None:
        results[FULL] = {"metric": FULL, "final": full}
    return results


def full_final(steps_entries: Sequence[Mapping[str, Any]], *, background: bool = True) -> dict[str, float] | None:
    """The ``final`` block of the full-coverage figures (docs/pointcloud-evaluation.md#full-coverage),
    computed like the sampled one; None unless every step entry has them (``avg`` needs all steps)."""
    blocks = [e.get(FULL) for e in steps_entries]
    if not blocks or any(not isinstance(b, Mapping) for b in blocks):
        return None
    # The blocks hold the figures of a step entry (metric_figures), so the final is computed by
    # the same _final as the sampled one. A null mean IoU or OA (a block read back from
    # results.json) counts as nan here, as it always has for this metric.
    return _final([b["iou"] for b in blocks], [nan_if_none(b["mean_iou"]) for b in blocks],
                  num_base=int(steps_entries[0]["num_classes"]),
                  oa=nan_if_none(blocks[-1].get("summary", {}).get("oa")), background=background)


def _final(iou_per_step: Sequence[Sequence[float | None]], mean_iou_per_step: Sequence[float], *, num_base: int,
           oa: float, background: bool) -> dict[str, float]:
    """A ``final`` block of results.json (the sampled one and the full-coverage one): final_summary,
    with ``bg`` nan where channel 0 is a synthetic background (``background=False``) and ``oa`` the
    last step's overall accuracy."""
    final = final_summary(iou_per_step, mean_iou_per_step, num_base)
    if not background:
        final["bg"] = math.nan
    final["oa"] = oa
    return final


def write_results_json(
    path: str | os.PathLike,
    *,
    summary_per_step: Sequence[Mapping[str, Any]],
    per_class_iou_per_step: Sequence[Sequence[float | None]],
    class_names: Sequence[str],
    metadata: Mapping[str, Any],
    task: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """Build results.json from per-step ``ConfusionMatrix.summary`` dicts, write it atomically.

    Returns the document written (before NaN -> null).
    """
    if len(summary_per_step) != len(per_class_iou_per_step):
        raise ValueError(f"{len(summary_per_step)} summaries but {len(per_class_iou_per_step)} IoU lists")
    entries = [step_entry(t, s, iou) for t, (s, iou) in enumerate(zip(summary_per_step, per_class_iou_per_step))]
    results = build_results(entries, class_names, metadata, task=task, dataset=dataset, method=method)
    atomic_write_text(path, dumps_json(results) + "\n")
    return results


def dumps_json(obj: Any) -> str:
    """Strict JSON (NaN/inf -> null; paths, numpy and torch scalars converted)."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False, default=_json_default)


def read_results_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load results.json; ``null`` metrics in ``final`` and step summaries become nan."""
    path = Path(path)
    if not path.is_file():
        raise CSSError(f"results file '{path}' does not exist")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CSSError(f"results file '{path}' is not valid JSON ({exc}); rerun the evaluation to rewrite it") from exc
    if not isinstance(results, dict) or "final" not in results or "steps" not in results:
        raise CSSError(f"results file '{path}' lacks the 'steps'/'final' entries of a css results.json")
    results["final"] = {k: nan_if_none(results["final"].get(k)) for k in METRICS + OPTIONAL_METRICS}
    for entry in results["steps"]:
        entry["summary"] = {k: nan_if_none(v) for k, v in entry["summary"].items()}
        if isinstance(entry.get(FULL), dict):
            entry[FULL]["summary"] = {k: nan_if_none(v) for k, v in entry[FULL].get("summary", {}).items()}
    if isinstance(results.get(FULL), dict):
        results[FULL]["final"] = {k: nan_if_none(results[FULL].get("final", {}).get(k))
                                  for k in METRICS + OPTIONAL_METRICS}
    return results


def _finite(obj: Any) -> Any:
    """Recursively replace non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):  # numpy arrays/scalars and torch tensors
        return _finite(obj.tolist())
    raise TypeError(f"cannot store a {type(obj).__name__} in results.json")

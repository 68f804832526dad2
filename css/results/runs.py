"""The finished runs a report covers: each run's final figures and config read back from its folder,
and the groups of runs that differ only by their seed (``python -m css.report``, its text, JSON and
HTML forms; docs/report.md#what-the-page-shows)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from css.errors import CSSError
from css.results.csvfile import read_results_csv, summarize_csv_rows
from css.results.jsonfile import FULL, read_results_json
from css.results.recording import FULL_CSV
from css.results.summary import METRICS, OPTIONAL_METRICS

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
IGNORED_CONFIG_KEYS = frozenset({"seed", "name", "output_dir", "run_dir"})


@dataclass
class Run:
    """The final metrics of one run and, when known, its resolved configuration."""

    name: str
    path: Path
    final: dict[str, float]
    config: dict[str, Any] | None
    full: dict[str, float] | None = None
    """The final full-coverage figures (point clouds with data.full_coverage), else None."""
    domains: bool = False
    """A domain-incremental run (docs/tasks.md#domain-steps): bg, old, new and hIoU do not apply."""


def load_run(arg: str) -> Run:
    """Read a run folder (results.json, else results.csv) or a results file given directly."""
    path = Path(arg)
    if path.is_dir():
        if (path / RESULTS_JSON).is_file():
            file = path / RESULTS_JSON
        elif (path / RESULTS_CSV).is_file():
            file = path / RESULTS_CSV
        else:
            raise CSSError(
                f"run folder '{path}' holds neither {RESULTS_JSON} nor {RESULTS_CSV}; "
                "has the run finished a step? (python -m css.evaluate writes them)"
            )
        name = path.resolve().name
    elif path.is_file():
        file, name = path, path.resolve().parent.name + "/" + path.name
    else:
        raise CSSError(f"run '{arg}' does not exist; pass a run folder or a results.json / results.csv file")

    keys = METRICS + OPTIONAL_METRICS
    if file.suffix == ".csv":
        summary = summarize_csv_rows(read_results_csv(file))
        full_csv = file.with_name(FULL_CSV)
        full = None
        if file.name == RESULTS_CSV and full_csv.is_file():
            full = {k: v for k, v in summarize_csv_rows(read_results_csv(full_csv)).items() if k in keys}
        return Run(name, file, {k: summary[k] for k in keys}, None, full)
    return run_from_results(name, file, read_results_json(file))


def run_from_results(name: str, file: Path, results: dict[str, Any]) -> Run:
    """The Run of a results.json document already read (``load_run`` reads it)."""
    config = results.get("metadata", {}).get("config")
    full = results.get(FULL, {}).get("final") if isinstance(results.get(FULL), dict) else None
    return Run(name, file, results["final"], config if isinstance(config, dict) else None, full,
               domains=results.get("adds") == "domains")


def group_by_config(runs: Sequence[Run]) -> list[list[Run]]:
    """Groups (in first-seen order) of runs whose configs match apart from the ignored keys."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.config is None:
            continue
        stripped = {k: v for k, v in run.config.items() if k not in IGNORED_CONFIG_KEYS}
        key = json.dumps(stripped, sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); nan if any value is nan."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values)


def unique_names(runs: list[Run]) -> None:
    """Use the full path as a run's name where folder names collide."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = str(run.path)


def seed_groups(runs: Sequence[Run], keys: Sequence[str] = METRICS + OPTIONAL_METRICS) -> list[tuple[list[Run], dict[str, tuple[float, float]]]]:
    """The groups of more than one run that differ only by seed, each with the mean and sample std of
    every final figure in ``keys``."""
    groups = [g for g in group_by_config(runs) if len(g) > 1]
    return [(g, {k: mean_std([r.final.get(k, math.nan) for r in g]) for k in keys}) for g in groups]


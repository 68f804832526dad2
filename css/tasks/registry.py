"""The published task tables by name, user tasks from class groups, and the task of a config
(docs/tasks.md#tasks)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Iterable, Sequence

from css.config.protocols import quirks
from css.errors import TaskError
from css.tasks.domain import DomainTask
from css.tasks.tables import DATASETS, TABLES, DatasetInfo
from css.tasks.task import Task, is_int, normalise_steps


def _dataset_info(dataset: str) -> DatasetInfo:
    key = str(dataset).lower()
    if key not in DATASETS:
        raise TaskError(
            f"unknown dataset {dataset!r}{_suggestion(str(dataset), list(DATASETS))}; "
            f"valid datasets: {', '.join(DATASETS)}"
        )
    return DATASETS[key]


def _suggestion(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def list_tasks(dataset: str) -> list[str]:
    """Names get_task accepts for ``dataset``: reference names first, then aliases."""
    _dataset_info(dataset)
    tables, aliases = TABLES[dataset.lower()]
    return list(tables) + list(aliases)


def _make_task(dataset: str, name: str, steps: list[list[int]], reference_name: str) -> Task | DomainTask:
    info = DATASETS[dataset]
    if info.domains:
        return DomainTask(dataset=dataset, name=name, steps=steps, class_names=info.class_names,
                          domain_names=info.domains, reference_name=reference_name)
    return Task(
        dataset=dataset,
        name=name,
        steps=steps,
        background=info.background,
        class_names=info.class_names,
        reference_name=reference_name,
        void_labels=info.void_labels,
        train_ignore_as_background=info.train_ignore_as_background,
    )


def get_task(dataset: str, name: str) -> Task:
    """The reference task ``name`` of ``dataset`` ('voc', 'ade', 's3dis', 'scannet')."""
    _dataset_info(dataset)
    key = dataset.lower()
    tables, aliases = TABLES[key]
    reference = aliases.get(name, name)
    if reference not in tables:
        valid = list_tasks(key)
        raise TaskError(
            f"unknown task {name!r} for dataset {dataset!r}{_suggestion(str(name), valid)}; "
            f"valid tasks: {', '.join(valid)}. A custom task can be given as a list of class "
            f"groups, e.g. task: [[0, 1, 2], [3]]"
        )
    return _make_task(key, name, [list(group) for group in tables[reference]], reference)


def is_published(task: Task) -> bool:
    """Whether ``task`` is a published task of its dataset, as the published tables have it (a
    dataset of one's own or a user's class groups is not)."""
    key = str(task.dataset).lower()
    if key not in TABLES:
        return False
    tables, aliases = TABLES[key]
    reference = aliases.get(task.reference_name, task.reference_name)
    return reference in tables and tables[reference] == task.steps


def task_from_steps(dataset: str, steps: Sequence[Sequence[int]], name: str = "custom") -> Task:
    """A user-defined task: ``steps`` lists dataset label ids per step, step 0 first.

    Validates that ids are ints in the dataset's label range, that no id appears twice and, for
    voc/ade, that step 0 starts with the background label 0. Raises TaskError saying how to fix it.
    """
    info = _dataset_info(dataset)
    key = dataset.lower()
    where = f"custom task {name!r} of dataset {key!r}"
    normalised = normalise_steps(steps, where)
    for index, group in enumerate(normalised):
        outside = [label for label in group if label not in info.labels]
        if outside:
            hint = ""
            if info.void_labels:
                hint = f" (label(s) {list(info.void_labels)} are unannotated and always ignored)"
            raise TaskError(
                f"{where}: step {index} holds class ids {outside} outside the {key} label range "
                f"{info.labels.start}..{info.labels.stop - 1}{hint}; use ids from that range"
            )
    return _make_task(key, name, normalised, name)


def load_task(dataset: str, spec: Any) -> Task:
    """A task from a config value: a reference task name or a list of class groups (YAML).

    A bare integer is read as a name, since YAML parses ``task: 50`` as the number 50.
    """
    if isinstance(spec, str):
        return get_task(dataset, spec)
    if is_int(spec):
        return get_task(dataset, str(spec))
    if isinstance(spec, Sequence):
        return task_from_steps(dataset, spec)
    raise TaskError(
        f"task for dataset {dataset!r} must be a task name (see css.tasks.list_tasks) or a list "
        f"of class groups such as [[0, 1, 2], [3]]; got {spec!r} of type {type(spec).__name__}"
    )


def task_from_config(cfg: Any, load_dataset_task: Callable[..., Any]) -> Task:
    """The task of a config through a modality's ``load_dataset_task(dataset, spec, root=, options=)``:
    ``task.steps`` (class groups) when given, else ``task.name``; a user task keeps its name."""
    spec: Any = cfg.task.steps if cfg.task.steps is not None else cfg.task.name
    task = load_dataset_task(cfg.data.dataset, spec, root=cfg.data.root, options=cfg.data.options or None)
    if cfg.task.steps is not None and task.name != cfg.task.name:
        task = dataclasses.replace(task, name=cfg.task.name)
    return with_protocol(task, cfg.protocol)


def with_protocol(task: Task, protocol: str) -> Task:
    """``task`` with the label conventions of ``protocol``. ``mib`` sets MiB's own
    (docs/protocol.md#mib-conventions): ignored pixels are background in training, classes not seen
    yet are ignored at test, and a void background label (ADE's label 0) is ignored at test."""
    if isinstance(task, DomainTask):
        return dataclasses.replace(task, per_domain_cut=quirks(protocol) == "fixed")
    if protocol != "mib":
        return task
    info = DATASETS.get(str(task.dataset).lower())
    return dataclasses.replace(task, train_ignore_as_background=True, test_ignores_unseen=True,
                               test_ignores_background=bool(info and info.void_background))

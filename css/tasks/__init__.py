"""Tasks (docs/tasks.md): the ``Task`` and its label maps and selection rule, the domain-incremental
``DomainTask``, the published task tables, the class-presence index of a split, and what inspection
reports of a task on a split."""

from css.tasks.domain import DomainTask
from css.tasks.index import ClassIndex, presence_any, presence_share
from css.tasks.inspection import InspectedSplit, StepSummary, format_report, summarise
from css.tasks.registry import get_task, is_published, list_tasks, load_task, task_from_config, task_from_steps, with_protocol
from css.tasks.tables import ADE_CLASSES, CITYSCAPES_CLASSES, S3DIS_CLASSES, SCANNET_CLASSES, VOC_CLASSES
from css.tasks.task import SPLITS, Task

__all__ = ["ADE_CLASSES", "CITYSCAPES_CLASSES", "ClassIndex", "DomainTask", "InspectedSplit", "S3DIS_CLASSES", "SCANNET_CLASSES", "SPLITS", "StepSummary",
           "Task", "VOC_CLASSES", "format_report", "get_task", "is_published", "list_tasks", "load_task", "presence_any",
           "presence_share", "summarise", "task_from_config", "task_from_steps", "with_protocol"]

"""Tasks (docs/tasks.md): the ``Task`` and its label maps and selection rule, the published task
tables, the class-presence index of a split, and what inspection reports of a task on a split."""

from css.tasks.index import ClassIndex, presence_any, presence_share
from css.tasks.inspection import InspectedSplit, StepSummary, format_report, summarise
from css.tasks.registry import get_task, list_tasks, load_task, task_from_config, task_from_steps
from css.tasks.tables import ADE_CLASSES, S3DIS_CLASSES, SCANNET_CLASSES, VOC_CLASSES
from css.tasks.task import SPLITS, Task

__all__ = ["ADE_CLASSES", "ClassIndex", "InspectedSplit", "S3DIS_CLASSES", "SCANNET_CLASSES", "SPLITS", "StepSummary",
           "Task", "VOC_CLASSES", "format_report", "get_task", "list_tasks", "load_task", "presence_any",
           "presence_share", "summarise", "task_from_config", "task_from_steps"]

"""Task types: every kind of question Assay serves, one module each (see `base`).

A module in this package that defines `TASK_TYPE` (an instance of `base.TaskType`) is a task
type; nothing else needs to change to add one. Modules whose name starts with an underscore, and
`base`, are helpers. Use `task_type_get(key)` and `task_type_choices()`; `task_config_of(project)`
gives the configuration a type reads.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from annotation.task_types.base import (
    Consensus,
    ExportForm,
    ExportRow,
    TaskConfig,
    TaskType,
    Vote,
)

__all__ = [
    "Consensus",
    "ExportForm",
    "ExportRow",
    "TaskConfig",
    "TaskType",
    "Vote",
    "task_config_of",
    "task_type_choices",
    "task_type_get",
    "task_types",
]

_HELPERS = {"base"}
# The order types are offered in when an owner creates a project.
_ORDER = ("single_label", "multi_label", "spans", "pairwise", "rating", "free_text", "boxes")


@cache
def task_types() -> dict[str, TaskType]:
    """Every task type by key, discovered from this package's modules."""
    found: dict[str, TaskType] = {}
    for module_info in pkgutil.iter_modules(__path__):
        name = module_info.name
        if name in _HELPERS or name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        task_type = getattr(module, "TASK_TYPE", None)
        if not isinstance(task_type, TaskType):
            continue
        if task_type.key in found:
            raise RuntimeError(f"Two task type modules declare {task_type.key!r}")
        found[task_type.key] = task_type
    rank = {key: index for index, key in enumerate(_ORDER)}
    return dict(sorted(found.items(), key=lambda pair: (rank.get(pair[0], len(rank)), pair[0])))


def task_type_choices() -> list[tuple[str, str]]:
    """(key, name) pairs for model fields, forms and the API."""
    return [(key, task_type.name) for key, task_type in task_types().items()]


def task_type_get(key: str) -> TaskType:
    """The task type with this key; KeyError when there is none."""
    return task_types()[key]


def task_config_of(project: Any) -> TaskConfig:
    """The configuration of a project (or anything with task_type, labels and task_options)."""
    return TaskConfig(
        task_type=project.task_type,
        labels=tuple(project.labels or ()),
        options=dict(getattr(project, "task_options", None) or {}),
    )

"""The plan of a label schema change: what confirming the operations would do to the label
set, the answers and the gold answers, pinned by a token; computed once more when it is applied.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from annotation.models import Annotation, Item, Project
from annotation.schema.operations import _labels_after, _operations_clean
from annotation.schema.selectors import annotations_current
from annotation.services import labels_clean
from annotation.task_types import TaskConfig, TaskType, task_type_get

CHUNK = 5000


@dataclass
class SchemaPlan:
    """What confirming `operations` would do; `token` pins it for the confirmation."""

    from_version: int
    operations: list[dict[str, Any]]
    old_labels: list[dict[str, str]]
    labels: list[dict[str, str]]
    mapping: dict[str, str | None]  # only labels that change; absent means unchanged
    migrated_count: int = 0
    superseded_count: int = 0
    relabel_item_count: int = 0
    gold_mapped_count: int = 0
    gold_lost_item_ids: list[int] = field(default_factory=list)
    token: str = ""

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per old label: its new value, or None when its answers are relabeled."""
        return [
            {
                "old": label["value"],
                "new": self.mapping.get(label["value"], label["value"]),
                "relabel": label["value"] in self.mapping and self.mapping[label["value"]] is None,
                "changed": label["value"] in self.mapping,
            }
            for label in self.old_labels
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "operations": self.operations,
            "labels": self.labels,
            "mapping": self.mapping,
            "migrated_count": self.migrated_count,
            "superseded_count": self.superseded_count,
            "relabel_item_count": self.relabel_item_count,
            "gold_mapped_count": self.gold_mapped_count,
            "gold_lost_item_ids": self.gold_lost_item_ids,
            "token": self.token,
        }


@dataclass
class _Changes:
    """The writes a plan implies, kept from computing it so applying needs no second scan."""

    migrated: list[tuple[int, dict]] = field(default_factory=list)  # (annotation id, value)
    superseded: list[int] = field(default_factory=list)
    lost_per_item: Counter[int] = field(default_factory=Counter)
    gold_mapped: list[tuple[int, dict]] = field(default_factory=list)  # (item id, gold)
    gold_lost: list[int] = field(default_factory=list)


def _token(project: Project, labels: list[dict[str, str]], mapping: dict) -> str:
    canonical = json.dumps(
        [project.pk, project.schema_version, labels, mapping],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _moved(
    task_type: TaskType, value: Mapping[str, Any], mapping: Mapping[str, str | None]
) -> dict | None:
    """The answer with its labels mapped; None without a counterpart (or when malformed)."""
    try:
        return task_type.relabel(value, mapping)
    except (KeyError, TypeError, AttributeError):  # a stored value not in the type's form
        return None


def _valid(
    task_type: TaskType,
    value: dict | None,
    config: TaskConfig,
    item_data: Mapping[str, Any] | None,
) -> dict | None:
    """The value's stored form under the new configuration; None when it has none."""
    if value is None:
        return None
    try:
        return task_type.value_clean(value, config=config, item_data=item_data)
    except ValidationError:
        return None


def _ids(ids: Iterable[int]) -> Any:
    """An `__in` operand for many ids: one array parameter on PostgreSQL, not one per id."""
    ids = list(ids)
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", (ids,))
    return ids


def _chunks(rows: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _answer_changes(
    project: Project,
    task_type: TaskType,
    config: TaskConfig,
    mapping: Mapping[str, str | None],
    changes: _Changes,
) -> None:
    """What each live answer becomes. Only answers whose value changes are validated again,
    with their item's data (fetched per chunk): one the mapping leaves alone keeps labels that
    all still exist. Values come as text and are decoded and relabelled once per distinct
    value, since categorical answers repeat a handful of values over the whole project.
    """
    live = (
        annotations_current(Annotation.objects.filter(project_id=project.pk))
        .order_by("pk")
        .values_list("pk", "item_id", Cast("value", TextField()))
    )
    moved_by_text: dict[str, tuple[bool, dict | None]] = {}
    for chunk in _chunks(live.iterator(chunk_size=CHUNK)):
        changed = []
        for pk, item_id, text in chunk:
            if text not in moved_by_text:
                value = json.loads(text)
                new = _moved(task_type, value, mapping)
                moved_by_text[text] = (new != value, new)
            is_changed, new = moved_by_text[text]
            if is_changed:
                changed.append((pk, item_id, new))
        wanted = {item_id for _pk, item_id, new in changed if new is not None}
        data = dict(Item.objects.filter(pk__in=_ids(wanted)).values_list("pk", "data"))
        for pk, item_id, new in changed:
            cleaned = _valid(task_type, new, config, data.get(item_id))
            if cleaned is None:
                changes.superseded.append(pk)
                changes.lost_per_item[item_id] += 1
            else:
                changes.migrated.append((pk, cleaned))


def _gold_changes(
    project: Project,
    task_type: TaskType,
    config: TaskConfig,
    mapping: Mapping[str, str | None],
    changes: _Changes,
) -> None:
    """What each gold answer becomes; items whose gold answer is lost stop being gold."""
    gold = Item.objects.filter(project_id=project.pk, is_gold=True, gold__isnull=False)
    for pk, data, value in gold.order_by("pk").values_list("pk", "data", "gold"):
        new = _valid(task_type, _moved(task_type, value, mapping), config, data)
        if new is None:
            changes.gold_lost.append(pk)
        elif new != value:
            changes.gold_mapped.append((pk, new))


def _plan_compute(*, project: Project, operations: Any) -> tuple[SchemaPlan, _Changes]:
    task_type = task_type_get(project.task_type)
    if not task_type.needs_labels:
        raise ValidationError(
            {"operations": [f"{task_type.name} projects have no labels to change."]}
        )
    cleaned = _operations_clean(operations)
    old_labels = labels_clean(project.labels)  # colours and hotkeys filled in, as stored now
    labels, mapping = _labels_after(old_labels, cleaned)
    options = task_type.options_clean(project.task_options, labels=labels)
    config = TaskConfig(task_type=project.task_type, labels=tuple(labels), options=options)
    changes = _Changes()
    if mapping:  # adds and edits leave every answer as it is
        _answer_changes(project, task_type, config, mapping, changes)
        _gold_changes(project, task_type, config, mapping, changes)
    plan = SchemaPlan(
        from_version=project.schema_version,
        operations=cleaned,
        old_labels=old_labels,
        labels=labels,
        mapping=mapping,
        migrated_count=len(changes.migrated),
        superseded_count=len(changes.superseded),
        relabel_item_count=len(changes.lost_per_item),
        gold_mapped_count=len(changes.gold_mapped),
        gold_lost_item_ids=changes.gold_lost,
        token=_token(project, labels, mapping),
    )
    return plan, changes


def schema_change_plan(*, project: Project, operations: Any) -> SchemaPlan:
    """Preview `operations` on the project's label set: new labels, mapping, counts, token.

    Errors are keyed `operations[i].<field>` (or `labels[i]` for the resulting label set).
    """
    plan, _changes = _plan_compute(project=project, operations=operations)
    return plan

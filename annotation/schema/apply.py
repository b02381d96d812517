"""Applying a confirmed label schema change: the next schema version, answers migrated or
superseded, items reopened, gold relabelled or retired; and changes made in the project settings.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from annotation.models import Annotation, Item, LabelSchemaVersion, Project
from annotation.schema.plan import CHUNK, _Changes, _chunks, _ids, _plan_compute, schema_change_plan
from annotation.services import labels_clean
from annotation.signals import label_schema_changed
from annotation.task_types import task_type_get
from core.audit import audit_record


def _values_update(model: type[Annotation] | type[Item], column: str, rows: list) -> None:
    """Set a JSON column row by row: one UPDATE per chunk, from arrays on PostgreSQL."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        objects = [model(pk=pk, **{column: value}) for pk, value in rows]
        model.objects.bulk_update(objects, [column], batch_size=1000)
        return
    table = model._meta.db_table
    sql = (
        f'UPDATE "{table}" AS t SET "{column}" = v.value '  # noqa: S608 - our table and column
        "FROM unnest(%s::bigint[], %s::text[]::jsonb[]) AS v(id, value) WHERE t.id = v.id"
    )
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, size=CHUNK * 4):
            cursor.execute(sql, ([pk for pk, _v in chunk], [json.dumps(v) for _pk, v in chunk]))


def _items_reopen(lost_per_item: Mapping[int, int]) -> None:
    """Give back the slots of superseded answers so their items are served again.

    One UPDATE per distinct number of lost answers, rows taken in primary-key order.
    """
    by_count: dict[int, list[int]] = defaultdict(list)
    for item_id, lost in lost_per_item.items():
        by_count[lost].append(item_id)
    for lost, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=_ids(sorted(item_ids))).update(
            annotation_count=Greatest(F("annotation_count") - lost, Value(0)),
            slots_taken=Greatest(F("slots_taken") - lost, Value(0)),
        )


def _changes_write(changes: _Changes) -> None:
    now = timezone.now()
    _values_update(Annotation, "value", changes.migrated)
    if changes.superseded:
        Annotation.objects.filter(pk__in=_ids(changes.superseded)).update(superseded_at=now)
    _items_reopen(changes.lost_per_item)
    _values_update(Item, "gold", changes.gold_mapped)
    if changes.gold_lost:
        Item.objects.filter(pk__in=_ids(changes.gold_lost)).update(gold_retired=True)


@transaction.atomic
def schema_change_apply(
    *,
    project: Project,
    operations: Any,
    token: str,
    user: AbstractBaseUser | None,
    note: str = "",
) -> LabelSchemaVersion:
    """Make the confirmed plan the project's next label schema version and migrate answers.

    Locks the project row for the whole change, recomputes the plan and refuses it
    (ValidationError on `token`) unless it is the one the owner previewed. Mapped answers are
    rewritten in place (keeping their schema version); answers without a counterpart are
    superseded and their items' counters lowered so other workers relabel them; gold answers
    are relabelled, or their items retired from gold service.
    """
    locked = Project.objects.select_for_update().get(pk=project.pk)
    plan, changes = _plan_compute(project=locked, operations=operations)
    if not isinstance(token, str) or token != plan.token:
        raise ValidationError(
            {"token": ["The label set or its plan changed since the preview; preview again."]}
        )
    _changes_write(changes)
    version = LabelSchemaVersion.objects.create(
        project=locked,
        number=locked.schema_version + 1,
        labels=plan.labels,
        task_options=locked.task_options,
        operations=plan.operations,
        mapping=plan.mapping,
        note=str(note or "").strip(),
        migrated_count=plan.migrated_count,
        superseded_count=plan.superseded_count,
        created_by=user,
    )
    locked.labels = plan.labels
    locked.schema_version = version.number
    locked.save(update_fields=["labels", "schema_version", "updated_at"])
    transaction.on_commit(lambda: label_schema_changed.send(sender=Project, project_id=locked.pk))
    audit_record(
        actor=user,
        project=locked,
        action="schema.change",
        target=f"label schema v{version.number}",
        details={
            "operations": plan.operations,
            "note": version.note,
            "migrated": plan.migrated_count,
            "superseded": plan.superseded_count,
        },
    )
    project.labels, project.schema_version = locked.labels, locked.schema_version
    return version


def schema_change_from_settings(
    *, project: Project, labels: Any, user: AbstractBaseUser | None = None
) -> list[dict[str, str]]:
    """A label set edited in the project settings once answers exist: adds and hotkey or
    colour edits become a new schema version; renames and removals are refused (they need
    the Labels page's mapping). Returns the label set to store.
    """
    if not task_type_get(project.task_type).needs_labels:
        return labels  # nothing to version: the project validation checks the (empty) set
    # Normalised (colours and hotkeys filled in) so a label only differs when the owner changed it.
    old = {label["value"]: label for label in labels_clean(project.labels)}
    given = labels if isinstance(labels, list) else []
    filled = []
    for label in given:  # what the settings form leaves out keeps its current value
        label = {"value": label} if isinstance(label, str) else dict(label)
        current = old.get(str(label.get("value", "")).strip(), {})
        for name in ("hotkey", "colour"):
            if not label.get(name) and current.get(name):
                label[name] = current[name]
        filled.append(label)
    new = labels_clean(filled)
    missing = [value for value in old if value not in {label["value"] for label in new}]
    if missing:
        raise ValidationError(
            {
                "labels": [
                    "Labels in use cannot be removed or renamed here once labeling started "
                    f"({', '.join(missing)}): use the project's Labels page "
                    f"(/projects/{project.pk}/labels/), which migrates the answers."
                ]
            }
        )
    operations: list[dict[str, Any]] = []
    for label in new:
        current = old.get(label["value"])
        if current is None:
            operations.append({"op": "add", "label": label})
        elif (current["hotkey"], current["colour"]) != (label["hotkey"], label["colour"]):
            operations.append(
                {
                    "op": "edit",
                    "label": label["value"],
                    "hotkey": label["hotkey"],
                    "colour": label["colour"],
                }
            )
    if not operations:
        return list(project.labels) if [lb["value"] for lb in new] == list(old) else new
    plan = schema_change_plan(project=project, operations=operations)
    version = schema_change_apply(
        project=project,
        operations=operations,
        token=plan.token,
        user=user,
        note="Changed in the project settings.",
    )
    return list(version.labels)

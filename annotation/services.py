"""Write use-cases of the annotation domain: projects, members and annotations."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from annotation.models import (
    Annotation,
    Item,
    LabelSchemaVersion,
    Prediction,
    Project,
    ProjectMember,
)
from annotation.signals import annotation_created
from annotation.task_types import task_config_of, task_type_choices, task_type_get
from annotation.task_types.base import DEFAULT_COLOURS
from core.audit import audit_changes, audit_record

HOTKEY_RE = re.compile(r"^[1-9a-rt-z]$")  # 's' is reserved for skip
PROJECT_FIELDS = ("name", "instructions", "labels", "overlap", "gold_ratio", "task_type")
PROJECT_FIELDS += ("reservation_timeout_seconds", "sensitive_fields", "task_options")
COLOUR_RE = re.compile(r"^#[0-9a-f]{6}$")


def labels_clean(labels: Any, *, required: bool = True) -> list[dict[str, str]]:
    """Validate a label set: 1-50 unique values, each with a unique one-key hotkey and a
    colour (#rrggbb; a colour-blind-safe default by position when not given).

    With `required=False` (types that need no labels, such as rating) an empty set is fine.
    """
    if not required and labels in (None, []):
        return []
    if not isinstance(labels, list) or not labels:
        raise ValidationError({"labels": ["Give at least one label."]})
    if len(labels) > 50:
        raise ValidationError({"labels": ["At most 50 labels."]})
    cleaned: list[dict[str, str]] = []
    values: set[str] = set()
    hotkeys: set[str] = set()
    for index, label in enumerate(labels):
        where = f"labels[{index}]"
        if isinstance(label, str):
            label = {"value": label}
        if not isinstance(label, dict):
            raise ValidationError({where: ["Each label is an object with 'value' and 'hotkey'."]})
        value = str(label.get("value", "")).strip()
        if not value or len(value) > 200:
            raise ValidationError({where: ["'value' must be 1 to 200 characters."]})
        if value in values:
            raise ValidationError({where: [f"Duplicate label value {value!r}."]})
        hotkey = str(label.get("hotkey") or (str(index + 1) if index < 9 else "")).lower()
        if hotkey and not HOTKEY_RE.match(hotkey):
            raise ValidationError({where: ["'hotkey' is one key: 1-9 or a letter other than s."]})
        if hotkey and hotkey in hotkeys:
            raise ValidationError({where: [f"Hotkey {hotkey!r} is used twice."]})
        colour = str(label.get("colour") or DEFAULT_COLOURS[index % len(DEFAULT_COLOURS)]).lower()
        if not COLOUR_RE.match(colour):
            raise ValidationError({where: ["'colour' is #rrggbb, for example #0072b2."]})
        values.add(value)
        if hotkey:
            hotkeys.add(hotkey)
        cleaned.append({"value": value, "hotkey": hotkey, "colour": colour})
    return cleaned


def _project_validate(project: Project) -> None:
    try:
        task_type = task_type_get(project.task_type)
    except KeyError:
        known = ", ".join(key for key, _name in task_type_choices())
        raise ValidationError(
            {"task_type": [f"Unknown task type {project.task_type!r}; use one of: {known}."]}
        ) from None
    project.labels = labels_clean(project.labels, required=task_type.needs_labels)
    project.task_options = task_type.options_clean(project.task_options, labels=project.labels)
    errors: dict[str, list[str]] = {}
    if not isinstance(project.overlap, int) or not 1 <= project.overlap <= 50:
        errors["overlap"] = ["Overlap is a whole number between 1 and 50."]
    if not isinstance(project.gold_ratio, int | float) or not 0 <= project.gold_ratio <= 0.5:
        errors["gold_ratio"] = ["Gold ratio is between 0 and 0.5."]
    timeout = project.reservation_timeout_seconds
    if not isinstance(timeout, int) or timeout < 30:
        errors["reservation_timeout_seconds"] = ["At least 30 seconds."]
    if errors:
        raise ValidationError(errors)
    project.full_clean(exclude=["created_by", "labels"])  # labels_clean checked them above


@transaction.atomic
def project_create(*, user: AbstractBaseUser, **fields: Any) -> Project:
    """Create a project owned by `user`; the crowd app adds its default pool on commit."""
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    project = Project(created_by=user, **fields)
    _project_validate(project)
    project.save()
    ProjectMember.objects.create(project=project, user=user, role=ProjectMember.Role.OWNER)
    LabelSchemaVersion.objects.create(
        project=project,
        number=1,
        labels=project.labels,
        task_options=project.task_options,
        created_by=user,
    )
    return project


@transaction.atomic
def project_update(
    *, project: Project, actor: AbstractBaseUser | None = None, **fields: Any
) -> Project:
    """Change a project's settings; a new overlap applies to items that are not complete.

    Records a "project.update" audit event by `actor` with each changed field's before/after.
    """
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    if "task_type" in fields and fields["task_type"] != project.task_type:
        raise ValidationError({"task_type": ["The task type cannot change after creation."]})
    before = {name: getattr(project, name) for name in fields}  # the schema change sets labels
    if "labels" in fields and project.annotations.exists():
        # Adds and hotkey/colour edits become a new label schema version; renames and removals
        # are refused (they need the Labels page's mapping). Body import: schema imports us.
        from annotation.schema import schema_change_from_settings

        fields["labels"] = schema_change_from_settings(
            project=project, labels=fields["labels"], user=actor
        )
    for name, value in fields.items():
        setattr(project, name, value)
    _project_validate(project)
    project.save(update_fields=[*fields, "updated_at"])
    if "overlap" in fields:
        # Raising overlap reopens items; lowering it never drops below what is already taken.
        project.items.filter(is_gold=False).update(
            target=Greatest(Value(project.overlap), F("slots_taken"))
        )
    changes = audit_changes(before, {name: getattr(project, name) for name in fields})
    if changes:
        audit_record(actor=actor, project=project, action="project.update", details=changes)
    return project


def project_member_set(*, project: Project, user: AbstractBaseUser, role: str) -> ProjectMember:
    """Give `user` the owner or reviewer role on `project` (replacing a previous role)."""
    if role not in ProjectMember.Role.values:
        raise ValidationError({"role": [f"Unknown role {role!r}."]})
    member, _ = ProjectMember.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return member


def annotation_value_clean(
    *, project: Project, value: Any, item: Item | None = None
) -> dict[str, Any]:
    """Validate an answer against the project's task type (and the item, when given: offsets
    inside its text, boxes inside its image); return the answer's stored form."""
    task_type = task_type_get(project.task_type)
    item_data = item.data if item is not None else None
    return task_type.value_clean(value, config=task_config_of(project), item_data=item_data)


def annotation_input_clean(
    *, project: Project, value: Any, duration_ms: int, item: Item | None = None
) -> dict[str, Any]:
    """Validate an answer and its time on task; return the value's stored form."""
    cleaned = annotation_value_clean(project=project, value=value, item=item)
    if not isinstance(duration_ms, int) or not 0 <= duration_ms <= 24 * 3600 * 1000:
        raise ValidationError({"duration_ms": ["Between 0 and 86400000 milliseconds."]})
    return cleaned


def annotation_announce(*, annotation: Annotation) -> None:
    """Tell other apps (quality) about a stored annotation, once the transaction commits."""
    transaction.on_commit(
        lambda: annotation_created.send(
            sender=Annotation,
            project_id=annotation.project_id,
            item_id=annotation.item_id,
            annotation_id=annotation.pk,
        )
    )


def _schema_current(project: Project) -> Project:
    """The project with its label set as it is now, read under a key-share lock on PostgreSQL:
    a label schema change in progress (annotation.schema holds the row FOR UPDATE) is waited
    for, so an answer is never checked against labels a committed change has retired."""
    if connection.vendor != "postgresql" or not transaction.get_connection().in_atomic_block:
        return project
    table = Project._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT "schema_version", "labels", "task_options" FROM "{table}" '  # noqa: S608
            'WHERE "id" = %s FOR KEY SHARE',
            [project.pk],
        )
        row = cursor.fetchone()
    if row is not None and row[0] != project.schema_version:
        labels, options = (json.loads(x) if isinstance(x, str) else x for x in row[1:])
        project.schema_version, project.labels, project.task_options = row[0], labels, options
    return project


def annotation_suggestion_outcome(
    *, item: Item, suggestion_id: int | None, value: dict[str, Any]
) -> tuple[int | None, bool | None]:
    """The pre-label an answer was made with, and whether the answer (stored form) is that
    pre-label unchanged: (None, None) when no suggestion was given, when it is not a prediction
    of `item`, or when `item` is gold (gold items never show one). One query at most.

    Whether the author may see suggestions at all is the caller's check (crowd's pools)."""
    if suggestion_id is None or item.is_gold:
        return None, None
    predicted = (
        Prediction.objects.filter(pk=suggestion_id, item_id=item.pk)
        .values_list("value", flat=True)
        .first()
    )
    if predicted is None:
        return None, None
    return suggestion_id, predicted == value


def annotation_create(
    *,
    item: Item,
    author: AbstractBaseUser,
    value: Any,
    duration_ms: int,
    client_key: str = "",
    suggestion_id: int | None = None,
) -> Annotation:
    """Store one answer; callers hold the item's claim. Announces it after commit.

    `client_key` is the keyed hash of the submitting client (crowd.services.client_key_compute).
    `suggestion_id` is the prediction the author was shown (annotation_suggestion_outcome);
    whether it was accepted unchanged is computed here, never taken from the client.
    """
    project = _schema_current(item.project)
    cleaned = annotation_input_clean(
        project=project, value=value, duration_ms=duration_ms, item=item
    )
    shown, accepted = annotation_suggestion_outcome(
        item=item, suggestion_id=suggestion_id, value=cleaned
    )
    annotation = Annotation.objects.create(
        project_id=item.project_id,
        item=item,
        author=author,
        value=cleaned,
        schema_version=project.schema_version,
        duration_ms=duration_ms,
        client_key=client_key,
        suggestion_id=shown,
        suggestion_accepted=accepted,
    )
    Item.objects.filter(pk=item.pk).update(annotation_count=F("annotation_count") + 1)
    annotation_announce(annotation=annotation)
    return annotation


# --- routing and gold upkeep, called by the quality engine -----------------------------------

TARGET_MAX = 32_767  # Item.target is a PositiveSmallIntegerField


def item_targets_raise(*, project: Project, targets: Mapping[int, int]) -> int:
    """Raise regular items' target (adaptive overlap); never lowers one. Returns changed rows.

    Ids of other projects and of gold items are ignored. One UPDATE per distinct target.
    """
    by_target: dict[int, list[int]] = defaultdict(list)
    for item_id, target in targets.items():
        if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= TARGET_MAX:
            raise ValidationError(
                {"targets": [f"Item {item_id}: target must be 1 to {TARGET_MAX}."]}
            )
        by_target[target].append(item_id)
    changed = 0
    with transaction.atomic():
        for target, item_ids in sorted(by_target.items()):
            changed += Item.objects.filter(
                project_id=project.pk, is_gold=False, pk__in=item_ids, target__lt=target
            ).update(target=target)
    return changed


def item_priorities_set(*, project: Project, high: Collection[int]) -> int:
    """Mark the project's doubtful items: priority 1 for `high`, 0 for every other item.

    Only rows whose priority changes are written; returns how many.
    """
    high_ids = list(set(high))
    items = Item.objects.filter(project_id=project.pk)
    with transaction.atomic():
        raised = items.filter(pk__in=high_ids).exclude(priority=1).update(priority=1)
        lowered = items.exclude(priority=0).exclude(pk__in=high_ids).update(priority=0)
    return raised + lowered


def gold_items_retire(*, project: Project, item_ids: Collection[int]) -> int:
    """Stop serving these gold items (seen by too many workers); returns how many were retired."""
    return Item.objects.filter(
        project_id=project.pk, is_gold=True, gold_retired=False, pk__in=list(item_ids)
    ).update(gold_retired=True)


@transaction.atomic
def item_promote_to_gold(*, item: Item, label: str) -> Item:
    """Make a (high-confidence, expert-reviewed) item a gold question with answer `label`."""
    locked = Item.objects.select_for_update().select_related("project").get(pk=item.pk)
    gold = annotation_value_clean(project=locked.project, value={"label": label}, item=locked)
    locked.gold = gold
    locked.is_gold = True
    locked.save(update_fields=["gold", "is_gold"])
    return locked

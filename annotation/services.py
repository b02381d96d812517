"""Write use-cases of the annotation domain: projects, members and annotations."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from annotation.models import Annotation, Item, Project, ProjectMember
from annotation.signals import annotation_created

HOTKEY_RE = re.compile(r"^[1-9a-rt-z]$")  # 's' is reserved for skip
PROJECT_FIELDS = ("name", "instructions", "labels", "overlap", "gold_ratio", "task_type")
PROJECT_FIELDS += ("reservation_timeout_seconds", "sensitive_fields")


def labels_clean(labels: Any) -> list[dict[str, str]]:
    """Validate a label set: 1-50 unique values, each with a unique one-key hotkey."""
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
        values.add(value)
        if hotkey:
            hotkeys.add(hotkey)
        cleaned.append({"value": value, "hotkey": hotkey})
    return cleaned


def _project_validate(project: Project) -> None:
    project.labels = labels_clean(project.labels)
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
    project.full_clean(exclude=["created_by"])


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
    return project


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    """Change a project's settings; a new overlap applies to items that are not complete."""
    unknown = set(fields) - set(PROJECT_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    if "task_type" in fields and fields["task_type"] != project.task_type:
        raise ValidationError({"task_type": ["The task type cannot change after creation."]})
    if "labels" in fields and project.annotations.exists():
        old = set(project.label_values)
        new = {label["value"] for label in labels_clean(fields["labels"])}
        if not old <= new:
            raise ValidationError(
                {"labels": ["Labels in use cannot be removed or renamed once labeling started."]}
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
    return project


def project_member_set(*, project: Project, user: AbstractBaseUser, role: str) -> ProjectMember:
    """Give `user` the owner or reviewer role on `project` (replacing a previous role)."""
    if role not in ProjectMember.Role.values:
        raise ValidationError({"role": [f"Unknown role {role!r}."]})
    member, _ = ProjectMember.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return member


def annotation_value_clean(*, project: Project, value: Any) -> dict[str, Any]:
    """Validate an answer against the project's task type; return its stored form."""
    label = value.get("label") if isinstance(value, dict) else value
    if not isinstance(label, str) or label not in project.label_values:
        allowed = ", ".join(project.label_values)
        raise ValidationError({"label": [f"Unknown label {label!r}; use one of: {allowed}."]})
    return {"label": label}


def annotation_input_clean(*, project: Project, value: Any, duration_ms: int) -> dict[str, Any]:
    """Validate an answer and its time on task; return the value's stored form."""
    cleaned = annotation_value_clean(project=project, value=value)
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


def annotation_create(
    *, item: Item, author: AbstractBaseUser, value: Any, duration_ms: int, client_key: str = ""
) -> Annotation:
    """Store one answer; callers hold the item's claim. Announces it after commit.

    `client_key` is the keyed hash of the submitting client (crowd.services.client_key_compute).
    """
    cleaned = annotation_input_clean(project=item.project, value=value, duration_ms=duration_ms)
    annotation = Annotation.objects.create(
        project_id=item.project_id,
        item=item,
        author=author,
        value=cleaned,
        duration_ms=duration_ms,
        client_key=client_key,
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
    gold = annotation_value_clean(project=locked.project, value={"label": label})
    locked.gold = gold
    locked.is_gold = True
    locked.save(update_fields=["gold", "is_gold"])
    return locked

"""The audit log: recording owner and reviewer actions, and reading them back.

Services call `audit_record` after the action, inside their own transaction, so an action
and its audit row commit or roll back together. Core imports no app: projects and actors
arrive as model instances (or None) and are stored by id.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet

from core.models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

ACTION_MAX = AuditEvent._meta.get_field("action").max_length or 50
TARGET_MAX = AuditEvent._meta.get_field("target").max_length or 200

# The action codes services record, grouped by the family before the dot.
ACTIONS = (
    "export.payout_csv",
    "member.add",
    "member.remove",
    "member.role",
    "model.train",
    "pay.approve",
    "pay.bonus",
    "pay.reject",
    "pool.link",
    "pool.member_add",
    "pool.member_remove",
    "pool.unlink",
    "project.update",
    "quality.action",
    "quality.settings",
    "quality.undo",
    "release.create",
    "release.download",
    "requirement.add",
    "requirement.remove",
    "review.decide",
    "rules.change",
    "schema.change",
    "worker.block",
    "worker.unblock",
)


def audit_json(value: Any) -> Any:
    """`value` as JSON: model instances become their primary key, dates ISO strings."""
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, Mapping):
        return {str(key): audit_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [audit_json(item) for item in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def audit_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """{field: {"before", "after"}} for the fields whose JSON form differs."""
    changes: dict[str, Any] = {}
    for name in sorted(set(before) | set(after)):
        old, new = audit_json(before.get(name)), audit_json(after.get(name))
        if old != new:
            changes[name] = {"before": old, "after": new}
    return changes


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    project: Model | int | None,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Insert one audit event; runs in the caller's transaction (no transaction of its own).

    `actor` None is the system (the quality engine, a task); `project` (an instance or its id)
    None is site-wide. An anonymous user counts as no actor.
    """
    if not action or len(action) > ACTION_MAX:
        raise ValidationError({"action": [f"An action code is 1 to {ACTION_MAX} characters."]})
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    return AuditEvent.objects.create(
        project_id=project.pk if isinstance(project, Model) else project,
        actor_id=actor_id,
        action=action,
        target=str(target)[:TARGET_MAX],
        details=audit_json(dict(details or {})),
    )


def audit_record_each(
    *,
    actor: AbstractBaseUser | None,
    projects: Iterable[Model | int],
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> list[AuditEvent]:
    """One audit event per project (one INSERT), for an action on something several projects
    share (a pool); with no project at all, one site-wide event, so the action is never lost.
    Runs in the caller's transaction.
    """
    project_ids = sorted({p.pk if isinstance(p, Model) else p for p in projects}) or [None]
    if not action or len(action) > ACTION_MAX:
        raise ValidationError({"action": [f"An action code is 1 to {ACTION_MAX} characters."]})
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    shown = audit_json(dict(details or {}))
    return AuditEvent.objects.bulk_create(
        AuditEvent(
            project_id=project_id,
            actor_id=actor_id,
            action=action,
            target=str(target)[:TARGET_MAX],
            details=shown,
        )
        for project_id in project_ids
    )


def audit_list(project: Model, filters: Mapping[str, Any] | None = None) -> QuerySet[AuditEvent]:
    """The project's audit events, newest first, with their actors.

    Filters: `action`, an action code ("pay.approve") or a family ("pay"); `actor`, a user id.
    The caller checks the reader is an owner. Unknown filter names raise ValidationError.
    """
    filters = dict(filters or {})
    unknown = set(filters) - {"action", "actor"}
    if unknown:
        raise ValidationError({name: ["Unknown filter."] for name in sorted(unknown)})
    events = AuditEvent.objects.filter(project_id=project.pk).select_related("actor")
    action = str(filters.get("action") or "").strip()
    if action:
        events = (
            events.filter(action=action)
            if "." in action
            else events.filter(action__startswith=f"{action}.")
        )
    actor = filters.get("actor")
    if actor not in (None, ""):
        try:
            events = events.filter(actor_id=int(actor))
        except (TypeError, ValueError):
            raise ValidationError({"actor": ["A user id."]}) from None
    return events.order_by("-id")


def audit_action_families() -> list[str]:
    """The action families ("pay", "worker", ...), for filter menus."""
    return sorted({code.split(".", 1)[0] for code in ACTIONS})

"""Writing labeling rules (owners) and asking for a run; reading them (owners and reviewers).

Every change to the rules queues a run on commit (`rules_run_task`), so stats and pre-labels
follow the rules; the page's "Run rules" button queues one too. A queued run is marked on the
active rules' `stats.run` ({"state": "queued" | "running" | "done", "done": items so far}).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Project
from annotation.task_types import task_config_of, task_type_get
from core.audit import audit_changes, audit_record
from quality.models import LabelingRule
from quality.rules.kinds import config_clean
from quality.rules.tasks import rules_run_task

NAME_MAX = 200
RULES_MAX = 100
RUNNING_STATES = ("queued", "running")


def rules_supported(project: Project) -> bool:
    """Whether rules can label this project's items (categorical types and spans)."""
    task_type = task_type_get(project.task_type)
    return task_type.categorical or project.task_type == "spans"


def rule_kinds_for(project: Project) -> list[tuple[str, str]]:
    """The rule kinds this project's task type takes, as (value, label) pairs."""
    if project.task_type == "spans":
        return [(LabelingRule.Kind.SPAN_PATTERN, LabelingRule.Kind.SPAN_PATTERN.label)]
    if not rules_supported(project):
        return []
    return [c for c in LabelingRule.Kind.choices if c[0] != LabelingRule.Kind.SPAN_PATTERN]


def rule_labels_for(project: Project) -> list[str]:
    """The labels a rule of this project may emit (categories, or span labels)."""
    task_type, config = task_type_get(project.task_type), task_config_of(project)
    if task_type.category_key:
        return task_type.category_values(config=config)
    return config.label_values


def project_get_for_rules(
    *, user: AbstractBaseUser | AnonymousUser, project_id: int, manage: bool = False
) -> Project:
    """The project for the rules page/API: owners and reviewers read, owners (`manage`) write.
    The user's `role` is annotated (None for staff without one)."""
    project, _role = project_access(
        user=user, project_id=project_id, roles=OWNERS if manage else MANAGERS
    )
    return project


def rule_list_for_project(*, project: Project) -> QuerySet[LabelingRule]:
    """The project's rules in creation order."""
    return LabelingRule.objects.filter(project=project).order_by("pk")


def rules_run_state(*, project: Project) -> dict[str, Any]:
    """Whether a run is queued or under way (and how far), and when the rules last ran."""
    runs = [
        (rule.stats or {}).get("run") or {}
        for rule in LabelingRule.objects.filter(project=project, active=True).only("stats")
    ]
    active = [run for run in runs if run.get("state") in RUNNING_STATES]
    last = LabelingRule.objects.filter(project=project).aggregate(last=Max("ran_at"))["last"]
    return {
        "running": bool(active),
        "state": active[0]["state"] if active else "",
        "done": max((run.get("done") or 0 for run in active), default=0),
        "ran_at": last,
    }


def _clean(project: Project, *, name: Any, kind: Any, label: Any, config: Any) -> dict[str, Any]:
    if not rules_supported(project):
        raise ValidationError({"kind": ["Rules cannot label items of this task type."]})
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX:
        errors["name"] = [f"A name of 1 to {NAME_MAX} characters."]
    kinds = [value for value, _ in rule_kinds_for(project)]
    if kind not in kinds:
        errors["kind"] = [f"One of: {', '.join(kinds)}."]
    labels = rule_labels_for(project)
    if not isinstance(label, str) or label not in labels:
        errors["label"] = [f"Unknown label {label!r}; use one of: {', '.join(labels)}."]
    cleaned_config: dict[str, Any] = {}
    if "kind" not in errors:
        try:
            cleaned_config = config_clean(kind, config)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return {"name": name.strip(), "kind": kind, "label": label, "config": cleaned_config}


def _run_queue(project: Project) -> None:
    """Mark the active rules queued and run them after commit."""
    queued = {"state": "queued", "done": 0, "queued_at": timezone.now().isoformat()}
    for rule in LabelingRule.objects.filter(project=project, active=True).only("stats"):
        LabelingRule.objects.filter(pk=rule.pk).update(stats={**(rule.stats or {}), "run": queued})
    rules_run_task.delay_on_commit(project.pk)


@transaction.atomic
def rule_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: Any,
    kind: Any,
    label: Any,
    config: Any,
    active: bool = True,
) -> LabelingRule:
    """Add a rule (checked, with field errors); queues a run."""
    fields = _clean(project, name=name, kind=kind, label=label, config=config)
    fields["active"] = bool(active)
    if LabelingRule.objects.filter(project=project).count() >= RULES_MAX:
        raise ValidationError({"name": [f"A project has at most {RULES_MAX} rules."]})
    rule = LabelingRule.objects.create(project=project, created_by=user, **fields)
    _run_queue(project)
    audit_record(
        actor=user,
        project=project,
        action="rules.change",
        target=f"rule {rule.name}",
        details={"op": "create", **audit_changes({}, fields)},
    )
    return rule


@transaction.atomic
def rule_update(
    *, rule: LabelingRule, actor: AbstractBaseUser | None = None, **changes: Any
) -> LabelingRule:
    """Change a rule's name, kind, label, config and/or active flag; queues a run.

    Records a "rules.change" audit event by `actor` with the changed fields' before/after.
    """
    if "active" in changes and not isinstance(changes["active"], bool):
        raise ValidationError({"active": ["true or false."]})
    current = {"name": rule.name, "kind": rule.kind, "label": rule.label, "config": rule.config}
    merged = {key: changes.get(key, value) for key, value in current.items()}
    fields = _clean(rule.project, **merged)
    fields["active"] = changes.get("active", rule.active)
    before = {key: getattr(rule, key) for key in fields}
    for key, value in fields.items():
        setattr(rule, key, value)
    rule.save(update_fields=[*fields, "updated_at"])
    _run_queue(rule.project)
    audit_record(
        actor=actor,
        project=rule.project,
        action="rules.change",
        target=f"rule {rule.name}",
        details={"op": "update", **audit_changes(before, fields)},
    )
    return rule


@transaction.atomic
def rule_delete(*, rule: LabelingRule, actor: AbstractBaseUser | None = None) -> None:
    """Delete a rule; queues a run (its pre-labels go with the next run). Records a
    "rules.change" audit event by `actor`."""
    project = rule.project
    name, rule_id = rule.name, rule.pk
    rule.delete()
    _run_queue(project)
    audit_record(
        actor=actor,
        project=project,
        action="rules.change",
        target=f"rule {name}",
        details={"op": "delete", "rule": rule_id},
    )


@transaction.atomic
def rules_run_request(*, project: Project) -> None:
    """Queue a run of the project's active rules."""
    _run_queue(project)

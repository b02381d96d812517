"""Acting on workers and items: spam-rule actions, the owner's own actions and undo, the
quality configuration, and promoting items to gold.

A rule action is recorded as a QualityAction with its evidence; at most one is active per
worker and kind (a database constraint), so recomputes are idempotent, and once an owner has
undone a kind of action on a worker, rules never take it again on that worker. Exclusion (and a
block) takes the worker's labels out of consensus from the next model fit; undoing restores them
on the recompute it schedules.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from annotation.models import Item, Project
from core.audit import audit_changes, audit_record
from crowd.models import WorkerBlock
from quality.models import ItemScore, QualityAction, QualityConfig
from quality.services.engine import Votes
from quality.services.recompute import quality_config_get, quality_recompute_schedule
from quality.spam import (
    DEFAULT_RULES,
    Hit,
    Rule,
    WorkerSignals,
    rules_clean,
    rules_evaluate,
    rules_to_json,
)

logger = logging.getLogger(__name__)

Kind = QualityAction.Kind
# Regular items at or above this consensus confidence (or decided by an expert) may be
# promoted to gold.
GOLD_CANDIDATE_CONFIDENCE = 0.95
GOLD_CANDIDATES_SHOWN = 50
CONFIG_FIELDS = (
    "method",
    "confidence_threshold",
    "max_overlap",
    "review_enabled",
    "gold_rate_onboarding",
    "gold_rate_floor",
    "gold_onboarding_count",
    "gold_accuracy_bar",
    "gold_retire_after",
    "reliable_bar",
    "skill_name",
    "spam_rules",
    "auto_actions",
    "approval_gold_bar",
    "approval_gold_min",
    "approval_consensus",
    "approval_reject",
)


# --- rules (called by the recompute) -----------------------------------------------------------


def project_rules(*, config: QualityConfig) -> list[Rule]:
    """The project's rules, or DEFAULT_RULES when it has none (or stored ones are invalid)."""
    if not config.spam_rules:
        return list(DEFAULT_RULES)
    try:
        return rules_clean(config.spam_rules)
    except ValidationError:
        logger.warning("Invalid spam rules on project %s; using the defaults", config.project_id)
        return list(DEFAULT_RULES)


def rules_apply(
    *, project: Project, config: QualityConfig, votes: Votes, signals: WorkerSignals
) -> list[QualityAction]:
    """Record the actions the project's rules call for; returns the new ones.

    Per worker and kind the first firing rule wins. Nothing is done for a (worker, kind)
    that already has an active action, or that an owner undid before. With `auto_actions`
    off, every hit becomes a flag. Runs inside the recompute's transaction.
    """
    hits = rules_evaluate(signals, project_rules(config=config))
    wanted: dict[tuple[int, str], list[Hit]] = {}
    for hit in hits:
        kind = hit.rule.action if config.auto_actions else Kind.FLAG.value
        wanted.setdefault((int(votes.worker_ids[hit.worker]), kind), []).append(hit)
    if not wanted:
        return []
    taken = set(
        QualityAction.objects.filter(
            project_id=project.pk, worker_id__in={worker for worker, _ in wanted}
        ).values_list("worker_id", "kind")
    )  # active ones, and undone ones (an owner's undo is final for rules)
    created = []
    for (worker_id, kind), fired in sorted(wanted.items()):
        if (worker_id, kind) in taken:
            continue
        evidence = _evidence(fired, votes)
        action = QualityAction.objects.create(
            project=project,
            worker_id=worker_id,
            kind=kind,
            source=QualityAction.Source.RULE,
            rule=evidence["rule"][:200],
            evidence=evidence,
        )
        _take_effect(action=action, config=config, votes=votes, by=None)
        created.append(action)
    if created:  # the engine acted on its own: recorded with no actor
        names = dict(
            get_user_model()
            .objects.filter(pk__in={action.worker_id for action in created})
            .values_list("pk", "username")
        )
        for action in created:
            _action_audit(action=action, username=names.get(action.worker_id, "?"), by=None)
    return created


def _action_audit(*, action: QualityAction, username: str, by: AbstractBaseUser | None) -> None:
    """Record a new spam/quality action ("quality.action") by `by` (None: the rules)."""
    details: dict[str, Any] = {
        "kind": action.kind,
        "source": action.source,
        "rule": action.rule,
    }
    if "requeued_items" in action.evidence:
        details["requeued_items"] = action.evidence["requeued_items"]
    if action.block_id is not None:
        details["block"] = action.block_id
    audit_record(
        actor=by,
        project=action.project_id,
        action="quality.action",
        target=f"worker {username}",
        details=details,
    )


def _evidence(fired: list[Hit], votes: Votes) -> dict[str, Any]:
    evidence = dict(fired[0].evidence)
    if "partner" in evidence:  # a worker index: the owner needs the user id
        evidence["partner"] = int(votes.worker_ids[evidence["partner"]])
    if len(fired) > 1:
        evidence["also"] = [hit.evidence["rule"] for hit in fired[1:]]
    return evidence


def _take_effect(
    *,
    action: QualityAction,
    config: QualityConfig,
    votes: Votes | None,
    by: AbstractBaseUser | None,
) -> None:
    """What a new action does beyond its row: block the worker, or re-queue their items."""
    if action.kind == Kind.BLOCK:
        from crowd.services import worker_block

        source = (
            WorkerBlock.Source.QUALITY
            if action.source == QualityAction.Source.RULE
            else WorkerBlock.Source.OWNER
        )
        action.block = worker_block(
            worker=action.worker,
            project=action.project,
            reason=f"Quality: {action.rule or 'blocked by the owner'}",
            source=source,
            created_by=by,
        )
        action.save(update_fields=["block"])
    elif action.kind == Kind.REQUEUE:
        _items_requeue(action=action, config=config)


def _items_requeue(*, action: QualityAction, config: QualityConfig) -> int:
    """One more annotator for every regular item the worker labelled (up to max overlap)."""
    from annotation.services import item_targets_raise

    rows = (
        Item.objects.filter(
            project_id=action.project_id,
            is_gold=False,
            annotations__author_id=action.worker_id,
            target__lt=config.max_overlap,
        )
        .exclude(score__state=ItemScore.State.REVIEWED)
        .values_list("id", "target")
        .distinct()
    )
    targets = {item_id: target + 1 for item_id, target in rows}
    if not targets:
        return 0
    changed = item_targets_raise(project=action.project, targets=targets)
    action.evidence = {**action.evidence, "requeued_items": len(targets)}
    action.save(update_fields=["evidence"])
    return changed


# --- the owner's actions -----------------------------------------------------------------------


def quality_action_create(
    *,
    project: Project,
    worker: AbstractBaseUser | int,
    kind: str,
    by: AbstractBaseUser,
    reason: str,
) -> QualityAction:
    """An owner flags, excludes, re-queues or blocks a worker by hand; schedules a recompute.

    Recorded as "quality.action" by `by` (a block also records its "worker.block").
    """
    if kind not in Kind.values:
        raise ValidationError({"kind": [f"Choose one of {', '.join(Kind.values)}."]})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why, for the record."]})
    user = _worker_get(project=project, worker=worker)
    with transaction.atomic():
        try:
            with transaction.atomic():
                action = QualityAction.objects.create(
                    project=project,
                    worker=user,
                    kind=kind,
                    source=QualityAction.Source.OWNER,
                    rule=reason[:200],
                    evidence={"reason": reason},
                    created_by=by,
                )
        except IntegrityError:
            raise ValidationError(
                {"kind": [f"{user} already has an active “{Kind(kind).label}” action."]}
            ) from None
        _take_effect(action=action, config=quality_config_get(project=project), votes=None, by=by)
        _action_audit(action=action, username=user.get_username(), by=by)
        quality_recompute_schedule(project_id=project.pk)
    return action


def _worker_get(*, project: Project, worker: AbstractBaseUser | int) -> AbstractBaseUser:
    worker_id = worker if isinstance(worker, int) else worker.pk
    on_project = Q(annotations__project_id=project.pk) | Q(project_roles__project_id=project.pk)
    user = get_user_model().objects.filter(on_project, pk=worker_id).distinct().first()
    if user is None:
        raise ValidationError({"worker": ["No such worker on this project."]})
    return user


@transaction.atomic
def quality_action_undo(*, action: QualityAction, by: AbstractBaseUser | None) -> QualityAction:
    """Undo an action: lift its block, restore excluded labels (on the recompute it schedules).

    Recorded as "quality.undo" by `by` (a lifted block also records its "worker.unblock").
    Idempotent. Rules never take this kind of action on this worker again.
    """
    locked = (
        QualityAction.objects.select_for_update(of=("self",))
        .select_related("worker")
        .get(pk=action.pk)
    )
    if locked.undone_at is not None:
        return locked
    if locked.block_id is not None:
        from crowd.services import worker_unblock

        worker_unblock(block=locked.block, lifted_by=by)
    locked.undone_at = timezone.now()
    locked.undone_by = by
    locked.save(update_fields=["undone_at", "undone_by"])
    audit_record(
        actor=by,
        project=locked.project_id,
        action="quality.undo",
        target=f"worker {locked.worker.get_username()}",
        details={"kind": locked.kind, "source": locked.source, "rule": locked.rule},
    )
    quality_recompute_schedule(project_id=locked.project_id)
    return locked


def quality_action_list(*, project: Project, active: bool | None = None) -> QuerySet[QualityAction]:
    """The project's actions, newest first, with worker and users joined."""
    actions = QualityAction.objects.filter(project_id=project.pk).select_related(
        "worker", "created_by", "undone_by"
    )
    if active is not None:
        actions = actions.filter(undone_at__isnull=active)
    return actions.order_by("-id")


def quality_action_get(*, project: Project, action_id: int) -> QualityAction:
    action = quality_action_list(project=project).filter(pk=action_id).first()
    if action is None:
        from django.http import Http404

        raise Http404("No such action.")
    return action


# --- configuration -----------------------------------------------------------------------------


def quality_config_update(
    *, project: Project, actor: AbstractBaseUser | None = None, **fields: Any
) -> QualityConfig:
    """Validate and save the owner's quality settings; schedules a recompute.

    Records a "quality.settings" audit event by `actor` with each changed setting's
    before/after.

    Spam rules are validated rule by rule (errors name the rule and field) and stored in the
    canonical JSON form. Raises ValidationError with per-field messages.
    """
    unknown = set(fields) - set(CONFIG_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown setting."] for name in sorted(unknown)})
    with transaction.atomic():
        config = QualityConfig.objects.select_for_update().get(
            pk=quality_config_get(project=project).pk
        )
        before = {name: getattr(config, name) for name in fields}
        for name, value in fields.items():
            setattr(config, name, value)
        errors: dict[str, list[str]] = {}
        if "spam_rules" in fields:
            try:
                config.spam_rules = rules_to_json(rules_clean(fields["spam_rules"]))
            except ValidationError as exc:
                errors.update(exc.message_dict)
        errors.update(_config_problems(config))
        try:
            config.full_clean(exclude=["project", *errors])
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault(name, []).extend(messages)
        if errors:
            raise ValidationError(errors)
        config.save()
        quality_recompute_schedule(project_id=project.pk)
        changes = audit_changes(before, {name: getattr(config, name) for name in fields})
        if changes:
            audit_record(actor=actor, project=project, action="quality.settings", details=changes)
    return config


def _config_problems(config: QualityConfig) -> dict[str, list[str]]:
    from quality.inference import METHODS

    problems: dict[str, list[str]] = {}

    def check(name: str, ok: bool, message: str) -> None:
        if not ok:
            problems.setdefault(name, []).append(message)

    def unit(name: str, low_open: bool = False) -> None:
        value = getattr(config, name)
        ok = (
            isinstance(value, int | float)
            and (value > 0 if low_open else value >= 0)
            and value <= 1
        )
        check(name, ok, "Between 0 and 1." if not low_open else "Above 0, at most 1.")

    check("method", config.method in METHODS, f"Choose one of {', '.join(METHODS)}.")
    for name in ("confidence_threshold", "gold_rate_floor", "reliable_bar"):
        unit(name)
    unit("gold_accuracy_bar", low_open=True)
    onboarding = config.gold_rate_onboarding
    check(
        "gold_rate_onboarding",
        isinstance(onboarding, int | float) and 0 <= onboarding < 1,
        "At least 0 and below 1.",
    )
    if not problems.get("gold_rate_floor") and not problems.get("gold_rate_onboarding"):
        check(
            "gold_rate_floor",
            config.gold_rate_floor <= config.gold_rate_onboarding,
            "The floor cannot exceed the onboarding rate.",
        )
    overlap = config.max_overlap
    check(
        "max_overlap",
        isinstance(overlap, int) and config.project.overlap <= overlap <= 50,
        f"Between the project's overlap ({config.project.overlap}) and 50.",
    )
    count = config.gold_onboarding_count
    check("gold_onboarding_count", isinstance(count, int) and count >= 1, "At least 1.")
    retire = config.gold_retire_after
    check("gold_retire_after", isinstance(retire, int) and retire >= 1, "At least 1.")
    return problems


# --- gold pool ---------------------------------------------------------------------------------


def gold_candidate_list(
    *, project: Project, limit: int = GOLD_CANDIDATES_SHOWN
) -> QuerySet[ItemScore]:
    """Regular items an expert decided, or whose consensus is very confident: gold material."""
    return (
        ItemScore.objects.filter(project_id=project.pk, item__is_gold=False)
        .filter(Q(state=ItemScore.State.REVIEWED) | Q(confidence__gte=GOLD_CANDIDATE_CONFIDENCE))
        .exclude(label="")
        .select_related("item")
        .order_by("-confidence", "-annotation_count", "item_id")[:limit]
    )


def gold_promote(*, project: Project, item_id: int, label: str) -> Item:
    """Promote one of the project's regular items to gold with answer `label`."""
    from annotation.services import item_promote_to_gold

    item = Item.objects.filter(project_id=project.pk, pk=item_id).first()
    if item is None:
        raise ValidationError({"item": ["No such item in this project."]})
    if item.is_gold:
        raise ValidationError({"item": ["This item is gold already."]})
    promoted = item_promote_to_gold(item=item, label=label)
    quality_recompute_schedule(project_id=project.pk)
    return promoted

"""Write use-cases of pay: settings, decisions on annotations, bonuses."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.models import Annotation, Project, ProjectMember
from core.audit import audit_record
from crowd.models import Bonus, PayDecision, PaySettings
from crowd.pay.selectors import reward_cents_for

HUMAN_SOURCES = frozenset({PayDecision.Source.OWNER, PayDecision.Source.REVIEWER})


def pay_settings_update(
    *,
    project: Project,
    currency: str,
    reward_cents: int,
    gold_reward_cents: int | None = None,
    fair_pay_floor_cents_per_hour: int | None = None,
) -> PaySettings:
    """Set what the project pays. Later approvals use the new reward; earlier ones keep theirs."""
    with transaction.atomic():
        pay = PaySettings.objects.select_for_update().filter(project_id=project.pk).first()
        if pay is None:
            pay = PaySettings(project=project)
        pay.currency = currency.strip().upper()
        pay.reward_cents = reward_cents
        pay.gold_reward_cents = gold_reward_cents
        pay.fair_pay_floor_cents_per_hour = fair_pay_floor_cents_per_hour
        if not pay.currency.isascii() or not pay.currency.isalpha() or len(pay.currency) != 3:
            raise ValidationError({"currency": ["Use a three-letter currency code, like EUR."]})
        pay.full_clean(exclude=["project"], validate_unique=False)
        pay.save()
    return pay


def annotation_decide(
    *,
    annotation: Annotation,
    status: str,
    reason: str = "",
    decided_by: AbstractBaseUser | None = None,
    source: str = PayDecision.Source.OWNER,
) -> PayDecision:
    """Approve or reject an annotation, or overturn its current decision; returns the current one.

    Rejections need a reason (the worker reads it). An approval freezes the reward owed at
    today's rate. Deciding the same way again changes nothing (safe for retried tasks), and an
    automatic (quality) decision never overturns a person's. Holds the annotation's row lock, so
    two deciders cannot both add a current decision.
    """
    reason = reason.strip()
    if status not in PayDecision.Status.values:
        raise ValidationError({"status": ["Choose approved or rejected."]})
    if source not in PayDecision.Source.values:
        raise ValidationError({"source": ["Unknown decision source."]})
    if status == PayDecision.Status.REJECTED and not reason:
        raise ValidationError({"reason": ["Say why: the worker reads the reason."]})
    if source in HUMAN_SOURCES and decided_by is None:
        raise ValidationError({"decided_by": ["A person's decision needs the person."]})
    with transaction.atomic():
        locked = Annotation.objects.select_for_update().select_related("item").get(pk=annotation.pk)
        current = PayDecision.objects.filter(annotation=locked, superseded_at__isnull=True).first()
        if current is not None:
            if (current.status, current.reason, current.source) == (status, reason, source):
                return current
            if source == PayDecision.Source.QUALITY and current.source in HUMAN_SOURCES:
                return current
            current.superseded_at = timezone.now()
            current.save(update_fields=["superseded_at"])
        amount = 0
        if status == PayDecision.Status.APPROVED:
            pay = PaySettings.objects.filter(project_id=locked.project_id).first()
            amount = reward_cents_for(pay, is_gold=locked.item.is_gold) if pay else 0
        decision = PayDecision.objects.create(
            project_id=locked.project_id,
            annotation=locked,
            worker_id=locked.author_id,
            status=status,
            reason=reason,
            source=source,
            amount_cents=amount,
            decided_by=decided_by,
        )
        audit_record(
            actor=decided_by,
            project=locked.project_id,
            action="pay.approve" if status == PayDecision.Status.APPROVED else "pay.reject",
            target=f"annotation {locked.pk} (item {locked.item_id})",
            details={
                "worker": locked.author_id,
                "status": {"before": current.status if current else None, "after": status},
                "reason": reason,
                "source": source,
                "amount_cents": amount,
            },
        )
        return decision


def bonus_grant(
    *,
    project: Project,
    worker: AbstractBaseUser,
    amount_cents: int,
    note: str,
    granted_by: AbstractBaseUser | None,
) -> Bonus:
    """Grant a worker extra pay on the project with a note they read. The worker must label
    for the project (or have labeled for it)."""
    note = note.strip()
    errors: dict[str, list[str]] = {}
    if amount_cents <= 0:
        errors["amount_cents"] = ["A bonus is a positive amount of cents."]
    if not note:
        errors["note"] = ["Add a note: the worker reads it."]
    works_here = (
        ProjectMember.objects.filter(
            project_id=project.pk, user_id=worker.pk, role=ProjectMember.Role.ANNOTATOR
        ).exists()
        or Annotation.objects.filter(project_id=project.pk, author_id=worker.pk).exists()
    )
    if not works_here:
        errors["worker"] = ["This person does not work on this project."]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        bonus = Bonus.objects.create(
            project=project,
            worker=worker,
            amount_cents=amount_cents,
            note=note,
            granted_by=granted_by,
        )
        audit_record(
            actor=granted_by,
            project=project,
            action="pay.bonus",
            target=f"worker {worker.get_username()}",
            details={"amount_cents": amount_cents, "note": note},
        )
    return bonus

"""A project's qualification test: gold items a worker labels before any regular work.

A project requires the test when it has an active Qualification with at least one item. A
worker who has not passed gets the test items one by one (their answers are kept on the
attempt, never as annotations). When every item is answered the attempt is scored: the share
right at or above the pass mark passes. A failed attempt may be retaken after the cool-down,
up to `attempts_allowed`; failing the last one blocks the worker from the project through
crowd.services.worker_block (source "quality"), like any other automatic block.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.models import Item, Project
from core.exceptions import ConflictError, NotAllowedError
from crowd.models import ProjectRequirement, Qualification, QualificationAttempt, WorkerBlock
from crowd.selectors import worker_block_active
from crowd.services import worker_block

BLOCK_REASON = "Did not pass the qualification test in {attempts} attempt(s)."


class QualificationClosedError(NotAllowedError):
    """The worker may not start an attempt now (passed, cooling down, out of attempts)."""

    code = "qualification_closed"


@dataclass(frozen=True)
class QualificationStatus:
    """Where a worker stands with a project's test."""

    qualification: Qualification
    passed: bool
    attempts_used: int
    open_attempt: QualificationAttempt | None
    last_attempt: QualificationAttempt | None
    retry_at: datetime | None
    blocked: WorkerBlock | None

    @property
    def attempts_left(self) -> int:
        return max(self.qualification.attempts_allowed - self.attempts_used, 0)

    @property
    def may_start(self) -> bool:
        """Whether a new attempt may start now."""
        waiting = self.retry_at is not None and self.retry_at > timezone.now()
        return not (self.passed or self.blocked or self.attempts_left == 0 or waiting)


def qualification_items_choices(*, project: Project) -> QuerySet[Item]:
    """The project's gold items (those with an answer), what a test may use."""
    return Item.objects.filter(project=project, is_gold=True, gold__isnull=False).order_by("id")


@transaction.atomic
def qualification_configure(
    *,
    project: Project,
    item_ids: list[int],
    pass_mark: float,
    attempts_allowed: int,
    cooldown_seconds: int,
    active: bool = True,
) -> Qualification:
    """Create or update the project's test; items must be gold items of the project."""
    ids = sorted(set(item_ids))
    items = list(qualification_items_choices(project=project).filter(pk__in=ids))
    if not ids:
        raise ValidationError({"items": ["Choose at least one gold item."]})
    if len(items) != len(ids):
        raise ValidationError({"items": ["Only gold items of this project, with an answer."]})
    qualification = Qualification.objects.filter(project=project).first() or Qualification(
        project=project
    )
    qualification.pass_mark = pass_mark
    qualification.attempts_allowed = attempts_allowed
    qualification.cooldown_seconds = cooldown_seconds
    qualification.active = active
    qualification.full_clean(exclude=["items"])
    if attempts_allowed < 1:
        raise ValidationError({"attempts_allowed": ["Allow at least one attempt."]})
    qualification.save()
    qualification.items.set(items)
    _requirement_sync(project=project, active=active)
    return qualification


def _requirement_sync(*, project: Project, active: bool) -> None:
    """An active test is one of the project's requirements, so every next-item call (page and
    API alike, crowd.pools.requirements_check) refuses work until the worker passed it."""
    rows = ProjectRequirement.objects.filter(
        project=project, kind=ProjectRequirement.Kind.QUALIFICATION
    )
    if active and not rows.exists():
        ProjectRequirement.objects.create(
            project=project, kind=ProjectRequirement.Kind.QUALIFICATION
        )
    elif not active:
        rows.delete()


def qualification_get(*, project: Project) -> Qualification | None:
    """The project's test (active or not), or None."""
    return Qualification.objects.filter(project=project).first()


def qualification_get_active(*, project: Project) -> Qualification | None:
    """The project's test when it is active and has items, or None."""
    return (
        Qualification.objects.filter(project=project, active=True, items__isnull=False)
        .select_related("project")
        .distinct()
        .first()
    )


def qualification_required(*, worker: AbstractBaseUser, project: Project) -> bool:
    """True when the project has an active test the worker has not passed (one query)."""
    passed = QualificationAttempt.objects.filter(worker_id=worker.pk, passed=True)
    return (
        Qualification.objects.filter(project=project, active=True, items__isnull=False)
        .exclude(pk__in=passed.values("qualification_id"))
        .exists()
    )


def qualification_status(
    *, worker: AbstractBaseUser, qualification: Qualification
) -> QualificationStatus:
    """The worker's attempts at the test, what is open, and when they may retry."""
    attempts = list(
        QualificationAttempt.objects.filter(qualification=qualification, worker_id=worker.pk)
    )
    finished = [attempt for attempt in attempts if attempt.finished_at is not None]
    open_attempt = next((a for a in attempts if a.finished_at is None), None)
    last = finished[0] if finished else None
    retry_at = None
    if last is not None and last.passed is False:
        retry_at = last.finished_at + timedelta(seconds=qualification.cooldown_seconds)
    return QualificationStatus(
        qualification=qualification,
        passed=any(attempt.passed for attempt in finished),
        attempts_used=len(attempts),
        open_attempt=open_attempt,
        last_attempt=last,
        retry_at=retry_at,
        blocked=worker_block_active(worker=worker, project=qualification.project),
    )


def qualification_attempt_start(
    *, worker: AbstractBaseUser, qualification: Qualification
) -> QualificationAttempt:
    """The worker's open attempt, or a new one when the retake policy allows it."""
    status = qualification_status(worker=worker, qualification=qualification)
    if status.open_attempt is not None:
        return status.open_attempt
    if not status.may_start:
        if status.passed:
            message = "You have passed this test already."
        elif status.blocked is not None:
            message = f"You are blocked from this project. Reason: {status.blocked.reason}"
        elif status.attempts_left == 0:
            message = "You have used all your attempts at this test."
        else:
            message = "You may retake the test after the cool-down."
        raise QualificationClosedError(message)
    try:
        with transaction.atomic():
            return QualificationAttempt.objects.create(qualification=qualification, worker=worker)
    except IntegrityError:  # a concurrent start won: there is one open attempt
        return QualificationAttempt.objects.get(
            qualification=qualification, worker_id=worker.pk, finished_at__isnull=True
        )


def qualification_next_item(*, attempt: QualificationAttempt) -> Item | None:
    """The first test item the attempt has not answered, or None when all are."""
    answered = [int(key) for key in attempt.answers]
    return (
        attempt.qualification.items.exclude(pk__in=answered)
        .only("id", "project_id", "data")
        .order_by("id")
        .first()
    )


def qualification_answer(
    *, attempt: QualificationAttempt, worker: AbstractBaseUser, item_id: int, label: str
) -> QualificationAttempt:
    """Record one answer of the worker's open attempt; score it once every item is answered.

    Locks the attempt row. Failing the last allowed attempt blocks the worker from the project.
    """
    with transaction.atomic():
        locked = (
            QualificationAttempt.objects.select_for_update(of=("self",))
            .select_related("qualification__project")
            .get(pk=attempt.pk, worker_id=worker.pk)
        )
        if locked.finished_at is not None:
            raise ConflictError("This attempt is finished.", code="finished")
        qualification = locked.qualification
        values = {label_def.get("value") for label_def in qualification.project.labels}
        if label not in values:
            raise ValidationError({"label": ["Choose one of this project's labels."]})
        items = {item.pk: item for item in qualification.items.only("id", "gold")}
        if item_id not in items:
            raise ValidationError({"item": ["Not an item of this test."]})
        if str(item_id) in locked.answers:
            raise ConflictError("This item is answered already.", code="answered")
        locked.answers = {**locked.answers, str(item_id): label}
        fields = ["answers"]
        if all(str(pk) in locked.answers for pk in items):
            _score(locked, items)
            fields += ["correct", "passed", "finished_at"]
        locked.save(update_fields=fields)
        if locked.passed is False:
            _block_when_out_of_attempts(attempt=locked, worker=worker)
    return locked


def _score(attempt: QualificationAttempt, items: dict[int, Item]) -> None:
    correct = sum(
        1
        for pk, item in items.items()
        if isinstance(item.gold, dict) and attempt.answers.get(str(pk)) == item.gold.get("label")
    )
    attempt.correct = correct
    attempt.passed = correct / len(items) >= attempt.qualification.pass_mark
    attempt.finished_at = timezone.now()


def _block_when_out_of_attempts(*, attempt: QualificationAttempt, worker: AbstractBaseUser) -> None:
    qualification = attempt.qualification
    used = QualificationAttempt.objects.filter(
        qualification=qualification, worker_id=worker.pk
    ).count()
    if used >= qualification.attempts_allowed:
        worker_block(
            worker=worker,
            project=qualification.project,
            reason=BLOCK_REASON.format(attempts=used),
            source=WorkerBlock.Source.QUALITY,
        )


def qualification_attempt_list(*, qualification: Qualification) -> QuerySet[QualificationAttempt]:
    """Every attempt at the test, newest first, with the worker (for the project's owners)."""
    return qualification.attempts.select_related("worker").order_by("-id")

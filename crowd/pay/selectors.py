"""Read use-cases of pay: settings, the ledger, a worker's work and the fair-pay monitor."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    F,
    FilteredRelation,
    FloatField,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Annotation, Project
from annotation.task_types import task_type_get
from crowd.models import Bonus, PayDecision, PaySettings

APPROVED = PayDecision.Status.APPROVED
REJECTED = PayDecision.Status.REJECTED


def money(cents: int | None, currency: str) -> str:
    """Integer cents as "12.34 USD" (no floats on the way)."""
    if cents is None:
        return "—"
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d} {currency}"


def pay_settings_get(*, project: Project) -> PaySettings:
    """The project's pay settings; an unsaved default (pays nothing) when none were set."""
    found = PaySettings.objects.filter(project_id=project.pk).first()
    return found if found is not None else PaySettings(project=project)


def pay_floor_cents(pay: PaySettings) -> int:
    """The fair-pay floor in cents per hour: the project's own, else the site default."""
    if pay.fair_pay_floor_cents_per_hour is not None:
        return pay.fair_pay_floor_cents_per_hour
    return int(settings.ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR)


def reward_cents_for(pay: PaySettings, *, is_gold: bool) -> int:
    """What one approved answer earns: the gold reward on gold items when one is set."""
    if is_gold and pay.gold_reward_cents is not None:
        return pay.gold_reward_cents
    return pay.reward_cents


def _with_current_decision(queryset: QuerySet[Annotation]) -> QuerySet[Annotation]:
    # At most one current decision per annotation (pay_decision_one_current): a LEFT JOIN
    # that never multiplies rows.
    return queryset.annotate(
        current=FilteredRelation(
            "pay_decisions", condition=Q(pay_decisions__superseded_at__isnull=True)
        )
    )


def _period(path: str, start: datetime | None, end: datetime | None) -> Q:
    q = Q()
    if start is not None:
        q &= Q(**{f"{path}__gte": start})
    if end is not None:
        q &= Q(**{f"{path}__lt": end})
    return q


@dataclass
class LedgerRow:
    """One worker's money on one project (in a period, when one was asked for)."""

    worker_id: int
    username: str
    currency: str
    approved_count: int = 0
    earned_cents: int = 0
    rejected_count: int = 0
    pending_count: int = 0
    pending_cents: int = 0
    bonus_count: int = 0
    bonus_cents: int = 0

    @property
    def total_cents(self) -> int:
        return self.earned_cents + self.bonus_cents

    @property
    def earned(self) -> str:
        return money(self.earned_cents, self.currency)

    @property
    def pending(self) -> str:
        return money(self.pending_cents, self.currency)

    @property
    def bonuses(self) -> str:
        return money(self.bonus_cents, self.currency)

    @property
    def total(self) -> str:
        return money(self.total_cents, self.currency)


@dataclass
class Ledger:
    currency: str
    rows: list[LedgerRow] = field(default_factory=list)

    @property
    def total_cents(self) -> int:
        return sum(row.total_cents for row in self.rows)

    @property
    def total(self) -> str:
        return money(self.total_cents, self.currency)


def ledger_get(
    *,
    project: Project,
    worker: AbstractBaseUser | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Ledger:
    """Per worker: approved (earned), pending (submitted, undecided, valued at today's reward),
    rejected and bonuses; only `worker` when given. Decisions and bonuses count in the period
    they were made in, pending answers in the period they were submitted in. Two queries
    (three when the settings are read).
    """
    pay = pay_settings_get(project=project)
    annotations = Annotation.objects.filter(project_id=project.pk)
    bonuses = Bonus.objects.filter(project_id=project.pk, **_period_kwargs(start, end))
    if worker is not None:
        annotations = annotations.filter(author_id=worker.pk)
        bonuses = bonuses.filter(worker_id=worker.pk)
    decided = _period("current__created_at", start, end)
    undecided = Q(current__id__isnull=True) & _period("created_at", start, end)
    counts = (
        _with_current_decision(annotations)
        .values("author_id", "author__username")
        .order_by("author_id")
        .annotate(
            approved=Count("id", filter=Q(current__status=APPROVED) & decided),
            earned=Coalesce(
                Sum("current__amount_cents", filter=Q(current__status=APPROVED) & decided), 0
            ),
            rejected=Count("id", filter=Q(current__status=REJECTED) & decided),
            pending=Count("id", filter=undecided),
            pending_gold=Count("id", filter=undecided & Q(item__is_gold=True)),
        )
    )
    rows: dict[int, LedgerRow] = {}
    for c in counts:
        regular = c["pending"] - c["pending_gold"]
        rows[c["author_id"]] = LedgerRow(
            worker_id=c["author_id"],
            username=c["author__username"],
            currency=pay.currency,
            approved_count=c["approved"],
            earned_cents=c["earned"],
            rejected_count=c["rejected"],
            pending_count=c["pending"],
            pending_cents=regular * reward_cents_for(pay, is_gold=False)
            + c["pending_gold"] * reward_cents_for(pay, is_gold=True),
        )
    granted = (
        bonuses.values("worker_id", "worker__username")
        .order_by("worker_id")
        .annotate(count=Count("id"), cents=Sum("amount_cents"))
    )
    for b in granted:
        row = rows.setdefault(
            b["worker_id"],
            LedgerRow(
                worker_id=b["worker_id"], username=b["worker__username"], currency=pay.currency
            ),
        )
        row.bonus_count, row.bonus_cents = b["count"], b["cents"]
    return Ledger(currency=pay.currency, rows=sorted(rows.values(), key=lambda r: r.worker_id))


def _period_kwargs(start: datetime | None, end: datetime | None) -> dict[str, datetime]:
    kwargs = {}
    if start is not None:
        kwargs["created_at__gte"] = start
    if end is not None:
        kwargs["created_at__lt"] = end
    return kwargs


def annotation_list_for_worker(
    *, project: Project, worker: AbstractBaseUser
) -> QuerySet[Annotation]:
    """The worker's own answers on the project, newest first, with the current decision
    (`decision_status`, `decision_reason`, `decision_amount`, `decided_at`) annotated."""
    return (
        _with_current_decision(
            Annotation.objects.filter(project_id=project.pk, author_id=worker.pk)
        )
        .annotate(
            decision_status=F("current__status"),
            decision_reason=F("current__reason"),
            decision_amount=F("current__amount_cents"),
            decided_at=F("current__created_at"),
        )
        .order_by("-id")
    )


def annotation_list_undecided(*, project: Project) -> QuerySet[Annotation]:
    """The project's answers nobody has approved or rejected yet, oldest first, with authors."""
    return (
        _with_current_decision(Annotation.objects.filter(project_id=project.pk))
        .filter(current__id__isnull=True)
        .select_related("author", "item")
        .order_by("id")
    )


def annotation_get_for_decision(*, project: Project, annotation_id: int) -> Annotation:
    """One of the project's answers, to be decided (DoesNotExist for any other project's)."""
    return Annotation.objects.select_related("item").get(pk=annotation_id, project_id=project.pk)


def pay_decision_list_recent(*, project: Project) -> QuerySet[PayDecision]:
    """The project's current decisions, newest first, with worker and decider."""
    return (
        PayDecision.objects.filter(project_id=project.pk, superseded_at__isnull=True)
        .select_related("worker", "decided_by")
        .order_by("-id")
    )


def bonus_list(*, project: Project, worker: AbstractBaseUser | None = None) -> QuerySet[Bonus]:
    """Bonuses on the project (only `worker`'s when given), newest first."""
    bonuses = Bonus.objects.filter(project_id=project.pk).select_related("worker")
    if worker is not None:
        bonuses = bonuses.filter(worker_id=worker.pk)
    return bonuses.order_by("-id")


class _Median(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass(frozen=True)
class FairPay:
    """Median measured time per answer, the hourly rate it implies, and the floor."""

    samples: int
    median_seconds: float | None
    reward_cents: int
    floor_cents_per_hour: int
    currency: str

    @property
    def cents_per_hour(self) -> int | None:
        if not self.median_seconds:
            return None
        return round(self.reward_cents * 3600 / self.median_seconds)

    @property
    def is_below_floor(self) -> bool:
        rate = self.cents_per_hour
        return rate is not None and rate < self.floor_cents_per_hour

    @property
    def rate(self) -> str:
        return money(self.cents_per_hour, self.currency)

    @property
    def floor(self) -> str:
        return money(self.floor_cents_per_hour, self.currency)


def fair_pay_get(*, project: Project, worker: AbstractBaseUser | None = None) -> FairPay:
    """The fair-pay monitor for the project, or for one worker's own answers. Answers with no
    measured time (duration 0) are left out. Two queries."""
    pay = pay_settings_get(project=project)
    timed = Annotation.objects.filter(project_id=project.pk, duration_ms__gt=0)
    if worker is not None:
        timed = timed.filter(author_id=worker.pk)
    if connection.vendor == "postgresql":
        found = timed.aggregate(samples=Count("id"), median=_Median("duration_ms"))
        samples, median_ms = found["samples"], found["median"]
    else:  # SQLite (local demo): no percentile aggregate
        durations = list(timed.values_list("duration_ms", flat=True))
        samples = len(durations)
        median_ms = statistics.median(durations) if durations else None
    return FairPay(
        samples=samples,
        median_seconds=None if median_ms is None else median_ms / 1000,
        reward_cents=pay.reward_cents,
        floor_cents_per_hour=pay_floor_cents(pay),
        currency=pay.currency,
    )


@dataclass(frozen=True)
class GoldAccuracy:
    total: int
    correct: int

    @property
    def percent(self) -> float | None:
        return round(100 * self.correct / self.total, 1) if self.total else None


# Check questions count in a worker's own accuracy only once they are this old: a figure that
# moved right after an answer would tell the worker that answer was a check question (and, on a
# two-label task, its gold answer).
GOLD_FEEDBACK_DELAY = timedelta(days=1)


def _gold_match(project: Project) -> Q:
    """An answer matches its item's gold: same category for categorical types, the same
    stored answer for the others."""
    key = task_type_get(project.task_type).category_key
    if key:
        return Q(**{f"value__{key}": F(f"item__gold__{key}")})
    return Q(value=F("item__gold"))


def gold_accuracy_get(
    *, project: Project, worker: AbstractBaseUser, now: datetime | None = None
) -> GoldAccuracy:
    """The worker's answers on the project's gold items older than GOLD_FEEDBACK_DELAY and how
    many match the gold label. Computed here from Annotation and Item.gold (crowd does not
    import quality). One query."""
    cutoff = (now or timezone.now()) - GOLD_FEEDBACK_DELAY
    found = Annotation.objects.filter(
        project_id=project.pk,
        author_id=worker.pk,
        item__is_gold=True,
        item__gold__isnull=False,
        created_at__lt=cutoff,
    ).aggregate(total=Count("id"), correct=Count("id", filter=_gold_match(project)))
    return GoldAccuracy(total=found["total"], correct=found["correct"])

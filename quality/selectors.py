"""Read use-cases of the quality engine: what owners and reviewers see on the dashboard and API.

The recompute stores its project-wide measurements in ProjectScore.details (see the data
contract in quality.models.ProjectScore); these selectors read them into chart-ready shapes,
tolerating a missing or partial `details` (before the first full recompute).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, NullIf
from django.urls import NoReverseMatch, reverse

from annotation.models import Project, ProjectMember
from annotation.selectors import project_progress
from quality.metrics import agreement_reading_alpha, agreement_reading_kappa
from quality.models import ItemScore, ProjectScore, QualityAction, WorkerScore
from quality.suggestions import SuggestionMetrics, suggestion_metrics_get

QUALITY_ROLES = frozenset({ProjectMember.Role.OWNER, ProjectMember.Role.REVIEWER})
LOWEST_ITEMS = 10
WORKERS_PER_PAGE = 50
# ?sort= keys of the worker table: the annotated field behind each (nulls always last).
WORKER_SORTS = {
    "worker": "username",
    "labels": "annotation_count",
    "gold": "gold_rate",
    "reliability": "reliability",
    "speed": "median_duration_ms",
    "flags": "flag_count",
}
DEFAULT_WORKER_SORT = "-labels"
WORKER_COLUMNS = {
    "worker": "Worker",
    "labels": "Labels",
    "gold": "Gold accuracy (95% CI)",
    "reliability": "Reliability",
    "speed": "Median seconds",
    "flags": "Flags",
}
ASCENDING_FIRST = frozenset({"worker", "speed"})  # first click: A→Z, fastest first
AGREEMENT_NAMES = {
    "fleiss": "Fleiss' kappa",
    "alpha_nominal": "Krippendorff's alpha (nominal)",
    "alpha_ordinal": "Krippendorff's alpha (ordinal)",
    "alpha_interval": "Krippendorff's alpha (interval)",
}
# The task types' own measures (annotation.task_types), as the dashboard names them.
TYPE_MEASURE_NAMES = {
    "fleiss_kappa": "Fleiss' kappa",
    "mean_jaccard": "Mean Jaccard between annotators",
    "span_f1_exact": "Span F1, exact match",
    "span_f1_overlap": "Span F1, overlap",
    "relation_f1": "Relation F1",
    "mean_iou": "Mean IoU of matched boxes",
    "box_f1_50": "Box F1 at IoU ≥ 0.5",
    "exact_match": "Exact match rate (normalised)",
    "char_similarity": "Mean character similarity",
    **AGREEMENT_NAMES,
}


@dataclass(frozen=True)
class LabelCount:
    """Items whose consensus is `label`; `share` is of all scored regular items (0..1)."""

    label: str
    count: int
    share: float
    expected_share: float | None = None


@dataclass(frozen=True)
class Estimate:
    """A coefficient with its bootstrap 95% interval (bounds None when unknown)."""

    key: str
    name: str
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class QualitySummary:
    """Everything the dashboard and the API show for one project, read in a fixed few queries."""

    progress: dict[str, int]
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    kappa_reading: str
    alpha_reading: str
    items_scored: int
    annotations_scored: int
    computed_at: datetime | None
    label_distribution: list[LabelCount]
    workers: list[WorkerScore]
    lowest_items: list[ItemScore]
    details: dict[str, Any] = field(default_factory=dict)
    review_count: int = 0
    # --- suggestions (p4) -----------------------------------------------------------------
    # Measured on demand (quality.suggestions), only when a page reads `suggestions`: the
    # dashboard shows them outside its polled region, and the API does not read them. Projects
    # that do not show suggestions pay nothing (no query).
    project: Project | None = None

    @cached_property
    def suggestions(self) -> SuggestionMetrics | None:
        """How suggestions fare and what they do to answers; None when the project does not
        show suggestions."""
        if self.project is None or not self.project.suggestions_enabled:
            return None
        return suggestion_metrics_get(project=self.project)

    # --- end suggestions (p4) -------------------------------------------------------------

    @property
    def label_counts(self) -> dict[str, int]:
        return {row.label: row.count for row in self.label_distribution}

    @property
    def method(self) -> str:
        return str(self.details.get("method", ""))

    @property
    def method_requested(self) -> str:
        return str(self.details.get("method_requested", ""))

    @property
    def method_reason(self) -> str:
        return str(self.details.get("method_reason", ""))

    @property
    def full_at(self) -> str | None:
        return self.details.get("full_at")

    @property
    def agreement(self) -> list[Estimate]:
        """The agreement coefficients the recompute measured, with their intervals."""
        block = self.details.get("agreement") or {}
        rows = []
        for key, name in AGREEMENT_NAMES.items():
            entry = block.get(key)
            if isinstance(entry, dict):
                rows.append(
                    Estimate(key, name, entry.get("value"), entry.get("low"), entry.get("high"))
                )
        # Structured task types report their own measures (no bootstrap interval).
        for key, value in (self.details.get("type_agreement") or {}).items():
            if not isinstance(value, dict):
                name = TYPE_MEASURE_NAMES.get(key, key.replace("_", " ").capitalize())
                rows.append(Estimate(key, name, value, None, None))
        return rows

    @property
    def per_label_agreement(self) -> list[dict[str, Any]]:
        rows = list((self.details.get("agreement") or {}).get("per_label") or [])
        typed = (self.details.get("type_agreement") or {}).get("per_label_alpha") or {}
        rows += [
            {"label": label, "kappa": None, "alpha": alpha, "n": ""}
            for label, alpha in typed.items()
        ]
        return rows

    @property
    def label_balance(self) -> list[LabelCount]:
        """Consensus share per label against the expected prior (the recompute's, else live)."""
        rows = self.details.get("label_distribution")
        if not rows:
            return self.label_distribution
        return [
            LabelCount(
                label=str(row.get("label", "")),
                count=int(row.get("count") or 0),
                share=float(row.get("share") or 0.0),
                expected_share=row.get("expected_share"),
            )
            for row in rows
        ]

    @property
    def agreement_trend(self) -> list[dict[str, Any]]:
        """Fleiss' kappa and nominal alpha per period, as trend_chart series."""
        periods = self.details.get("over_time") or []
        labels = period_labels(periods)
        return [
            {
                "name": name,
                "points": [_point(x, p.get(key)) for x, p in zip(labels, periods, strict=True)],
            }
            for key, name in (("fleiss", "Fleiss' kappa"), ("alpha", "Krippendorff's alpha"))
        ]

    @property
    def gold_trend(self) -> list[dict[str, Any]]:
        """Crowd accuracy on gold per period, as a trend_chart series."""
        periods = self.details.get("gold_trend") or []
        labels = period_labels(periods)
        return [
            {
                "name": "Accuracy on gold",
                "points": [
                    {
                        "x": x,
                        "value": p.get("accuracy"),
                        "low": p.get("low"),
                        "high": p.get("high"),
                        "n": p.get("n"),
                    }
                    for x, p in zip(labels, periods, strict=True)
                ],
            }
        ]

    @property
    def confusion(self) -> dict[str, Any]:
        block = self.details.get("confusion") or {}
        return {
            "labels": list(block.get("labels") or []),
            "matrix": list(block.get("matrix") or []),
        }

    @property
    def gold_pool(self) -> dict[str, Any]:
        return dict(self.details.get("gold_pool") or {})


def _point(x: str, entry: Any) -> dict[str, Any]:
    entry = entry if isinstance(entry, dict) else {}
    return {"x": x, "value": entry.get("value"), "low": entry.get("low"), "high": entry.get("high")}


def period_labels(periods: list[dict[str, Any]]) -> list[str]:
    """Short x-axis labels for periods: dates, or times when every period is on one day."""
    starts = []
    for period in periods:
        start = period.get("start")
        try:
            if isinstance(start, int | float):  # epoch seconds, as the recompute stores them
                starts.append(datetime.fromtimestamp(start, tz=UTC))
            else:
                starts.append(datetime.fromisoformat(str(start)))
        except (ValueError, OverflowError, OSError):
            return [str(period.get("start", ""))[:16] for period in periods]
    one_day = len({start.date() for start in starts}) <= 1 and len(starts) > 1
    return [start.strftime("%H:%M" if one_day else "%Y-%m-%d") for start in starts]


def worker_score_list(
    *, project: Project, sort: str = DEFAULT_WORKER_SORT
) -> QuerySet[WorkerScore]:
    """The project's worker scores in `sort` order (a WORKER_SORTS key, '-' for descending).

    Annotated: `username`, `median_seconds`, `gold_rate` (gold accuracy, null before any
    gold) and `flag_count` (active quality actions). Ties break by username, then worker id.
    """
    key = sort.lstrip("-")
    field_name = WORKER_SORTS.get(key, WORKER_SORTS[DEFAULT_WORKER_SORT.lstrip("-")])
    descending = sort.startswith("-") if key in WORKER_SORTS else True
    active = (
        QualityAction.objects.filter(
            project_id=OuterRef("project_id"),
            worker_id=OuterRef("worker_id"),
            undone_at__isnull=True,
        )
        .order_by()
        .values("worker_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    ordering = (
        F(field_name).desc(nulls_last=True) if descending else F(field_name).asc(nulls_last=True)
    )
    return (
        WorkerScore.objects.filter(project_id=project.pk)
        .annotate(
            username=F("worker__username"),
            median_seconds=Cast("median_duration_ms", FloatField()) / 1000.0,
            gold_rate=Case(
                When(gold_seen__gt=0, then=Cast("gold_correct", FloatField()) / F("gold_seen")),
                default=None,
                output_field=FloatField(),
            ),
            flag_count=Coalesce(Subquery(active, output_field=IntegerField()), Value(0)),
        )
        .order_by(ordering, "username", "worker_id")
    )


def worker_flags_attach(*, project: Project, workers: list[WorkerScore]) -> list[WorkerScore]:
    """Give each worker score `flags`: its active QualityActions, newest first (1 query)."""
    by_worker: dict[int, list[QualityAction]] = defaultdict(list)
    actions = QualityAction.objects.filter(
        project_id=project.pk,
        worker_id__in=[w.worker_id for w in workers],
        undone_at__isnull=True,
    ).order_by("-id")
    for action in actions:
        by_worker[action.worker_id].append(action)
    for worker in workers:
        worker.flags = by_worker.get(worker.worker_id, [])  # type: ignore[attr-defined]
    return workers


@dataclass(frozen=True)
class WorkerTable:
    """One page of the dashboard's worker table, its sort key and where the flags link."""

    page: Page
    sort: str
    actions_url: str | None

    @property
    def workers(self) -> list[WorkerScore]:
        return list(self.page.object_list)

    @property
    def columns(self) -> list[dict[str, str]]:
        """Sortable headers: title, the `?sort=` a click asks for, and aria-sort."""
        key, descending = self.sort.lstrip("-"), self.sort.startswith("-")
        columns = []
        for name, title in WORKER_COLUMNS.items():
            if name == key:
                target = name if descending else f"-{name}"
                aria = "descending" if descending else "ascending"
            else:
                target = name if name in ASCENDING_FIRST else f"-{name}"
                aria = "none"
            columns.append({"key": name, "title": title, "sort": target, "aria_sort": aria})
        return columns


def worker_table_get(
    *,
    project: Project,
    sort: str = DEFAULT_WORKER_SORT,
    page: Any = 1,
    per_page: int = WORKERS_PER_PAGE,
) -> WorkerTable:
    """A page of worker scores with flags attached; unknown sorts fall back to the default."""
    if sort.lstrip("-") not in WORKER_SORTS:
        sort = DEFAULT_WORKER_SORT
    paginator = Paginator(worker_score_list(project=project, sort=sort), per_page)
    current = paginator.get_page(page)
    current.object_list = worker_flags_attach(project=project, workers=list(current.object_list))
    return WorkerTable(page=current, sort=sort, actions_url=quality_actions_url(project=project))


def quality_actions_url(*, project: Project) -> str | None:
    """The project's quality actions page, when that page exists."""
    for kwargs in ({"pk": project.pk}, {"project_id": project.pk}):
        try:
            return reverse("quality:actions", kwargs=kwargs)
        except NoReverseMatch:
            continue
    return None


def item_score_list_lowest(*, project: Project, limit: int = LOWEST_ITEMS) -> QuerySet[ItemScore]:
    """Regular items whose voters disagree (two or more votes), weakest consensus first."""
    return (
        ItemScore.objects.filter(project_id=project.pk, annotation_count__gte=2, agreement__lt=1)
        .filter(item__is_gold=False)
        .select_related("item")
        .order_by("agreement", "-annotation_count", "item_id")[:limit]
    )


def label_distribution(*, project: Project) -> list[LabelCount]:
    """Regular items per consensus label (the engine's, else the majority's), zeros included."""
    rows = dict(
        ItemScore.objects.filter(project_id=project.pk, item__is_gold=False)
        .annotate(consensus=Coalesce(NullIf("label", Value("")), "majority_label"))
        .values("consensus")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("consensus", "n")
    )
    labels = project.label_values + sorted(set(rows) - set(project.label_values))
    total = sum(rows.values())
    return [
        LabelCount(label=label, count=rows.get(label, 0), share=rows.get(label, 0) / total)
        if total
        else LabelCount(label=label, count=0, share=0.0)
        for label in labels
    ]


def review_queue_size(*, project: Project) -> int:
    """Items of the project waiting for expert review."""
    return ItemScore.objects.filter(project_id=project.pk, state=ItemScore.State.REVIEW).count()


def quality_summary_get(
    *, project: Project, lowest_items: int = LOWEST_ITEMS, with_workers: bool = True
) -> QualitySummary:
    """Progress, agreement, charts, workers and weakest items of a project (owners/reviewers).

    `with_workers=False` leaves the worker list empty for callers that page it themselves
    (the dashboard uses worker_table_get); otherwise every worker comes with its flags.
    """
    score = ProjectScore.objects.filter(project_id=project.pk).first()
    kappa = score.fleiss_kappa if score else None
    alpha = score.krippendorff_alpha if score else None
    workers = (
        worker_flags_attach(project=project, workers=list(worker_score_list(project=project)))
        if with_workers
        else []
    )
    return QualitySummary(
        progress=project_progress(project=project),
        fleiss_kappa=kappa,
        krippendorff_alpha=alpha,
        kappa_reading=agreement_reading_kappa(kappa),
        alpha_reading=agreement_reading_alpha(alpha),
        items_scored=score.items_scored if score else 0,
        annotations_scored=score.annotations_scored if score else 0,
        computed_at=score.computed_at if score else None,
        label_distribution=label_distribution(project=project),
        workers=workers,
        lowest_items=list(item_score_list_lowest(project=project, limit=lowest_items))
        if lowest_items
        else [],
        details=dict(score.details or {}) if score else {},
        review_count=review_queue_size(project=project),
        project=project,  # suggestions (p4)
    )

"""Read use-cases of the quality engine: what owners and reviewers see on the dashboard and API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, FloatField, QuerySet
from django.db.models.functions import Cast

from annotation.models import Project, ProjectMember
from annotation.selectors import project_progress
from quality.metrics import agreement_reading_alpha, agreement_reading_kappa
from quality.models import ItemScore, ProjectScore, WorkerScore

QUALITY_ROLES = frozenset({ProjectMember.Role.OWNER, ProjectMember.Role.REVIEWER})
LOWEST_ITEMS = 10


@dataclass(frozen=True)
class LabelCount:
    """Items whose consensus is `label`; `share` is of all scored regular items (0..1)."""

    label: str
    count: int
    share: float


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

    @property
    def label_counts(self) -> dict[str, int]:
        return {row.label: row.count for row in self.label_distribution}


def worker_score_list(*, project: Project) -> QuerySet[WorkerScore]:
    """The project's worker scores, busiest first, with `username` annotated."""
    return (
        WorkerScore.objects.filter(project_id=project.pk)
        .annotate(
            username=F("worker__username"),
            median_seconds=Cast("median_duration_ms", FloatField()) / 1000.0,
        )
        .order_by("-annotation_count", "username", "worker_id")
    )


def item_score_list_lowest(*, project: Project, limit: int = LOWEST_ITEMS) -> QuerySet[ItemScore]:
    """Regular items whose voters disagree (two or more votes), weakest consensus first."""
    return (
        ItemScore.objects.filter(project_id=project.pk, annotation_count__gte=2, agreement__lt=1)
        .filter(item__is_gold=False)
        .select_related("item")
        .order_by("agreement", "-annotation_count", "item_id")[:limit]
    )


def label_distribution(*, project: Project) -> list[LabelCount]:
    """Regular items per consensus (majority) label, in label-set order, zeros included."""
    rows = dict(
        ItemScore.objects.filter(project_id=project.pk, item__is_gold=False)
        .values("majority_label")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("majority_label", "n")
    )
    labels = project.label_values + sorted(set(rows) - set(project.label_values))
    total = sum(rows.values())
    return [
        LabelCount(label=label, count=rows.get(label, 0), share=rows.get(label, 0) / total)
        if total
        else LabelCount(label=label, count=0, share=0.0)
        for label in labels
    ]


def quality_summary_get(*, project: Project, lowest_items: int = LOWEST_ITEMS) -> QualitySummary:
    """Progress, agreement, workers and weakest items of a project (owners/reviewers only)."""
    score = ProjectScore.objects.filter(project_id=project.pk).first()
    kappa = score.fleiss_kappa if score else None
    alpha = score.krippendorff_alpha if score else None
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
        workers=list(worker_score_list(project=project)),
        lowest_items=list(item_score_list_lowest(project=project, limit=lowest_items))
        if lowest_items
        else [],
    )

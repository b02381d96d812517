"""Who is shown suggestions (pre-labels): the owner's switches, per project and per pool.

A worker sees suggestions only when the project shows them and the worker labels through a pool
that shows them (crowd.selectors.suggestions_shown_to); gold items never show one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet

from annotation.models import Prediction, Project
from crowd.models import ProjectPool


@dataclass(frozen=True)
class PredictionCount:
    """How many of the project's items carry a pre-label from one source."""

    source: str
    label: str
    items: int


def suggestion_pool_list(*, project: Project) -> QuerySet[ProjectPool]:
    """The project's labeling pools, each with its suggestion switch and member count."""
    return (
        ProjectPool.objects.filter(project_id=project.pk, rule=ProjectPool.Rule.LABEL)
        .select_related("pool")
        .annotate(member_count=Count("pool__memberships"))
        .order_by("pool__name", "pool_id")
    )


def prediction_count_list(*, project: Project) -> list[PredictionCount]:
    """Items with a pre-label, per source (one query)."""
    rows = (
        Prediction.objects.filter(project_id=project.pk)
        .values("source")
        .annotate(items=Count("item_id", distinct=True))
        .order_by("source")
    )
    labels = dict(Prediction.Source.choices)
    return [
        PredictionCount(
            source=row["source"], label=labels.get(row["source"], ""), items=row["items"]
        )
        for row in rows
    ]


@transaction.atomic
def suggestion_settings_set(
    *, project: Project, enabled: bool, shown_pool_ids: Collection[int]
) -> Project:
    """Switch suggestions on or off for the project, and show them to the members of exactly
    the labeling pools `shown_pool_ids` (hidden from its other labeling pools)."""
    links = ProjectPool.objects.filter(project_id=project.pk, rule=ProjectPool.Rule.LABEL)
    unknown = set(shown_pool_ids) - set(links.values_list("pool_id", flat=True))
    if unknown:
        raise ValidationError(
            {"pools": [f"Not labeling pools of this project: {sorted(unknown)}."]}
        )
    links.filter(pool_id__in=list(shown_pool_ids)).exclude(show_suggestions=True).update(
        show_suggestions=True
    )
    links.exclude(pool_id__in=list(shown_pool_ids)).exclude(show_suggestions=False).update(
        show_suggestions=False
    )
    if project.suggestions_enabled != enabled:
        project.suggestions_enabled = enabled
        project.save(update_fields=["suggestions_enabled"])
    return project

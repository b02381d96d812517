"""Reading label schemas: current answers and a project's schema versions."""

from __future__ import annotations

from django.db.models import QuerySet

from annotation.models import Annotation, LabelSchemaVersion, Project


def annotations_current(queryset: QuerySet[Annotation]) -> QuerySet[Annotation]:
    """Only answers that count under the project's current schema (not superseded)."""
    return queryset.filter(superseded_at__isnull=True)


def schema_version_list(project: Project) -> QuerySet[LabelSchemaVersion]:
    """A project's label schema versions, newest first, with who made them."""
    return (
        LabelSchemaVersion.objects.filter(project_id=project.pk)
        .select_related("created_by")
        .order_by("-number")
    )

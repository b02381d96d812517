"""Read use-cases of the annotation domain, always scoped to what the actor may see."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from annotation.models import ImportJob, Item, Project, ProjectMember


def project_role(*, user: AbstractBaseUser | AnonymousUser, project: Project) -> str | None:
    """The user's role on the project: owner, reviewer, annotator, or None."""
    if not user.is_authenticated:
        return None
    return (
        ProjectMember.objects.filter(project=project, user=user)
        .values_list("role", flat=True)
        .first()
    )


def project_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user may see in any role (staff see all).

    No DISTINCT needed: a user holds at most one membership row per project.
    """
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(members__user=user)


def project_list_with_role(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user may see, with `role`: theirs on it (None for staff who are not members)."""
    role = ProjectMember.objects.filter(project=OuterRef("pk"), user_id=user.pk).values("role")
    return project_list_for_user(user=user).annotate(role=Subquery(role[:1]))


def project_list_with_progress(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user may see, newest first, with `role`, `item_total` and `item_complete`.

    The counts are of regular items (gold excluded); complete means it has all its annotations.
    """
    return (
        project_list_with_role(user=user)
        .annotate(
            item_total=_item_count(is_gold=False),
            item_complete=_item_count(is_gold=False, annotation_count__gte=F("target")),
        )
        .order_by("-created_at", "-id")
    )


def _item_count(**filters: Any) -> Coalesce:
    """Per project row: how many of its items match `filters` (a subquery, 0 when none)."""
    counts = (
        Item.objects.filter(project=OuterRef("pk"), **filters)
        .order_by()
        .values("project")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def project_list_owned(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user may manage (owner role, or staff)."""
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(members__user=user, members__role=ProjectMember.Role.OWNER)


def project_list_reviewable(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects whose results the user may read (owners and reviewers, or staff)."""
    if user.is_staff:
        return Project.objects.all()
    roles = [ProjectMember.Role.OWNER, ProjectMember.Role.REVIEWER]
    return Project.objects.filter(members__user=user, members__role__in=roles)


def project_progress(*, project: Project) -> dict[str, int]:
    """Counts for the progress bar: items, complete items, annotations wanted and made."""
    totals = project.items.aggregate(
        items=Count("id", filter=Q(is_gold=False)),
        complete=Count("id", filter=Q(is_gold=False, annotation_count__gte=F("target"))),
        gold_items=Count("id", filter=Q(is_gold=True)),
        wanted=Sum("target", filter=Q(is_gold=False)),
        made=Sum("annotation_count"),
    )
    return {
        "items": totals["items"] or 0,
        "complete": totals["complete"] or 0,
        "gold_items": totals["gold_items"] or 0,
        "annotations_wanted": totals["wanted"] or 0,
        "annotations_made": totals["made"] or 0,
    }


def item_list_for_project(*, project: Project) -> QuerySet[Item]:
    """A project's items in id order (owner view: includes gold answers)."""
    return project.items.order_by("id")


def import_job_list(*, project: Project) -> QuerySet[ImportJob]:
    """A project's imports, newest first; callers checked the actor may read them."""
    return project.imports.order_by("-id")


def import_job_get_for_user(*, user: AbstractBaseUser, import_job_id: int) -> ImportJob:
    """One import job of a project the user can see in any role (DoesNotExist otherwise).

    Callers still check the role: only owners and reviewers may read an import.
    """
    return ImportJob.objects.select_related("project").get(
        pk=import_job_id, project__in=project_list_for_user(user=user).values("pk")
    )

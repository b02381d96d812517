"""Read use-cases of the annotation domain, always scoped to what the actor may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, F, Q, QuerySet, Sum

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
    """Projects the user may see in any role (staff see all)."""
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(members__user=user).distinct()


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
    return Project.objects.filter(members__user=user, members__role__in=roles).distinct()


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
    return project.imports.order_by("-id")

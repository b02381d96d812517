"""Read use-cases of the crowd, scoped to the worker asking."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from annotation.models import Project, ProjectMember
from crowd.models import Assignment, PoolMember, ProjectPool


def project_list_for_worker(*, worker: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the worker labels for, with this worker's own counts annotated."""
    pools = PoolMember.objects.filter(user=worker).values("pool_id")
    return (
        Project.objects.filter(
            project_pools__pool_id__in=pools, project_pools__rule=ProjectPool.Rule.LABEL
        )
        .distinct()
        .annotate(
            my_submitted=Count(
                "assignments",
                filter=Q(
                    assignments__worker=worker,
                    assignments__status=Assignment.Status.SUBMITTED,
                ),
                distinct=True,
            )
        )
    )


def assignment_get_for_worker(*, worker: AbstractBaseUser, assignment_id: int) -> Assignment:
    """One of the worker's own assignments (404 for anyone else's)."""
    return Assignment.objects.select_related("item", "project").get(
        pk=assignment_id, worker_id=worker.pk
    )


def assignment_list_live(*, worker: AbstractBaseUser, project: Project) -> QuerySet[Assignment]:
    """The worker's reservations on the project whose deadline has not passed, oldest first."""
    return (
        Assignment.objects.filter(
            worker_id=worker.pk,
            project_id=project.pk,
            status=Assignment.Status.RESERVED,
            expires_at__gt=timezone.now(),
        )
        .select_related("item")
        .order_by("id")
    )


def worker_submitted_count(*, worker: AbstractBaseUser, project: Project) -> int:
    return Assignment.objects.filter(
        worker_id=worker.pk, project_id=project.pk, status=Assignment.Status.SUBMITTED
    ).count()


def member_list(*, project: Project) -> QuerySet[ProjectMember]:
    return project.members.select_related("user").order_by("role", "user__username")

"""Read use-cases of the crowd, scoped to the worker asking."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from annotation.models import Item, Prediction, Project, ProjectMember
from annotation.predictions import prediction_for_item
from annotation.task_types import task_type_get
from crowd.models import Assignment, Pool, PoolMember, ProjectPool, WorkerBlock
from crowd.privacy import Masking


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


def worker_block_active(*, worker: AbstractBaseUser, project: Project) -> WorkerBlock | None:
    """The block that keeps the worker from labeling the project, or None.

    A project block always counts. A pool block counts when every labeling pool of the project
    the worker belongs to blocks them (a worker who also labels here through another pool
    still may). The same rule as the claim query (crowd.services.claims._labeler).
    """
    blocks = list(
        WorkerBlock.objects.filter(
            Q(project_id=project.pk)
            | Q(
                pool__project_pools__project_id=project.pk,
                pool__project_pools__rule=ProjectPool.Rule.LABEL,
            ),
            worker_id=worker.pk,
            lifted_at__isnull=True,
        )
        .select_related("pool")
        .order_by("-id")
    )
    if not blocks:
        return None
    for block in blocks:
        if block.project_id is not None:
            return block
    member_pools = set(
        PoolMember.objects.filter(
            user_id=worker.pk,
            pool__project_pools__project_id=project.pk,
            pool__project_pools__rule=ProjectPool.Rule.LABEL,
        ).values_list("pool_id", flat=True)
    )
    if member_pools and member_pools <= {block.pool_id for block in blocks}:
        return next(block for block in blocks if block.pool_id in member_pools)
    return None


def worker_block_list(*, project: Project, active: bool = True) -> QuerySet[WorkerBlock]:
    """Blocks on the project and on the pools it draws from, newest first (active ones only,
    unless `active` is False), with the worker, the pool and who blocked and lifted."""
    blocks = WorkerBlock.objects.filter(
        Q(project_id=project.pk) | Q(pool__project_pools__project_id=project.pk)
    )
    if active:
        blocks = blocks.filter(lifted_at__isnull=True)
    return blocks.select_related("worker", "pool", "created_by", "lifted_by").order_by("-id")


def worker_block_get(*, project: Project, block_id: int) -> WorkerBlock:
    """One block on the project itself (pool blocks are lifted where the pool is managed)."""
    return WorkerBlock.objects.select_related("worker").get(pk=block_id, project_id=project.pk)


def worker_is_external(*, worker: AbstractBaseUser, project: Project) -> bool:
    """True when the worker belongs to an external-crowd pool of this project (one query).

    Membership of any external pool of the project counts, even beside an internal one: what
    such a worker receives is masked (crowd.privacy).
    """
    return PoolMember.objects.filter(
        user_id=worker.pk,
        pool__kind=Pool.Kind.EXTERNAL_CROWD,
        pool__project_pools__project_id=project.pk,
    ).exists()


def masking_for_worker(*, worker: AbstractBaseUser, project: Project) -> Masking | None:
    """How to mask `project`'s items for `worker` (crowd.privacy); None: they see the originals."""
    if not worker_is_external(worker=worker, project=project):
        return None
    return Masking(
        sensitive_fields=frozenset(project.sensitive_fields),
        keep_offsets=task_type_get(project.task_type).text_offsets,  # span offsets stay valid
    )


# --- suggestions (pre-labels) shown to annotators ---------------------------------------------


def suggestions_shown_to(*, worker: AbstractBaseUser, project: Project) -> bool:
    """Whether `worker` is shown pre-labels on `project`: the project shows them and the worker
    labels through at least one of its pools that shows them (owners hide them from some pools,
    e.g. the external crowd, to keep those answers independent). One query at most."""
    if not project.suggestions_enabled:
        return False
    return PoolMember.objects.filter(
        user_id=worker.pk,
        pool__project_pools__project_id=project.pk,
        pool__project_pools__rule=ProjectPool.Rule.LABEL,
        pool__project_pools__show_suggestions=True,
    ).exists()


def suggestion_list_for_worker(
    *, worker: AbstractBaseUser, project: Project, items: Iterable[Item]
) -> dict[int, Prediction]:
    """The pre-label to show `worker` for each of `items` (by item id); gold items and items
    without a prediction are left out, and everything when the worker is not shown any."""
    items = list(items)
    if not items or not suggestions_shown_to(worker=worker, project=project):
        return {}
    shown = {}
    for item in items:
        prediction = prediction_for_item(item=item)
        if prediction is not None:
            shown[item.pk] = prediction
    return shown

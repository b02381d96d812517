"""Blocks, standings and skills: how the engine treats a worker (the quality engine calls these)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from annotation.models import Project, ProjectMember
from core.audit import audit_record_each
from crowd.models import (
    Assignment,
    Pool,
    PoolMember,
    ProjectPool,
    WorkerBlock,
    WorkerSkill,
    WorkerStanding,
)
from crowd.selectors import worker_block_active
from crowd.services.claims import _slots_release

UPSERT_BATCH = 1_000


# --- blocks, standings and skills (the quality engine calls these too) -----------------------


def _reservations_release(*, worker: AbstractBaseUser, project_ids: Collection[int]) -> int:
    """Expire the worker's reservations (live or stale) in these projects and free their slots.

    Locks the assignments, then their items in primary-key order (the module's lock order).
    """
    rows = list(
        Assignment.objects.filter(
            worker_id=worker.pk, project_id__in=list(project_ids), status=Assignment.Status.RESERVED
        )
        .order_by("pk")
        .select_for_update()
        .values_list("id", "item_id")
    )
    if not rows:
        return 0
    Assignment.objects.filter(pk__in=[row[0] for row in rows]).update(
        status=Assignment.Status.EXPIRED, finished_at=timezone.now()
    )
    _slots_release(Counter(row[1] for row in rows))
    return len(rows)


def _pool_project_ids(pool: Pool | None) -> list[int]:
    """The projects a pool serves (any rule): a pool block and its audit events reach them all."""
    return list(ProjectPool.objects.filter(pool=pool).values_list("project_id", flat=True))


def _block_target(*, worker: AbstractBaseUser, pool: Pool | None) -> str:
    name = f"worker {worker.get_username()}"
    return name if pool is None else f"{name} in pool {pool.name}"


@transaction.atomic
def worker_block(
    *,
    worker: AbstractBaseUser,
    project: Project | None = None,
    pool: Pool | None = None,
    reason: str,
    source: str = WorkerBlock.Source.OWNER,
    created_by: AbstractBaseUser | None = None,
) -> WorkerBlock:
    """Bar the worker from a project, or from a pool (every project it serves).

    Idempotent: an active block of the same scope is returned as it is. The worker's
    reservations in the scope are released and their slots freed at once. Records
    "worker.block" on the project, or on every project a pool block reaches.
    """
    if (project is None) == (pool is None):
        raise ValidationError("Block a worker from exactly one project or one pool.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Give the worker a reason."]})
    if source not in WorkerBlock.Source.values:
        raise ValidationError({"source": [f"Unknown source {source!r}."]})
    scope: dict[str, Any] = {"project": project} if project is not None else {"pool": pool}
    active = WorkerBlock.objects.filter(worker_id=worker.pk, lifted_at__isnull=True, **scope)
    block = active.first()
    if block is not None:
        return block
    try:
        with transaction.atomic():
            block = WorkerBlock.objects.create(
                worker=worker, reason=reason, source=source, created_by=created_by, **scope
            )
    except IntegrityError:  # a concurrent block of the same scope committed first
        return active.get()
    project_ids = [project.pk] if project is not None else _pool_project_ids(pool)
    released = _reservations_release(worker=worker, project_ids=project_ids)
    audit_record_each(
        actor=created_by,
        projects=project_ids,
        action="worker.block",
        target=_block_target(worker=worker, pool=pool),
        details={
            "reason": reason,
            "source": source,
            "pool": pool.name if pool is not None else None,
            "reservations_released": released,
        },
    )
    return block


@transaction.atomic
def worker_unblock(*, block: WorkerBlock, lifted_by: AbstractBaseUser | None = None) -> WorkerBlock:
    """Lift a block (kept as history); the worker is offered work again. Idempotent.

    Records "worker.unblock" like worker_block records the block (per project for a pool)."""
    locked = (
        WorkerBlock.objects.select_for_update(of=("self",))
        .select_related("worker", "created_by", "project", "pool")
        .get(pk=block.pk)
    )
    if locked.lifted_at is None:
        locked.lifted_at = timezone.now()
        locked.lifted_by = lifted_by
        locked.save(update_fields=["lifted_at", "lifted_by"])
        audit_record_each(
            actor=lifted_by,
            projects=(
                [locked.project_id]
                if locked.project_id is not None
                else _pool_project_ids(locked.pool)
            ),
            action="worker.unblock",
            target=_block_target(worker=locked.worker, pool=locked.pool),
            details={
                "reason": locked.reason,
                "pool": locked.pool.name if locked.pool is not None else None,
            },
        )
    return locked


def worker_is_blocked(*, worker: AbstractBaseUser, project: Project) -> bool:
    """True when the worker may not label the project because of a block (see
    crowd.selectors.worker_block_active for how pool blocks count)."""
    return worker_block_active(worker=worker, project=project) is not None


def worker_standings_set(
    *, project: Project, standings: Mapping[int, tuple[float | None, bool]]
) -> None:
    """Upsert the assignment engine's view of workers: worker id -> (gold rate, reliable).

    A gold rate of None means the project's gold ratio. One INSERT ... ON CONFLICT per
    UPSERT_BATCH workers.
    """
    rows = []
    for worker_id, (gold_rate, reliable) in standings.items():
        if gold_rate is not None and not 0 <= gold_rate <= 1:
            raise ValidationError({"gold_rate": [f"Worker {worker_id}: between 0 and 1."]})
        rows.append(
            WorkerStanding(
                project_id=project.pk,
                worker_id=worker_id,
                gold_rate=None if gold_rate is None else float(gold_rate),
                reliable=bool(reliable),
            )
        )
    WorkerStanding.objects.bulk_create(
        rows,
        batch_size=UPSERT_BATCH,
        update_conflicts=True,
        unique_fields=["project", "worker"],
        update_fields=["gold_rate", "reliable", "updated_at"],
    )


def worker_skills_set(*, name: str, scores: Mapping[int, tuple[float, int]]) -> None:
    """Upsert one skill for many workers: worker id -> (score 0..100, gold answers behind it)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": ["A skill name is 1 to 100 characters."]})
    rows = []
    for worker_id, (score, evidence) in scores.items():
        if not 0 <= score <= 100 or evidence < 0:
            raise ValidationError(
                {"scores": [f"Worker {worker_id}: score 0 to 100, evidence at least 0."]}
            )
        rows.append(
            WorkerSkill(worker_id=worker_id, name=name, score=float(score), evidence=int(evidence))
        )
    WorkerSkill.objects.bulk_create(
        rows,
        batch_size=UPSERT_BATCH,
        update_conflicts=True,
        unique_fields=["worker", "name"],
        update_fields=["score", "evidence", "updated_at"],
    )


def project_worker_block(
    *,
    project: Project,
    reason: str,
    created_by: AbstractBaseUser | None,
    worker_id: int | None = None,
    username: str | None = None,
) -> WorkerBlock:
    """An owner blocks a worker of the project, named by id or username, with a reason.

    The worker must label for the project (a member of one of its pools) or hold a role on it;
    owners cannot be blocked.
    """
    if (worker_id is None) == (username is None):
        raise ValidationError({"worker": ["Name the worker by id or by username."]})
    users = get_user_model().objects.filter(
        Q(pool_memberships__pool__project_pools__project_id=project.pk)
        | Q(project_roles__project_id=project.pk)
    )
    found = users.filter(pk=worker_id) if worker_id is not None else users.filter(username=username)
    worker = found.distinct().first()
    if worker is None:
        name = f"#{worker_id}" if worker_id is not None else repr(username)
        raise ValidationError({"worker": [f"No worker {name} on this project."]})
    owner = ProjectMember.objects.filter(
        project_id=project.pk, user_id=worker.pk, role=ProjectMember.Role.OWNER
    )
    if owner.exists():
        raise ValidationError({"worker": ["A project owner cannot be blocked."]})
    return worker_block(worker=worker, project=project, reason=reason, created_by=created_by)


def pool_block_list(*, pool: Pool) -> QuerySet[WorkerBlock]:
    """The pool's active blocks, newest first, with the worker and who blocked."""
    return (
        WorkerBlock.objects.filter(pool_id=pool.pk, lifted_at__isnull=True)
        .select_related("worker", "created_by")
        .order_by("-id")
    )


def pool_block_get(*, pool: Pool, block_id: int) -> WorkerBlock:
    """One block on the pool (WorkerBlock.DoesNotExist for another pool's or a project's)."""
    return WorkerBlock.objects.select_related("worker", "pool").get(pk=block_id, pool_id=pool.pk)


def pool_worker_block(
    *, pool: Pool, username: str, reason: str, created_by: AbstractBaseUser | None
) -> WorkerBlock:
    """The pool's manager bars one of its members from every project the pool serves.

    The worker stays a member (the block is lifted on the pool page); the block is recorded on
    each project the pool serves (see `worker_block`).
    """
    member = (
        PoolMember.objects.filter(pool_id=pool.pk, user__username=(username or "").strip())
        .select_related("user")
        .first()
    )
    if member is None:
        raise ValidationError({"username": [f"No member {username!r} in this pool."]})
    if created_by is not None and member.user_id == created_by.pk:
        raise ValidationError({"username": ["You cannot block yourself."]})
    return worker_block(worker=member.user, pool=pool, reason=reason, created_by=created_by)

"""Project members and the pools they label through."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q

from annotation.models import Project, ProjectMember
from annotation.services import (
    project_member_set,
)
from core.audit import audit_record
from crowd.models import (
    Pool,
    PoolMember,
    ProjectPool,
)

LAST_OWNER = "A project keeps at least one owner."


def project_default_pool(*, project: Project) -> Pool:
    """The project's first labeling pool, created with the first annotator."""
    link = (
        ProjectPool.objects.filter(project=project, rule=ProjectPool.Rule.LABEL)
        .select_related("pool")
        .order_by("id")
        .first()
    )
    if link is not None:
        return link.pool
    pool = Pool.objects.create(
        name=f"{project.name} — internal",
        kind=Pool.Kind.INTERNAL_CROWD,
        created_by=project.created_by,
    )
    ProjectPool.objects.create(project=project, pool=pool, rule=ProjectPool.Rule.LABEL)
    return pool


def _members_lock(*, project: Project, user_id: int) -> list[ProjectMember]:
    """Lock the project's owner rows and the user's row (primary-key order), so two owners
    changing or removing each other cannot leave the project without one."""
    return list(
        ProjectMember.objects.filter(project_id=project.pk)
        .filter(Q(role=ProjectMember.Role.OWNER) | Q(user_id=user_id))
        .select_related("user")
        .select_for_update(of=("self",))
        .order_by("pk")
    )


def _other_owners(locked: list[ProjectMember], user_id: int) -> bool:
    return any(m.role == ProjectMember.Role.OWNER and m.user_id != user_id for m in locked)


@transaction.atomic
def project_member_add(
    *, project: Project, username: str, role: str, actor: AbstractBaseUser | None = None
) -> ProjectMember:
    """Give an existing user a role; annotators also join the project's labeling pool.

    Records "member.add" (a new member) or "member.role" (an existing member's role changed)
    by `actor`, with the role before and after; giving a member the role they hold records
    nothing. Locks the project's owner rows.
    """
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": [f"No user named {username!r}."]})
    locked = _members_lock(project=project, user_id=user.pk)
    previous = next((m.role for m in locked if m.user_id == user.pk), None)
    if role != ProjectMember.Role.OWNER and not _other_owners(locked, user.pk):
        raise ValidationError({"role": [LAST_OWNER]})
    member = project_member_set(project=project, user=user, role=role)
    if role == ProjectMember.Role.ANNOTATOR:
        pool = project_default_pool(project=project)
        PoolMember.objects.get_or_create(pool=pool, user=user)
    else:
        PoolMember.objects.filter(pool__project_pools__project=project, user=user).delete()
    if previous != role:
        audit_record(
            actor=actor,
            project=project,
            action="member.add" if previous is None else "member.role",
            target=f"user {user.get_username()}",
            details={"role": {"before": previous, "after": role}},
        )
    return member


@transaction.atomic
def project_member_remove(
    *, project: Project, user_id: int, actor: AbstractBaseUser | None = None
) -> ProjectMember:
    """Take a user's role on the project away (owners only: the caller checks).

    Refuses to remove the last owner. The user leaves the labeling pools that serve only this
    project; a pool shared with other projects is left alone, so membership through one is
    refused (remove them on the pool's page). Their reservations here are expired and the
    items' slots freed, so the items go back to the queue; their submitted annotations stay.
    Records "member.remove" by `actor`. Locks the owner rows, then the user's assignments.
    Returns the removed (deleted) row.
    """
    locked = _members_lock(project=project, user_id=user_id)
    member = next((m for m in locked if m.user_id == user_id), None)
    if member is None:
        raise ValidationError({"user": ["This user is not a member of the project."]})
    if member.role == ProjectMember.Role.OWNER and not _other_owners(locked, user_id):
        raise ValidationError({"user": [f"{LAST_OWNER} Make someone else an owner first."]})
    # Annotate before filtering: the count is over every project the pool serves.
    pools = list(
        Pool.objects.annotate(projects=Count("project_pools", distinct=True))
        .filter(project_pools__project_id=project.pk, memberships__user_id=user_id)
        .order_by("name", "pk")
    )
    shared = [pool.name for pool in pools if pool.projects > 1]
    if shared:
        names = ", ".join(f"“{name}”" for name in shared)
        raise ValidationError(
            {
                "user": [
                    f"{member.user.get_username()} works here through the pool {names}, which "
                    "also serves other projects: remove them on the pool's page instead."
                ]
            }
        )
    from crowd.services.blocks import (
        _reservations_release,
    )  # body import: blocks -> claims -> members

    PoolMember.objects.filter(pool__in=pools, user_id=user_id).delete()
    user = member.user
    member.delete()
    released = _reservations_release(worker=user, project_ids=[project.pk])
    audit_record(
        actor=actor,
        project=project,
        action="member.remove",
        target=f"user {user.get_username()}",
        details={
            "role": member.role,
            "pools_left": [pool.name for pool in pools],
            "reservations_released": released,
        },
    )
    return member


def worker_may_label(*, worker: AbstractBaseUser, project: Project) -> bool:
    """True when the worker belongs to a pool that labels for this project."""
    return PoolMember.objects.filter(
        user=worker,
        pool__project_pools__project=project,
        pool__project_pools__rule=ProjectPool.Rule.LABEL,
    ).exists()

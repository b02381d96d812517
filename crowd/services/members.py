"""Project members and the pools they label through."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

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


@transaction.atomic
def project_member_add(
    *, project: Project, username: str, role: str, actor: AbstractBaseUser | None = None
) -> ProjectMember:
    """Give an existing user a role; annotators also join the project's labeling pool.

    Records a "member.add" audit event by `actor` with the role before and after.
    """
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": [f"No user named {username!r}."]})
    previous = (
        ProjectMember.objects.filter(project=project, user=user)
        .values_list("role", flat=True)
        .first()
    )
    owners = ProjectMember.objects.filter(project=project, role=ProjectMember.Role.OWNER)
    if role != ProjectMember.Role.OWNER and not owners.exclude(user=user).exists():
        raise ValidationError({"role": ["A project keeps at least one owner."]})
    member = project_member_set(project=project, user=user, role=role)
    if role == ProjectMember.Role.ANNOTATOR:
        pool = project_default_pool(project=project)
        PoolMember.objects.get_or_create(pool=pool, user=user)
    else:
        PoolMember.objects.filter(pool__project_pools__project=project, user=user).delete()
    audit_record(
        actor=actor,
        project=project,
        action="member.add",
        target=f"user {user.get_username()}",
        details={"role": {"before": previous, "after": role}},
    )
    return member


def worker_may_label(*, worker: AbstractBaseUser, project: Project) -> bool:
    """True when the worker belongs to a pool that labels for this project."""
    return PoolMember.objects.filter(
        user=worker,
        pool__project_pools__project=project,
        pool__project_pools__rule=ProjectPool.Rule.LABEL,
    ).exists()

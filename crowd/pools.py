"""Pools as data: owners create pools, add and invite members, link pools to projects with a
rule, and set the requirements a worker must meet on every next-item call.

The access table (annotation.ProjectMember) follows the links: members of a project's LABEL
pools are its annotators, members of its REVIEW pools its reviewers (reviewer wins when both
apply: it is the wider role, and labeling itself is decided by pool membership). Owners are
never demoted or removed by a pool change.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Project, ProjectMember
from core.audit import audit_record_each
from core.exceptions import ApplicationError, NotAllowedError
from crowd.models import (
    PayDecision,
    Pool,
    PoolInvite,
    PoolMember,
    ProjectPool,
    ProjectRequirement,
    QualificationAttempt,
    WorkerSkill,
)

INVITE_MAX_DAYS = 90
INVITE_MAX_USES = 10_000


class RequirementNotMetError(NotAllowedError, PermissionDenied):
    """The worker misses one of the project's requirements (403, code "requirement").

    A PermissionDenied too, so an HTML view that does not catch it still answers 403.
    """

    code = "requirement"

    def __init__(self, requirement: ProjectRequirement) -> None:
        super().__init__(requirement_message(requirement=requirement))
        self.requirement = requirement


class InviteInvalidError(ApplicationError):
    """The invite link cannot be used: unknown, revoked, expired or used up (410)."""

    status_code = 410


# --- selectors --------------------------------------------------------------------------------


def pool_list_for_owner(*, user: AbstractBaseUser) -> QuerySet[Pool]:
    """Pools the user manages (created; staff: all), with member and project counts."""
    pools = Pool.objects.all() if user.is_staff else Pool.objects.filter(created_by_id=user.pk)
    return pools.annotate(
        member_count=Count("memberships", distinct=True),
        project_count=Count("project_pools", distinct=True),
    ).order_by("name", "id")


def pool_get_for_owner(*, user: AbstractBaseUser, pool_id: int) -> Pool:
    """One pool the user manages; Pool.DoesNotExist (404) for anyone else's."""
    return pool_list_for_owner(user=user).get(pk=pool_id)


def pool_member_list(*, pool: Pool) -> QuerySet[PoolMember]:
    return pool.memberships.select_related("user").order_by("user__username")


def pool_invite_list(*, pool: Pool) -> QuerySet[PoolInvite]:
    return pool.invites.select_related("created_by").order_by("-id")


def pool_project_list(*, pool: Pool) -> QuerySet[ProjectPool]:
    return pool.project_pools.select_related("project").order_by("project__name")


def project_pool_list(*, project: Project) -> QuerySet[ProjectPool]:
    """The pools a project draws from, with their member counts."""
    return (
        ProjectPool.objects.filter(project_id=project.pk)
        .select_related("pool")
        .annotate(member_count=Count("pool__memberships", distinct=True))
        .order_by("pool__name", "id")
    )


def project_requirement_list(*, project: Project) -> QuerySet[ProjectRequirement]:
    return ProjectRequirement.objects.filter(project_id=project.pk).select_related("pool")


def pool_invite_get(*, token: str) -> PoolInvite:
    """The invite behind a link (any state); InviteInvalidError when there is none."""
    invite = PoolInvite.objects.select_related("pool").filter(token=token).first()
    if invite is None:
        raise InviteInvalidError("This invite link is not valid.", code="invite_unknown")
    return invite


def pool_invite_state(*, invite: PoolInvite, now: datetime | None = None) -> str:
    """ "valid", "revoked", "expired" or "used_up"."""
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at <= (now or timezone.now()):
        return "expired"
    if invite.uses >= invite.max_uses:
        return "used_up"
    return "valid"


INVITE_MESSAGES = {
    "revoked": "This invite link was revoked by the pool's owner.",
    "expired": "This invite link has expired. Ask the pool's owner for a new one.",
    "used_up": "This invite link has been used as many times as allowed.",
}


# --- the access table -------------------------------------------------------------------------


def _roles_sync(*, project_ids: Collection[int], user_ids: Collection[int]) -> None:
    """Make the role of each (project, user) pair follow the pool links; owners stay owners."""
    if not project_ids or not user_ids:
        return
    links = PoolMember.objects.filter(
        user_id__in=list(user_ids), pool__project_pools__project_id__in=list(project_ids)
    ).values_list("pool__project_pools__project_id", "user_id", "pool__project_pools__rule")
    wanted: dict[tuple[int, int], str] = {}
    for project_id, user_id, rule in links:
        role = (
            ProjectMember.Role.REVIEWER
            if rule == ProjectPool.Rule.REVIEW
            else ProjectMember.Role.ANNOTATOR
        )
        if wanted.get((project_id, user_id)) != ProjectMember.Role.REVIEWER:
            wanted[(project_id, user_id)] = role
    current = {
        (m.project_id, m.user_id): m
        for m in ProjectMember.objects.filter(
            project_id__in=list(project_ids), user_id__in=list(user_ids)
        )
    }
    stale = [
        m.pk
        for key, m in current.items()
        if key not in wanted and m.role != ProjectMember.Role.OWNER
    ]
    ProjectMember.objects.filter(pk__in=stale).delete()
    upserts = [
        ProjectMember(project_id=key[0], user_id=key[1], role=role)
        for key, role in wanted.items()
        if key not in current
        or (current[key].role != role and current[key].role != ProjectMember.Role.OWNER)
    ]
    ProjectMember.objects.bulk_create(
        upserts, update_conflicts=True, unique_fields=["project", "user"], update_fields=["role"]
    )


def _pool_project_ids(pool: Pool) -> list[int]:
    return list(ProjectPool.objects.filter(pool_id=pool.pk).values_list("project_id", flat=True))


# --- pools and members ------------------------------------------------------------------------


def pool_create(*, name: str, kind: str, created_by: AbstractBaseUser) -> Pool:
    """A new, empty pool managed by `created_by`."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": ["Give the pool a name of 1 to 200 characters."]})
    if kind not in Pool.Kind.values:
        raise ValidationError({"kind": [f"Unknown kind {kind!r}."]})
    return Pool.objects.create(name=name, kind=kind, created_by=created_by)


def _pool_member_audit(
    *,
    pool: Pool,
    user: AbstractBaseUser,
    action: str,
    actor: AbstractBaseUser | None,
    project_ids: Collection[int],
    **details: object,
) -> None:
    """Record a pool membership change on every project the pool serves, so each project's
    owners see it (site-wide when it serves none)."""
    audit_record_each(
        actor=actor,
        projects=project_ids,
        action=action,
        target=f"pool {pool.name}: user {user.get_username()}",
        details={"pool": pool.pk, "user": user.pk, **details},
    )


@transaction.atomic
def pool_member_add(
    *, pool: Pool, username: str, actor: AbstractBaseUser | None = None
) -> PoolMember:
    """Add an existing user to the pool; they get the roles its project links give. Idempotent.

    A new member is recorded as "pool.member_add" by `actor` on every project the pool serves.
    """
    user = get_user_model().objects.filter(username=(username or "").strip()).first()
    if user is None:
        raise ValidationError({"username": [f"No user named {username!r}."]})
    member, created = PoolMember.objects.get_or_create(pool=pool, user=user)
    project_ids = _pool_project_ids(pool)
    _roles_sync(project_ids=project_ids, user_ids=[user.pk])
    if created:
        _pool_member_audit(
            pool=pool, user=user, action="pool.member_add", actor=actor, project_ids=project_ids
        )
    return member


@transaction.atomic
def pool_member_remove(*, pool: Pool, user_id: int, actor: AbstractBaseUser | None = None) -> None:
    """Take a user out of the pool, and the roles only this pool gave them.

    Recorded as "pool.member_remove" by `actor` on every project the pool serves.
    """
    removed = (
        PoolMember.objects.filter(pool_id=pool.pk, user_id=user_id).select_related("user").first()
    )
    if removed is None:
        raise ValidationError({"user": ["This user is not a member of the pool."]})
    removed.delete()
    project_ids = _pool_project_ids(pool)
    _roles_sync(project_ids=project_ids, user_ids=[user_id])
    _pool_member_audit(
        pool=pool,
        user=removed.user,
        action="pool.member_remove",
        actor=actor,
        project_ids=project_ids,
    )


@transaction.atomic
def project_pool_link(
    *, project: Project, pool: Pool, rule: str, actor: AbstractBaseUser | None = None
) -> ProjectPool:
    """Let the project draw from the pool under `rule` (changing the rule of an existing link).

    A new link or a changed rule is recorded as "pool.link" by `actor` on the project.
    """
    if rule not in ProjectPool.Rule.values:
        raise ValidationError({"rule": [f"Unknown rule {rule!r}."]})
    before = ProjectPool.objects.filter(project=project, pool=pool).values_list("rule", flat=True)
    old_rule = before.first()
    link, _ = ProjectPool.objects.update_or_create(
        project=project, pool=pool, defaults={"rule": rule}
    )
    user_ids = list(PoolMember.objects.filter(pool_id=pool.pk).values_list("user_id", flat=True))
    _roles_sync(project_ids=[project.pk], user_ids=user_ids)
    if old_rule != rule:
        audit_record_each(
            actor=actor,
            projects=[project.pk],
            action="pool.link",
            target=f"pool {pool.name}",
            details={"pool": pool.pk, "rule": {"before": old_rule, "after": rule}},
        )
    return link


@transaction.atomic
def project_pool_unlink(
    *, project: Project, pool: Pool, actor: AbstractBaseUser | None = None
) -> None:
    """Stop drawing from the pool; its members keep only what other links give them.

    Recorded as "pool.unlink" by `actor` on the project.
    """
    deleted, _ = ProjectPool.objects.filter(project_id=project.pk, pool_id=pool.pk).delete()
    if not deleted:
        raise ValidationError({"pool": ["This pool is not linked to the project."]})
    user_ids = list(PoolMember.objects.filter(pool_id=pool.pk).values_list("user_id", flat=True))
    _roles_sync(project_ids=[project.pk], user_ids=user_ids)
    audit_record_each(
        actor=actor,
        projects=[project.pk],
        action="pool.unlink",
        target=f"pool {pool.name}",
        details={"pool": pool.pk},
    )


# --- invites ----------------------------------------------------------------------------------


def pool_invite_create(
    *, pool: Pool, created_by: AbstractBaseUser, expires_in_hours: int, max_uses: int
) -> PoolInvite:
    """A link anyone logged in can use to join the pool, `max_uses` times until it expires."""
    errors: dict[str, list[str]] = {}
    if not 1 <= expires_in_hours <= INVITE_MAX_DAYS * 24:
        errors["expires_in_hours"] = [f"Between 1 hour and {INVITE_MAX_DAYS} days."]
    if not 1 <= max_uses <= INVITE_MAX_USES:
        errors["max_uses"] = [f"Between 1 and {INVITE_MAX_USES} uses."]
    if errors:
        raise ValidationError(errors)
    return PoolInvite.objects.create(
        pool=pool,
        token=secrets.token_urlsafe(32),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(hours=expires_in_hours),
        max_uses=max_uses,
    )


def pool_invite_revoke(*, invite: PoolInvite) -> PoolInvite:
    """Stop the link from working. Idempotent."""
    if invite.revoked_at is None:
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at"])
    return invite


@transaction.atomic
def pool_invite_accept(*, token: str, user: AbstractBaseUser) -> PoolMember:
    """Join the invite's pool (and so its projects). A member already in the pool uses no use.

    Recorded as "pool.member_add" by the joining user on every project the pool serves.
    Locks the invite row, so concurrent joins never exceed `max_uses`.
    """
    invite = pool_invite_get(token=token)
    invite = PoolInvite.objects.select_for_update().select_related("pool").get(pk=invite.pk)
    existing = PoolMember.objects.filter(pool_id=invite.pool_id, user_id=user.pk).first()
    state = pool_invite_state(invite=invite)
    if existing is not None and state != "revoked":
        return existing
    if state != "valid":
        raise InviteInvalidError(INVITE_MESSAGES[state], code=f"invite_{state}")
    PoolInvite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
    member = PoolMember.objects.create(pool_id=invite.pool_id, user=user)
    project_ids = _pool_project_ids(invite.pool)
    _roles_sync(project_ids=project_ids, user_ids=[user.pk])
    _pool_member_audit(
        pool=invite.pool,
        user=user,
        action="pool.member_add",
        actor=user,
        project_ids=project_ids,
        invite=invite.pk,
    )
    return member


# --- requirements -----------------------------------------------------------------------------


def requirement_message(*, requirement: ProjectRequirement) -> str:
    """What a worker is told when they miss this requirement."""
    kind = requirement.kind
    if kind == ProjectRequirement.Kind.SKILL:
        return (
            f"This project needs the skill “{requirement.skill_name}” at "
            f"{requirement.min_score:g} or above."
        )
    if kind == ProjectRequirement.Kind.APPROVED:
        return (
            f"This project needs at least {requirement.min_count} approved annotations "
            "(on any project)."
        )
    if kind == ProjectRequirement.Kind.POOL:
        name = requirement.pool.name if requirement.pool else "?"
        return f"This project is open only to members of the pool “{name}”."
    return "This project needs its qualification test passed first."


@transaction.atomic
def project_requirement_add(
    *,
    project: Project,
    kind: str,
    skill_name: str = "",
    min_score: float | None = None,
    min_count: int | None = None,
    pool: Pool | None = None,
    actor: AbstractBaseUser | None = None,
) -> ProjectRequirement:
    """Add a requirement; only the fields of its kind are kept. The pool must serve the project.

    Recorded as "requirement.add" by `actor` on the project.
    """
    fields: dict[str, object] = {}
    if kind == ProjectRequirement.Kind.SKILL:
        skill_name = (skill_name or "").strip()
        if not skill_name or len(skill_name) > 100:
            raise ValidationError({"skill_name": ["Name the skill (1 to 100 characters)."]})
        if min_score is None or not 0 <= min_score <= 100:
            raise ValidationError({"min_score": ["A score from 0 to 100."]})
        fields = {"skill_name": skill_name, "min_score": float(min_score)}
    elif kind == ProjectRequirement.Kind.APPROVED:
        if min_count is None or min_count < 1:
            raise ValidationError({"min_count": ["At least 1 approved annotation."]})
        fields = {"min_count": min_count}
    elif kind == ProjectRequirement.Kind.POOL:
        if pool is None or not ProjectPool.objects.filter(project=project, pool=pool).exists():
            raise ValidationError({"pool": ["Choose one of the project's pools."]})
        fields = {"pool": pool}
    elif kind != ProjectRequirement.Kind.QUALIFICATION:
        raise ValidationError({"kind": [f"Unknown kind {kind!r}."]})
    requirement = ProjectRequirement.objects.create(project=project, kind=kind, **fields)
    _requirement_audit(requirement=requirement, action="requirement.add", actor=actor)
    return requirement


@transaction.atomic
def project_requirement_remove(
    *, project: Project, requirement_id: int, actor: AbstractBaseUser | None = None
) -> None:
    """Remove a requirement; recorded as "requirement.remove" by `actor` on the project."""
    requirement = (
        ProjectRequirement.objects.select_related("pool")
        .filter(project=project, pk=requirement_id)
        .first()
    )
    if requirement is None:
        raise ValidationError({"requirement": ["No such requirement on this project."]})
    _requirement_audit(requirement=requirement, action="requirement.remove", actor=actor)
    requirement.delete()


def _requirement_audit(
    *, requirement: ProjectRequirement, action: str, actor: AbstractBaseUser | None
) -> None:
    audit_record_each(
        actor=actor,
        projects=[requirement.project_id],
        action=action,
        target=f"requirement {requirement.pk}",
        details={"kind": requirement.kind, "rule": requirement_message(requirement=requirement)},
    )


def _requirements_with_verdict(
    *, worker: AbstractBaseUser, project: Project
) -> QuerySet[ProjectRequirement]:
    """The project's requirements, each annotated with `met` for this worker (one query)."""
    skill = WorkerSkill.objects.filter(
        worker_id=worker.pk, name=OuterRef("skill_name"), score__gte=OuterRef("min_score")
    )
    approved = (
        PayDecision.objects.filter(
            worker_id=worker.pk,
            status=PayDecision.Status.APPROVED,
            superseded_at__isnull=True,
        )
        .order_by()
        .values("worker_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    member = PoolMember.objects.filter(user_id=worker.pk, pool_id=OuterRef("pool_id"))
    passed = QualificationAttempt.objects.filter(
        worker_id=worker.pk, passed=True, qualification__project_id=project.pk
    )
    kinds = ProjectRequirement.Kind
    return (
        ProjectRequirement.objects.filter(project_id=project.pk)
        .select_related("pool")
        .annotate(
            met=Case(
                When(kind=kinds.SKILL, then=Exists(skill)),
                When(
                    kind=kinds.APPROVED,
                    then=Q(
                        min_count__lte=Coalesce(
                            Subquery(approved, output_field=IntegerField()), Value(0)
                        )
                    ),
                ),
                When(kind=kinds.POOL, then=Exists(member)),
                When(kind=kinds.QUALIFICATION, then=Exists(passed)),
                default=Value(False),
            )
        )
        .order_by("id")
    )


def requirements_check(*, worker: AbstractBaseUser, project: Project) -> None:
    """Raise RequirementNotMetError for the first requirement the worker misses (one query).

    The claim path (crowd.services) calls it only when its standing lookup found that the
    project has requirements, so a project without any pays nothing extra there.
    """
    for requirement in _requirements_with_verdict(worker=worker, project=project):
        if not requirement.met:
            raise RequirementNotMetError(requirement)

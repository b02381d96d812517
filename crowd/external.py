"""External workers from recruitment platforms (Prolific, Mechanical Turk): studies, identities,
the entry link and the completion code.

The entry link is `/s/<slug>/` with the platform's query parameters (Prolific: `PROLIFIC_PID`,
`STUDY_ID`, `SESSION_ID`; MTurk: `workerId`, `assignmentId`, `hitId`). The first arrival of an
external id creates a passwordless account (username: an HMAC of the study and the external
id; the external id itself is stored only in ExternalIdentity) and binds it to that arrival's
session reference (`SESSION_ID` / `assignmentId`).

The binding rule (nobody can impersonate another worker by editing the URL): a later arrival
with the same external id resumes the account only when

- its session reference equals the one bound on creation (the platform hands it only to the
  worker whose submission it is; compared in constant time), or
- the browser's own session is already bound to that identity (the worker is simply reloading).

Anything else (someone else's PID with a guessed or missing SESSION_ID) is refused. Changing
only the PID to an unseen one creates a new, empty worker: it reaches nobody else's work.

A visit starts at entry; the completion code is shown once the worker has submitted `quota`
items since then (or no work is left for them), and the identity is marked completed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from annotation.models import Item, Project, ProjectMember
from annotation.services import project_member_set
from core.exceptions import ApplicationError, NotAllowedError
from crowd.models import (
    Assignment,
    ExternalIdentity,
    ExternalStudy,
    Pool,
    PoolMember,
    ProjectPool,
)
from crowd.selectors import assignment_list_live
from crowd.services import assignment_list_ready

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
PARAMETERS = {
    ExternalStudy.Platform.PROLIFIC: ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"),
    ExternalStudy.Platform.MTURK: ("workerId", "hitId", "assignmentId"),
}
MAX_REF = 200


class EntryRefusedError(NotAllowedError):
    """The entry link's parameters do not resume this worker (403, with the reason)."""

    code = "entry_refused"


class EntryInvalidError(ApplicationError):
    """The entry link lacks the platform's parameters (400)."""

    code = "entry_invalid"


class StudyPreviewError(ApplicationError):
    """An MTurk preview (the HIT is not accepted yet): nothing to create."""

    status_code = 200
    code = "preview"


@dataclass(frozen=True)
class EntryParams:
    """The platform's ids read from the entry link: worker, study, session."""

    external_id: str
    study_ref: str
    session_ref: str


@dataclass(frozen=True)
class VisitProgress:
    """Where an external worker stands in this visit."""

    submitted: int
    quota: int
    work_left: bool

    @property
    def remaining(self) -> int:
        return max(self.quota - self.submitted, 0)

    @property
    def is_done(self) -> bool:
        return self.submitted >= self.quota or not self.work_left


def entry_params_read(*, study: ExternalStudy, query: dict[str, str]) -> EntryParams:
    """Read the platform's parameters from the entry link's query; EntryInvalidError if missing."""
    worker_key, study_key, session_key = PARAMETERS[ExternalStudy.Platform(study.platform)]
    values = {key: (query.get(key) or "").strip() for key in (worker_key, study_key, session_key)}
    if study.platform == ExternalStudy.Platform.MTURK and values[session_key] == MTURK_PREVIEW:
        raise StudyPreviewError("Accept the HIT to start working.")
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise EntryInvalidError(
            "This link lacks the platform's parameters: " + ", ".join(missing) + ".",
            fields={key: ["Required."] for key in missing},
        )
    too_long = [key for key, value in values.items() if len(value) > MAX_REF]
    if too_long:
        raise EntryInvalidError(
            "Parameters too long: " + ", ".join(too_long) + ".",
            fields={key: [f"At most {MAX_REF} characters."] for key in too_long},
        )
    return EntryParams(
        external_id=values[worker_key],
        study_ref=values[study_key],
        session_ref=values[session_key],
    )


def external_username(*, study: ExternalStudy, external_id: str) -> str:
    """The account's username: a keyed hash of study and external id (the id never shows)."""
    message = f"{study.pk}\n{external_id}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return f"ext-{digest[:24]}"


def _external_pool(*, project: Project) -> Pool:
    """The project's external-crowd labeling pool, created when it has none."""
    link = (
        ProjectPool.objects.filter(
            project=project, rule=ProjectPool.Rule.LABEL, pool__kind=Pool.Kind.EXTERNAL_CROWD
        )
        .select_related("pool")
        .order_by("id")
        .first()
    )
    if link is not None:
        return link.pool
    pool = Pool.objects.create(
        name=f"{project.name} — external",
        kind=Pool.Kind.EXTERNAL_CROWD,
        created_by=project.created_by,
    )
    ProjectPool.objects.create(project=project, pool=pool, rule=ProjectPool.Rule.LABEL)
    return pool


def study_pool_choices(*, project: Project) -> QuerySet[Pool]:
    """External-crowd pools that label for the project (what a study may send workers to)."""
    return Pool.objects.filter(
        kind=Pool.Kind.EXTERNAL_CROWD,
        project_pools__project=project,
        project_pools__rule=ProjectPool.Rule.LABEL,
    ).order_by("name", "id")


@transaction.atomic
def study_create(
    *,
    project: Project,
    platform: str,
    quota: int,
    completion_code: str,
    return_url: str = "",
    pool: Pool | None = None,
) -> ExternalStudy:
    """Create an entry link for the project; without `pool`, the project's external pool."""
    if pool is None:
        pool = _external_pool(project=project)
    elif not study_pool_choices(project=project).filter(pk=pool.pk).exists():
        raise ValidationError({"pool": ["Choose an external-crowd pool that labels here."]})
    study = ExternalStudy(
        project=project,
        pool=pool,
        platform=platform,
        slug=secrets.token_urlsafe(12),
        quota=quota,
        completion_code=(completion_code or "").strip(),
        return_url=(return_url or "").strip(),
    )
    study.full_clean()
    if study.quota < 1:
        raise ValidationError({"quota": ["At least one item per visit."]})
    study.save()
    return study


def study_list(*, project: Project) -> QuerySet[ExternalStudy]:
    """The project's studies, newest first, with their pool."""
    return ExternalStudy.objects.filter(project=project).select_related("pool").order_by("-id")


def study_get_open(*, slug: str) -> ExternalStudy:
    """An active study by its slug, with its project and pool (DoesNotExist otherwise)."""
    return ExternalStudy.objects.select_related("project", "pool").get(slug=slug, active=True)


def _worker_join(*, study: ExternalStudy, user: AbstractBaseUser) -> None:
    PoolMember.objects.get_or_create(pool=study.pool, user=user)
    role = (
        ProjectMember.objects.filter(project=study.project, user=user)
        .values_list("role", flat=True)
        .first()
    )
    if role is None:
        project_member_set(project=study.project, user=user, role=ProjectMember.Role.ANNOTATOR)


def _identity_create(*, study: ExternalStudy, params: EntryParams) -> ExternalIdentity:
    user_model = get_user_model()
    username = external_username(study=study, external_id=params.external_id)
    user = user_model.objects.filter(username=username).first()
    if user is None:
        user = user_model(username=username)
        user.set_unusable_password()
        user.save()
    return ExternalIdentity.objects.create(
        study=study,
        external_id=params.external_id,
        user=user,
        study_ref=params.study_ref,
        session_ref=params.session_ref,
    )


def external_worker_enter(
    *, study: ExternalStudy, params: EntryParams, bound_identity_id: int | None
) -> tuple[ExternalIdentity, bool]:
    """Create (first time) or resume the worker behind `params`; (identity, created).

    `bound_identity_id` is the identity the browser session is already bound to, if any.
    Raises EntryRefusedError when resuming breaks the binding rule (module docstring). The
    worker joins the study's pool and becomes a project annotator.
    """
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_related("user")
            .filter(study=study, external_id=params.external_id)
            .first()
        )
        created = identity is None
        if identity is None:
            try:
                with transaction.atomic():
                    identity = _identity_create(study=study, params=params)
            except IntegrityError:  # a concurrent first arrival: resume under the rule below
                identity = ExternalIdentity.objects.select_related("user").get(
                    study=study, external_id=params.external_id
                )
                created = False
        if not created:
            same_session = hmac.compare_digest(
                identity.session_ref.encode(), params.session_ref.encode()
            )
            if not (same_session or bound_identity_id == identity.pk):
                raise EntryRefusedError(
                    "This link does not match the session this worker started with. Open the "
                    "study again from the platform, in the browser you started it in."
                )
        _worker_join(study=study, user=identity.user)
    return identity, created


def identity_get_bound(*, identity_id: int | None, user: AbstractBaseUser) -> ExternalIdentity:
    """The identity a browser session is bound to, when it belongs to `user` (DoesNotExist)."""
    if identity_id is None:
        raise ExternalIdentity.DoesNotExist
    return ExternalIdentity.objects.select_related("study__project", "user").get(
        pk=identity_id, user_id=user.pk
    )


def _work_left(*, worker: AbstractBaseUser, project: Project) -> bool:
    """Any live reservation or open regular item the worker has not seen (two cheap queries)."""
    live = Assignment.objects.filter(
        worker_id=worker.pk,
        project_id=project.pk,
        status=Assignment.Status.RESERVED,
        expires_at__gt=timezone.now(),
    )
    if live.exists():
        return True
    seen = Assignment.objects.filter(item_id=OuterRef("pk"), worker_id=worker.pk)
    return (
        Item.objects.filter(project_id=project.pk, is_gold=False, slots_taken__lt=F("target"))
        .exclude(Exists(seen))
        .exists()
    )


def visit_progress(
    *, identity: ExternalIdentity, started_at: datetime, check_work: bool = True
) -> VisitProgress:
    """Items the worker submitted in this visit (since `started_at`) against the quota."""
    study = identity.study
    submitted = Assignment.objects.filter(
        worker_id=identity.user_id,
        project_id=study.project_id,
        status=Assignment.Status.SUBMITTED,
        finished_at__gte=started_at,
    ).count()
    work_left = True
    if check_work and submitted < study.quota:
        work_left = _work_left(worker=identity.user, project=study.project)
    return VisitProgress(submitted=submitted, quota=study.quota, work_left=work_left)


def identity_complete(*, identity: ExternalIdentity) -> ExternalIdentity:
    """Mark the identity completed (the code was shown). Idempotent: the first time stays."""
    if identity.completed_at is None:
        ExternalIdentity.objects.filter(pk=identity.pk, completed_at__isnull=True).update(
            completed_at=timezone.now()
        )
        identity.refresh_from_db(fields=["completed_at"])
    return identity


def identity_list(*, study: ExternalStudy) -> QuerySet[ExternalIdentity]:
    """The study's workers for its owners (pseudonymous usernames), newest first."""
    return study.identities.select_related("user").order_by("-id")


def visit_list_ready(
    *,
    identity: ExternalIdentity,
    started_at: datetime,
    held: Collection[int],
    pending: Collection[int] = (),
    size: int = 2,
) -> list[Assignment]:
    """crowd.services.assignment_list_ready for an external visit: never past the quota.

    Every live reservation of the worker (held, in flight, or not yet sent) may still become a
    submission, so new claims stop once submitted + reserved reaches the quota. Locks the
    identity row, so overtaking requests of the same worker do not each claim the last slot.
    """
    study, worker = identity.study, identity.user
    with transaction.atomic():
        ExternalIdentity.objects.select_for_update().filter(pk=identity.pk).first()
        progress = visit_progress(identity=identity, started_at=started_at, check_work=False)
        live = set(
            assignment_list_live(worker=worker, project=study.project).values_list("pk", flat=True)
        )
        unsent = live - set(held) - set(pending)
        new = max(progress.remaining - len(live), 0)
        want = min(size - len(held), len(unsent) + new)
        return assignment_list_ready(
            worker=worker,
            project=study.project,
            held=held,
            pending=pending,
            size=len(held) + max(want, 0),
        )

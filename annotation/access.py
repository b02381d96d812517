"""Opening a project by id for a user: the one 404-or-403 rule of views and API endpoints.

A project the user cannot see (no role on it, and not staff) is a 404, so its existence stays
hidden; a project they see, in a role that may not do what they asked, is a 403. Staff see
every project, act as owners where they hold no role, and pass every role check, as
annotation.selectors.project_list_owned and project_list_reviewable say.
"""

from __future__ import annotations

from collections.abc import Collection

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotation.models import Project, ProjectMember
from annotation.selectors import project_list_with_role
from core.exceptions import NotAllowedError

OWNERS = frozenset({ProjectMember.Role.OWNER})
MANAGERS = frozenset({ProjectMember.Role.OWNER, ProjectMember.Role.REVIEWER})
DENIED = {
    OWNERS: "Only the project's owners may do this.",
    MANAGERS: "Only the project's owners and reviewers may see this.",
}


class ProjectAccessDeniedError(NotAllowedError, PermissionDenied):
    """The user sees the project, but their role may not do this (403).

    A PermissionDenied, so HTML views get Django's 403 page; an ApplicationError, so the API's
    exception handler answers {"detail": <the message>, "code": "permission_denied"}.
    """


def project_access(
    *,
    user: AbstractBaseUser | AnonymousUser,
    project_id: int,
    roles: Collection[str] | None = None,
    denied: str = "",
) -> tuple[Project, str]:
    """The project, with the user's membership `role` annotated, and the role they act in.

    Raises Http404 when the user cannot see the project, and ProjectAccessDeniedError when
    `roles` is given and the user, unless staff, holds none of them; its message is `denied`,
    or the one DENIED has for `roles`. One query.
    """
    if not user.is_authenticated:
        raise Http404("No such project.")
    project = project_list_with_role(user=user).filter(pk=project_id).first()
    if project is None:
        raise Http404("No such project.")
    role: str = project.role or ProjectMember.Role.OWNER  # only staff see it without a role
    if roles is not None and not (user.is_staff or role in roles):
        fallback = "Your role on this project does not allow this."
        raise ProjectAccessDeniedError(denied or DENIED.get(frozenset(roles), fallback))
    return project, role

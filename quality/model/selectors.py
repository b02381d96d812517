"""Reading the built-in model: who may see a project's model page, and its versions."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Project
from quality.models import ModelVersion

READ_DENIED = "Only the project's owners and reviewers can see its model."
MANAGE_DENIED = "Only the project's owners can train the model or change the serving order."


def project_get_for_model(
    *, user: AbstractBaseUser | AnonymousUser, project_id: int, manage: bool = False
) -> tuple[Project, str]:
    """The project and the user's role if they may read its model (or, with `manage`, train it
    and set the serving order). Http404 when the project is hidden, PermissionDenied otherwise."""
    roles, denied = (OWNERS, MANAGE_DENIED) if manage else (MANAGERS, READ_DENIED)
    return project_access(user=user, project_id=project_id, roles=roles, denied=denied)


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """The project's model versions, newest first (callers checked the actor may read them)."""
    return ModelVersion.objects.filter(project=project).order_by("-version")

"""Reading dataset releases: who may open a project's releases, one release, its label table."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Project
from annotation.selectors import project_list_owned
from quality.models import Release

READ_DENIED = "Only the project's owners and reviewers can read its releases."
CREATE_DENIED = "Only the project's owners can create releases."


def project_get_for_releases(
    *, user: AbstractBaseUser | AnonymousUser, project_id: int, manage: bool = False
) -> Project:
    """The project if the user may read its releases (or, with `manage`, create them).

    Raises Http404 when the user cannot see the project at all, PermissionDenied when they
    can see it but not its releases (annotators) or may not create one (reviewers).
    """
    roles, denied = (OWNERS, CREATE_DENIED) if manage else (MANAGERS, READ_DENIED)
    project, _role = project_access(user=user, project_id=project_id, roles=roles, denied=denied)
    return project


def release_list_for_project(*, project: Project) -> QuerySet[Release]:
    """A project's releases, newest version first; callers checked the actor may read them."""
    return Release.objects.filter(project=project).select_related("created_by").order_by("-version")


def release_get_for_user(*, user: AbstractBaseUser | AnonymousUser, release_id: int) -> Release:
    """One release with its project and files; 404 if the project is hidden, 403 for annotators."""
    release = (
        Release.objects.select_related("project", "created_by")
        .prefetch_related("files")
        .filter(pk=release_id)
        .first()
    )
    if release is None:
        raise Http404
    project_access(user=user, project_id=release.project_id, roles=MANAGERS, denied=READ_DENIED)
    return release


def release_may_manage(*, user: AbstractBaseUser | AnonymousUser, project: Project) -> bool:
    """True when the user may create releases of the project (owners and staff)."""
    return user.is_authenticated and project_list_owned(user=user).filter(pk=project.pk).exists()


def release_label_rows(*, release: Release) -> list[dict[str, Any]]:
    """Per label of a built release: consensus items, annotations, and share of items."""
    if not release.manifest:
        return []
    distribution = release.manifest["label_distribution"]
    items = release.manifest["counts"]["items"]
    labels = [label["value"] for label in release.manifest["config"]["labels"]]  # jsonb: keep order
    return [
        {
            "label": label,
            "items": distribution["consensus"].get(label, 0),
            "annotations": distribution["annotations"].get(label, 0),
            "share": distribution["consensus"].get(label, 0) / items if items else 0.0,
        }
        for label in labels
    ]

from __future__ import annotations

from annotation.models import Project
from crowd.services import project_member_add
from tests.annotation.factories import UserFactory


def make_annotator(project: Project, username: str | None = None):
    """A user who labels for `project` (member of its default pool)."""
    user = UserFactory(username=username) if username else UserFactory()
    project_member_add(project=project, username=user.username, role="annotator")
    return user

from __future__ import annotations

from annotation.models import Project
from crowd.models import Pool, PoolMember, ProjectPool
from crowd.services import project_member_add
from tests.annotation.factories import UserFactory


def make_annotator(project: Project, username: str | None = None):
    """A user who labels for `project` (member of its default pool)."""
    user = UserFactory(username=username) if username else UserFactory()
    project_member_add(project=project, username=user.username, role="annotator")
    return user


def make_pool(*projects: Project, name: str = "Extra pool") -> Pool:
    """A labeling pool serving `projects` (besides their default pools)."""
    pool = Pool.objects.create(name=name, created_by=projects[0].created_by)
    for project in projects:
        ProjectPool.objects.create(project=project, pool=pool, rule=ProjectPool.Rule.LABEL)
    return pool


def join_pool(pool: Pool, user) -> None:
    PoolMember.objects.get_or_create(pool=pool, user=user)

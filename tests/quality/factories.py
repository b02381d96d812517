from __future__ import annotations

from collections.abc import Sequence
from unittest import mock

from annotation.models import Annotation, Project
from quality import release_tasks
from quality.models import Release
from quality.releases import release_create
from tests.annotation.factories import AnnotationFactory, ItemFactory


def vote(item, author, label: str, duration_ms: int = 1000) -> Annotation:
    """`author` labels `item` with `label`, taking `duration_ms`."""
    return AnnotationFactory(
        item=item, author=author, value={"label": label}, duration_ms=duration_ms
    )


def label_items(project: Project, authors: Sequence, labels: Sequence[str], *, count: int):
    """Add `count` items to `project`; on every item each author gives the label at its place."""
    for item in ItemFactory.create_batch(count, project=project):
        for author, label in zip(authors, labels, strict=True):
            AnnotationFactory(item=item, author=author, value={"label": label})
    return project


def make_release(project: Project, owner, **kwargs) -> Release:
    """A pending release of `project`, its build not enqueued."""
    with mock.patch.object(release_tasks.release_build_task, "delay"):
        return release_create(project=project, user=owner, **kwargs)

"""Celery entry points for building dataset releases."""

from __future__ import annotations

from celery import shared_task

from config.celery_app import Queue
from quality.models import Release

# Exports stream the whole project; allow far more than the global 300 s limit.
BUILD_SOFT_TIME_LIMIT = 3 * 3600
BUILD_TIME_LIMIT = BUILD_SOFT_TIME_LIMIT + 300


@shared_task(
    queue=Queue.EXPORTS,
    soft_time_limit=BUILD_SOFT_TIME_LIMIT,
    time_limit=BUILD_TIME_LIMIT,
)
def release_build_task(release_id: int) -> None:
    """Build one release's files; a no-op for a ready or deleted release."""
    from quality.releases import release_build  # body import: releases imports this module

    release = Release.objects.filter(pk=release_id).first()
    if release is None:  # deleted after enqueue: nothing to do
        return
    release_build(release=release)

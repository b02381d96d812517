"""Celery entry points of the quality app."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from config.celery_app import Queue


@shared_task(
    queue=Queue.QUALITY,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def quality_recompute_task(project_id: int) -> None:
    """Recompute the project's quality scores (idempotent; scheduled by the debounce)."""
    from quality.services import quality_recompute_scheduled  # body import: no cycles

    quality_recompute_scheduled(project_id=project_id)

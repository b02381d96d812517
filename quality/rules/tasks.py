"""Celery entry point of labeling rules (registered by an import in quality.tasks)."""

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
def rules_run_task(project_id: int) -> None:
    """Run the project's active labeling rules: stats and pre-labels (idempotent)."""
    from annotation.models import Project  # body import: no cycles
    from quality.rules.running import rules_run

    project = Project.objects.filter(pk=project_id).first()
    if project is None:  # deleted after enqueue: nothing to do
        return
    rules_run(project=project)

"""Celery entry points of the annotation app."""

from __future__ import annotations

from celery import shared_task

from annotation.models import ImportJob
from config.celery_app import Queue

# A 200 MB upload is read twice and inserted in one transaction: far beyond the global 300 s.
IMPORT_SOFT_TIME_LIMIT = 3600
IMPORT_TIME_LIMIT = IMPORT_SOFT_TIME_LIMIT + 120


@shared_task(
    queue=Queue.DEFAULT,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT,
    time_limit=IMPORT_TIME_LIMIT,
)
def import_run_task(import_job_id: int) -> None:
    """Run one import job; a no-op for a finished or deleted job."""
    from annotation.imports import import_run  # body import: imports enqueues this task

    job = ImportJob.objects.select_related("project").filter(pk=import_job_id).first()
    if job is None:  # deleted after enqueue: nothing to do
        return
    import_run(job=job)

"""Celery entry points of the quality app."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from config.celery_app import Queue
from quality.model.tasks import model_train_task  # noqa: F401 (registers the model task)
from quality.rules.tasks import rules_run_task  # noqa: F401 (registers the rules task)


@shared_task(
    queue=Queue.QUALITY,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def quality_recompute_task(project_id: int, full: bool | None = None) -> None:
    """Recompute the project's quality scores (idempotent).

    `full=None`: the debounced post-submit run (light unless the last full run is old);
    `full=True`: the periodic full run queued by quality_recompute_all_task.
    """
    from quality.services import quality_recompute_scheduled  # body import: no cycles

    quality_recompute_scheduled(project_id=project_id, full=full)


@shared_task(
    queue=Queue.QUALITY,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def quality_recompute_all_task() -> int:
    """Celery beat: queue a full recompute of every project with annotations since its last."""
    from quality.services import quality_recompute_stale_enqueue

    return len(quality_recompute_stale_enqueue())

"""Celery entry points of the built-in model (imported by quality.tasks, so workers see them)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from config.celery_app import Queue


@shared_task(
    queue=Queue.QUALITY,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
)
def model_train_task(project_id: int) -> int | None:
    """Train a new model version for the project; returns its number (None when the project
    is gone or cannot train: unsupported, or too few vetted labels)."""
    from annotation.models import Project
    from quality.model.training import ModelNotTrainableError, model_train

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    try:
        return model_train(project=project).version
    except ModelNotTrainableError:
        return None

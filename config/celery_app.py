"""The Celery application: one per process, configured from Django settings (CELERY_*)."""

from __future__ import annotations

import os
from enum import StrEnum

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


class Queue(StrEnum):
    """One queue per kind of workload, so a slow export never delays quality scores."""

    DEFAULT = "default"
    QUALITY = "quality"
    EXPORTS = "exports"


app = Celery("assay", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

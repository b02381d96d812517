from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect Celery's signals to the metrics and to the request-id logging (idempotent)."""
        from core.logging import connect_celery_logging
        from core.metrics import connect_celery_metrics

        connect_celery_metrics()
        connect_celery_logging()

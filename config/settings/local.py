"""The embedded default: SQLite without DATABASE_URL, Celery in-process without REDIS_URL."""

from __future__ import annotations

import logging

from config.settings.base import *  # noqa: F403
from config.settings.base import REDIS_URL, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-only-insecure-key-not-for-production")
# Webhooks to services on this machine are fine while developing (refused in production).
ASSAY_WEBHOOK_ALLOW_PRIVATE = env.bool("ASSAY_WEBHOOK_ALLOW_PRIVATE", default=True)

if not REDIS_URL:
    CELERY_TASK_ALWAYS_EAGER = True
    logging.getLogger("assay").warning(
        "REDIS_URL is not set: Celery tasks run eagerly in this process (embedded default)."
    )

"""Test settings: fast hashing, tasks never run eagerly unless a test asks for it."""

from __future__ import annotations

from config.settings.base import *  # noqa: F403
from config.settings.base import BASE_DIR, REST_FRAMEWORK

DEBUG = False
SECRET_KEY = "test-only-key"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = False
ASSAY_SWEEP_INTERVAL_SECONDS = 0
ASSAY_TOKEN_CACHE_SECONDS = 0
MEDIA_ROOT = BASE_DIR / "var" / "test-media"
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"crowd": None, "auth": None}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

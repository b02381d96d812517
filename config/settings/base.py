"""Settings shared by every mode. Values come from the environment (12-factor)."""

from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

# --- Core -----------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "annotation",
    "crowd",
    "quality",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.logging.RequestIdMiddleware",
    # Before WhiteNoise, so static files get the headers too (core/security.py).
    "core.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so its early answers still pass through the header middleware above.
    "core.security.LoginLockoutMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# DATABASE_URL selects PostgreSQL in production; the embedded default is SQLite in the project.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# DJANGO_DB_POOL_MAX_SIZE > 0 switches to Django's psycopg connection pool: one pool per process,
# shared by its threads, holding at most that many connections (a request waits up to
# DJANGO_DB_POOL_TIMEOUT seconds for one, then fails as a 503). Django requires CONN_MAX_AGE = 0
# with a pool. 0 (the default) keeps one persistent connection per thread (DJANGO_CONN_MAX_AGE).
DB_POOL_MAX_SIZE = env.int("DJANGO_DB_POOL_MAX_SIZE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # with a pool: checked on checkout
    if DB_POOL_MAX_SIZE:
        from django.core.exceptions import ImproperlyConfigured

        _pool_min_size = env.int("DJANGO_DB_POOL_MIN_SIZE", default=1)
        if not 0 <= _pool_min_size <= DB_POOL_MAX_SIZE:
            raise ImproperlyConfigured(
                "DJANGO_DB_POOL_MIN_SIZE must be between 0 and DJANGO_DB_POOL_MAX_SIZE "
                f"({DB_POOL_MAX_SIZE}), got {_pool_min_size}."
            )
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": _pool_min_size,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": env.float("DJANGO_DB_POOL_TIMEOUT", default=10.0),
        }
else:
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

# --- Auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed sign-ins (login form, admin login, API token) before a lockout, per (username, address)
# and per address, and how long the lockout lasts (core/security.py).
ASSAY_LOGIN_FAILURE_LIMIT = 5
ASSAY_LOGIN_IP_FAILURE_LIMIT = 30
ASSAY_LOGIN_LOCKOUT_SECONDS = 900
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotation:project-list"
LOGOUT_REDIRECT_URL = "login"

# --- Static and media files -------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = env.path("ASSAY_MEDIA_ROOT", default=BASE_DIR / "var" / "media")
MEDIA_URL = "/media/"
# >>> Storage and release delivery (STORAGES block; see docs/deployment.md) >>>>>>>>>>>>>>>>>>>>>>
# ASSAY_STORAGE: "filesystem" (default, MEDIA_ROOT) or "s3" (any S3-compatible object store via
# django-storages; uploads, images and release files). With s3, release downloads answer a 302 to
# a signed URL valid ASSAY_RELEASE_URL_EXPIRY_SECONDS instead of streaming through Django.
ASSAY_STORAGE = env("ASSAY_STORAGE", default="filesystem")
ASSAY_RELEASE_URL_EXPIRY_SECONDS = env.int("ASSAY_RELEASE_URL_EXPIRY_SECONDS", default=300)
if ASSAY_STORAGE == "s3":
    _DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "access_key": env("AWS_ACCESS_KEY_ID"),
            "secret_key": env("AWS_SECRET_ACCESS_KEY"),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "signature_version": env("AWS_S3_SIGNATURE_VERSION", default="s3v4"),
            "querystring_auth": True,
            "querystring_expire": ASSAY_RELEASE_URL_EXPIRY_SECONDS,
            "file_overwrite": False,
            "default_acl": None,
        },
    }
elif ASSAY_STORAGE == "filesystem":
    _DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"ASSAY_STORAGE must be 'filesystem' or 's3', not {ASSAY_STORAGE!r}."
    )
STORAGES = {
    "default": _DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Downloads redirect to signed storage URLs (default: on with s3) instead of streaming.
ASSAY_RELEASE_SIGNED_REDIRECT = env.bool(
    "ASSAY_RELEASE_SIGNED_REDIRECT", default=ASSAY_STORAGE == "s3"
)
# How long a streamed file's checksum verification is trusted for ranged requests.
ASSAY_RELEASE_VERIFY_CACHE_SECONDS = env.int("ASSAY_RELEASE_VERIFY_CACHE_SECONDS", default=3600)
# Release webhooks may target private, loopback and link-local addresses only when this is on
# (SSRF guard; turn on for local development and tests, never in production).
ASSAY_WEBHOOK_ALLOW_PRIVATE = env.bool("ASSAY_WEBHOOK_ALLOW_PRIVATE", default=False)
# The site's public base URL, for links in webhook bodies (no request there to build them from).
ASSAY_PUBLIC_URL = env("ASSAY_PUBLIC_URL", default="http://localhost:8000")
# <<< Storage and release delivery <<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<
# Uploads larger than this are refused before they are read (imports stream from a temp file).
ASSAY_IMPORT_MAX_BYTES = env.int("ASSAY_IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
# Claims sweep their project's expired reservations at most this often (per process).
ASSAY_SWEEP_INTERVAL_SECONDS = env.int("ASSAY_SWEEP_INTERVAL_SECONDS", default=5)
# Fair-pay monitor: the hourly rate (in cents of the project's currency) below which the pay
# page warns, for projects whose owner has not set their own floor.
ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR = env.int("ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR", default=1200)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Cache and Celery (Redis) -----------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task taken by a worker that died comes back after this long (Redis visibility timeout). It
# must exceed the longest task (a release build may run 3 h) or a slow task runs twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=4 * 3600)
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_TASK_DEFAULT_QUEUE = "default"
# Queues by task module for messages sent by name from a process that has not imported the task
# (`celery call`, send_task); a task sent as an object uses its own queue= option (the same).
CELERY_TASK_ROUTES = {
    "quality.release_tasks.*": {"queue": "exports"},
    "quality.tasks.*": {"queue": "quality"},
    "quality.model.tasks.*": {"queue": "quality"},
    "quality.rules.tasks.*": {"queue": "quality"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Task modules beyond each app's tasks.py (autodiscovered).
CELERY_IMPORTS = ("quality.release_tasks", "quality.releases.webhooks")
CELERY_BEAT_SCHEDULE = {
    "release-stale-assignments": {
        "task": "crowd.tasks.assignment_expire_stale_task",
        "schedule": 60.0,
    },
    # Full quality recompute (bootstrap agreement, trends) of projects with new annotations.
    "quality-recompute-all": {
        "task": "quality.tasks.quality_recompute_all_task",
        "schedule": 15 * 60.0,
    },
}

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.api.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.exception_handler.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"crowd": "1200/min", "auth": "30/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Assay API",
    "DESCRIPTION": "Projects, imports, labeling, quality and versioned datasets.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI is served from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ImportStatusEnum": "annotation.models.ImportJob.Status",
        "AssignmentStatusEnum": "crowd.models.Assignment.Status",
        "ReleaseStatusEnum": "quality.models.Release.Status",
        "MemberRoleEnum": "annotation.models.ProjectMember.Role",
        "PoolKindEnum": "crowd.models.Pool.Kind",
        "RequirementKindEnum": "crowd.models.ProjectRequirement.Kind",
        "QualityActionKindEnum": "quality.models.QualityAction.Kind",
        "PredictionSourceEnum": "annotation.models.Prediction.Source",
    },
}

# How long each process trusts a token it has just looked up (0: look up every request).
ASSAY_TOKEN_CACHE_SECONDS = env.int("ASSAY_TOKEN_CACHE_SECONDS", default=10)

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Logging ----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# >>> Operations: health, readiness and Prometheus metrics (core/health.py, core/metrics.py) >>>>
# First middleware, so request latency covers every other middleware.
MIDDLEWARE = ["core.metrics.RequestMetricsMiddleware", *MIDDLEWARE]
# /metrics answers requests straight from these addresses or networks (a request carrying a
# proxy header such as X-Forwarded-For never counts as direct), or with
# `Authorization: Bearer <ASSAY_METRICS_TOKEN>` when the token is set; anyone else gets 404.
ASSAY_METRICS_ALLOWED_IPS = env.list("ASSAY_METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
ASSAY_METRICS_TOKEN = env("ASSAY_METRICS_TOKEN", default="")
# A Celery worker serves its task metrics on this "host:port" (e.g. 0.0.0.0:9808; empty: off).
ASSAY_METRICS_WORKER_ADDRESS = env("ASSAY_METRICS_WORKER_ADDRESS", default="")
# PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself): see core/metrics.py.
# <<< Operations <<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<

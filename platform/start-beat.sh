#!/usr/bin/env bash
# Celery beat: the periodic scheduler (CELERY_BEAT_SCHEDULE in config/settings/base.py).
# Run exactly ONE beat process per deployment, or every periodic task fires once per copy.
# The schedule state file lives in /tmp: the schedule itself is code, nothing to keep.
set -euo pipefail

cd "$(dirname "$0")/.."  # the project root: /app in the image
exec celery -A config.celery_app beat \
    --schedule /tmp/celerybeat-schedule \
    --loglevel "${CELERY_LOG_LEVEL:-INFO}"

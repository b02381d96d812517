#!/usr/bin/env bash
# A Celery worker consuming every queue. To isolate a workload, run more containers of this
# image with CELERY_WORKER_QUEUES narrowed (for example "exports").
set -euo pipefail

cd "$(dirname "$0")/.."  # the project root: /app in the image
exec celery -A config.celery_app worker \
    --queues "${CELERY_WORKER_QUEUES:-default,quality,exports}" \
    --concurrency "${CELERY_WORKER_CONCURRENCY:-2}" \
    --max-tasks-per-child "${CELERY_WORKER_MAX_TASKS_PER_CHILD:-500}" \
    --loglevel "${CELERY_LOG_LEVEL:-INFO}"

"""A task for the real-worker logging test, loaded into the worker with `celery worker -I`.

Importing it connects the Celery logging hooks, as `CoreConfig.ready()` does in every process.
"""

from __future__ import annotations

import logging

from config.celery_app import app
from core.logging import connect_celery_logging, request_id_get

connect_celery_logging()


@app.task(name="tests.core.logging_worker_tasks.log_in_worker")
def log_in_worker(word: str) -> str | None:
    logging.getLogger("assay.worker_check").info("worker says %s", word)
    return request_id_get()

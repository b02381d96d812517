"""Celery entry points of the crowd app."""

from __future__ import annotations

from celery import shared_task

from config.celery_app import Queue


@shared_task(queue=Queue.DEFAULT)
def assignment_expire_stale_task() -> None:
    """Periodic sweeper: free slots held by reservations past their deadline."""
    from crowd.services import assignment_expire_stale

    while assignment_expire_stale(limit=1000) == 1000:
        pass

"""Running an import: pass 1 validates the whole file, pass 2 inserts it, or nothing.

The job row carries the state: progress is committed while validating (pages poll it), and
the final status is written in the same transaction as the items.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.db import transaction
from django.utils import timezone

from annotation.imports.inserting import _write_new_rows
from annotation.imports.parsing import (
    ImportRow,
    Issue,
    _count_lines,
    _issue,
    _not_utf8,
    _NotUtf8Error,
    _open,
    _Plan,
    _rows,
)
from annotation.imports.predicting import RowRefusedError
from annotation.imports.rules import RowRules
from annotation.imports.zips import ZIP, ZipPlan, stored_delete, zip_validate, zip_write
from annotation.models import ImportJob, Project

logger = logging.getLogger(__name__)

MAX_ERRORS = 100  # errors stored on the job; the rest are only counted
# Validation commits its progress at most every PROGRESS_SECONDS (pages poll every second),
# looking at the clock every PROGRESS_EVERY rows.
PROGRESS_EVERY = 1_000
PROGRESS_SECONDS = 0.5
# Bounds the memory of one import (32-byte hashes kept per row): split bigger files.
MAX_ROWS = 1_000_000
TOO_MANY_ROWS = f"The file has more than {MAX_ROWS:,} rows; split it into smaller files."


def import_run(*, job: ImportJob) -> ImportJob:
    """Validate the job's file, then insert all its rows in one transaction, or none.

    Idempotent: a job that already succeeded or failed is returned unchanged. A job left
    "running" (a worker died) starts again from the top; nothing was inserted for it.
    Side effects: committed progress updates on the job row while validating.
    """
    claimed = ImportJob.objects.filter(
        pk=job.pk, status__in=[ImportJob.Status.PENDING, ImportJob.Status.RUNNING]
    ).update(status=ImportJob.Status.RUNNING, processed_rows=0, total_rows=0, errors=[])
    if not claimed:
        job.refresh_from_db()
        return job
    try:
        plan, errors = _validate(job)
        if errors:
            _finish(job, status=ImportJob.Status.FAILED, errors=errors, total_rows=plan.rows)
        else:
            _insert(job, plan)
    except Exception:
        logger.exception("Import %s stopped unexpectedly", job.pk)
        message = "The import stopped unexpectedly; nothing was imported. Try again."
        _finish(job, status=ImportJob.Status.FAILED, errors=[_issue(None, None, message)])
        raise
    job.refresh_from_db()
    return job


def _progress(job: ImportJob, **counts: int) -> None:
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(**counts)


def _finish(job: ImportJob, *, status: str, errors: list[Issue], **counts: int) -> None:
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        status=status, errors=errors, finished_at=timezone.now(), **counts
    )


def _validate(job: ImportJob) -> tuple[_Plan | ZipPlan, list[Issue]]:
    """Pass 1: read every row; return the plan for pass 2 and the first MAX_ERRORS issues."""
    if job.format == ZIP:
        return _validate_zip(job)
    estimate = _count_lines(job) - (job.format == ImportJob.Format.CSV)
    _progress(job, total_rows=max(estimate, 0))
    rules = RowRules(job.project)
    plan, hidden = _Plan(), 0
    errors: list[Issue] = []
    with _open(job) as stream:
        try:
            hidden = _scan(_rows(stream, job, rules), job, plan, errors, estimate)
        except _NotUtf8Error as exc:
            errors.append(_not_utf8(exc))
    if hidden:
        errors.append(_issue(None, None, f"…and {hidden} more errors not shown."))
    if not plan.rows and not errors:
        errors.append(_issue(None, None, "The file has no rows to import."))
    _progress(job, processed_rows=plan.rows, total_rows=plan.rows)
    return plan, errors


def _validate_zip(job: ImportJob) -> tuple[ZipPlan, list[Issue]]:
    """Pass 1 of an image zip: entries and metadata checked, images verified, none stored."""
    next_update = time.monotonic() + PROGRESS_SECONDS

    def progress(images: int, total: int) -> None:
        nonlocal next_update
        if time.monotonic() >= next_update:
            _progress(job, processed_rows=images, total_rows=max(total, images))
            next_update = time.monotonic() + PROGRESS_SECONDS

    plan, errors = zip_validate(job, RowRules(job.project), progress)
    if len(errors) > MAX_ERRORS:
        hidden = len(errors) - MAX_ERRORS
        errors = errors[:MAX_ERRORS] + [_issue(None, None, f"…and {hidden} more errors not shown.")]
    if not plan.rows and not errors:
        errors.append(_issue(None, None, "The zip has no images to import."))
    _progress(job, processed_rows=plan.rows, total_rows=plan.rows)
    return plan, errors


def _scan(
    entries: Iterator[ImportRow | Issue],
    job: ImportJob,
    plan: _Plan,
    errors: list[Issue],
    estimate: int,
) -> int:
    """Fill `plan` and `errors` from the parsed file; return how many errors were left out."""
    hidden, next_update = 0, time.monotonic() + PROGRESS_SECONDS
    for entry in entries:
        if not isinstance(entry, ImportRow):
            if len(errors) < MAX_ERRORS:
                errors.append(entry)
            else:
                hidden += 1
            continue
        if plan.rows == MAX_ROWS:
            errors.append(_issue(entry.line, None, TOO_MANY_ROWS))
            break
        plan.add(entry)
        if plan.rows % PROGRESS_EVERY == 0 and time.monotonic() >= next_update:
            _progress(job, processed_rows=plan.rows, total_rows=max(estimate, plan.rows))
            next_update = time.monotonic() + PROGRESS_SECONDS
    return hidden


def _insert(job: ImportJob, plan: _Plan | ZipPlan) -> None:
    """Pass 2: insert every new row in one transaction, skipping duplicates.

    Locks the project row first, then the job row, so two imports into one project never
    race on the duplicate check, and a second delivery of the same job finds it finished.
    An image zip's files are written in the same step; if it fails they are deleted again.
    Rows refused only now (a prediction on a row repeating a gold item) fail the job.
    """
    written: list[str] = []
    try:
        _insert_locked(job, plan, written)
    except RowRefusedError as exc:
        stored_delete(written)
        _finish(
            job,
            status=ImportJob.Status.FAILED,
            errors=exc.issues[:MAX_ERRORS],
            total_rows=plan.rows,
        )
    except BaseException:
        stored_delete(written)
        raise


def _insert_locked(job: ImportJob, plan: _Plan | ZipPlan, written: list[str]) -> None:
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=job.project_id)
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != ImportJob.Status.RUNNING:
            return
        if isinstance(plan, ZipPlan):
            created, duplicates = zip_write(job, project, plan, written)
        else:
            created, duplicates = _write_new_rows(job, project, plan)
        _finish(
            job,
            status=ImportJob.Status.SUCCEEDED,
            errors=[],
            total_rows=plan.rows,
            processed_rows=plan.rows,
            created_count=created,
            duplicate_count=duplicates,
        )

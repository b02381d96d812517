"""Receiving an import file: the upload checks, the stored file and its pending job."""

from __future__ import annotations

import uuid
from pathlib import PurePath

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from annotation.imports.zips import ZIP
from annotation.models import ImportJob, Project
from annotation.task_types import task_type_get

EXTENSIONS = {
    ".csv": ImportJob.Format.CSV,
    ".jsonl": ImportJob.Format.JSONL,
    ".ndjson": ImportJob.Format.JSONL,
    ".zip": ZIP,
}


def import_job_create(
    *, project: Project, user: AbstractBaseUser, uploaded_file: UploadedFile
) -> ImportJob:
    """Check and store an upload, create its pending job and enqueue the import on commit.

    Refuses at once (ValidationError on "file") an empty or oversized file, an extension other
    than .csv, .jsonl, .ndjson or .zip, and a .zip for a type whose items cannot be images.
    Callers check that `user` may manage `project`.
    """
    from annotation.tasks import import_run_task  # body import: tasks imports this package

    name = PurePath(uploaded_file.name or "").name
    size = uploaded_file.size or 0
    limit = settings.ASSAY_IMPORT_MAX_BYTES
    if size == 0:
        raise ValidationError({"file": ["The file is empty."]})
    if size > limit:
        raise ValidationError(
            {"file": [f"The file is {_megabytes(size)}; the limit is {_megabytes(limit)}."]}
        )
    extension = PurePath(name).suffix.lower()
    if extension not in EXTENSIONS:
        raise ValidationError(
            {
                "file": [
                    "Upload a .csv or .jsonl file (.ndjson is read as JSONL), or a .zip of images."
                ]
            }
        )
    if EXTENSIONS[extension] == ZIP and not _image_capable(project):
        raise ValidationError(
            {"file": ["This project's items are texts: upload a .csv or .jsonl file."]}
        )
    with transaction.atomic():
        job = ImportJob(
            project=project,
            created_by=user,
            original_name=name[:255],
            format=EXTENSIONS[extension],
        )
        # A generated name: the original one may be long or odd; it is kept in original_name.
        job.file.save(f"{uuid.uuid4().hex}{extension}", uploaded_file, save=False)
        job.save()
        import_run_task.delay_on_commit(job.pk)
    return job


def _image_capable(project: Project) -> bool:
    return "image" in task_type_get(project.task_type).media


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"

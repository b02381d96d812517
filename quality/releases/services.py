"""Writing and serving dataset releases: create the next version, retry a failed build, and
open a ready file for download after checking it against its manifest.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.text import slugify

from annotation.models import Annotation, Item, Project
from annotation.task_types import task_types
from core.audit import audit_record
from core.exceptions import ApplicationError, ConflictError
from quality.models import Release, ReleaseFile
from quality.release_tasks import release_build_task
from quality.releases.policy import policy_clean
from quality.releases.ranges import FileSlice, RangeNotSatisfiableError, byte_range_parse
from quality.releases.selectors import release_may_manage
from quality.releases.splits import split_clean
from quality.releases.writing import DATA_FILES

logger = logging.getLogger(__name__)

SNAPSHOT_FIELDS = ("name", "instructions", "task_type", "labels", "overlap", "gold_ratio")
SNAPSHOT_FIELDS += ("reservation_timeout_seconds", "task_options", "schema_version")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def release_formats() -> list[str]:
    """Every downloadable format: the data files, Parquet, the Hugging Face directory, Label
    Studio JSON, the datasheet, then each task type's export forms."""
    from quality.releases.formats import RELEASE_FORMATS  # formats imports building

    forms = [form.key for task_type in task_types().values() for form in task_type.export_forms]
    return [*DATA_FILES, *RELEASE_FORMATS, "datasheet", *dict.fromkeys(forms)]


class ReleaseIntegrityError(ApplicationError):
    """A stored release file is missing or does not match the checksum in its manifest."""

    status_code = 500
    code = "checksum_mismatch"


@transaction.atomic
def release_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str = "",
    notes: str = "",
    include_raw: bool = False,
    include_identities: bool = False,
    policy: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    purpose: str = "",
    licence: str = "",
    intended_use: str = "",
) -> Release:
    """Freeze the project's current items, annotations and settings as the next version.

    `include_identities` (only with `include_raw`) is the owner's explicit request to put
    annotators' usernames, emails and external platform ids in the files. `policy` is the
    selection policy (quality.releases.policy; None: every item with a consensus) and `split`
    the train/validation/test split (quality.releases.splits; None or {}: no split column).
    Bad values raise ApplicationError with field paths such as `policy.min_confidence`.
    `purpose`, `licence` and `intended_use` are the owner's words for the datasheet.

    Locks the project row so concurrent calls get consecutive versions (the unique constraint
    on (project, version) backs this up). Enqueues the build on commit.
    """
    if not release_may_manage(user=user, project=project):
        raise PermissionDenied("Only the project's owners can create releases.")
    if include_identities and not include_raw:
        message = "Annotator identities are only exported with raw annotations."
        raise ApplicationError(
            message, code="identities_need_raw", fields={"include_identities": [message]}
        )
    policy = policy_clean(policy)
    split = split_clean(split)
    locked = Project.objects.select_for_update().get(pk=project.pk)
    last = Release.objects.filter(project=locked).aggregate(v=Max("version"))["v"] or 0
    item_cutoff = Item.objects.filter(project=locked).aggregate(m=Max("id"))["m"] or 0
    annotation_cutoff = Annotation.objects.filter(project=locked).aggregate(m=Max("id"))["m"] or 0
    release = Release(
        project=locked,
        version=last + 1,
        name=name.strip(),
        notes=notes.strip(),
        include_raw=include_raw,
        include_identities=include_identities,
        policy=policy,
        split=split,
        purpose=purpose.strip(),
        licence=licence.strip(),
        intended_use=intended_use.strip(),
        item_cutoff_id=item_cutoff,
        annotation_cutoff_id=annotation_cutoff,
        config_snapshot={key: getattr(locked, key) for key in SNAPSHOT_FIELDS},
        created_by=user,
    )
    release.full_clean(exclude=["project", "created_by"])
    release.save()
    audit_record(
        actor=user,
        project=locked,
        action="release.create",
        target=f"release {release.tag}",
        details={
            "name": release.name,
            "include_raw": include_raw,
            "include_identities": include_identities,
            "policy": policy,
            "split": split,
        },
    )
    release_build_task.delay_on_commit(release.pk)
    return release


@transaction.atomic
def release_retry(*, release: Release, user: AbstractBaseUser) -> Release:
    """Enqueue a new build of a failed release (owners only); 409 in any other state."""
    if not release_may_manage(user=user, project=release.project):
        raise PermissionDenied("Only the project's owners can rebuild releases.")
    reset = Release.objects.filter(pk=release.pk, status=Release.Status.FAILED).update(
        status=Release.Status.PENDING, progress=0.0, error=""
    )
    if not reset:
        raise ConflictError("Only a failed release can be built again.", code="not_failed")
    release_build_task.delay_on_commit(release.pk)
    release.refresh_from_db()
    return release


def release_download_name(*, release: Release, fmt: str, path: str = "") -> str:
    """The attachment filename of a release file, e.g. 'reviews-v1.jsonl'; an export form
    keeps its own file name after the version ('ner-v2-spacy.jsonl')."""
    slug = slugify(release.project.name) or f"project-{release.project_id}"
    if fmt in DATA_FILES or not path:
        return f"{slug}-v{release.version}.{fmt}"
    return f"{slug}-v{release.version}-{path.rsplit('/', 1)[-1]}"


@dataclass
class ReleaseDownload:
    """An opened, checksum-verified release file and how to serve it."""

    file: IO[bytes]
    filename: str
    content_type: str
    sha256: str
    size: int

    def response(self, range_header: str | None = None) -> HttpResponseBase:
        """The file as a private attachment whose ETag is its checksum (pages and the API);
        a single byte range of it (206) when `range_header` asks for one, 416 when that range
        lies outside the file. Every answer says Accept-Ranges: bytes."""
        try:
            byte_range = byte_range_parse(range_header, self.size)
        except RangeNotSatisfiableError:
            self.file.close()
            response: HttpResponseBase = HttpResponse(
                f"The range lies outside the file ({self.size} bytes).",
                status=416,
                content_type="text/plain; charset=utf-8",
            )
            response["Content-Range"] = f"bytes */{self.size}"
        else:
            body = self.file
            if byte_range is not None:
                self.file.seek(byte_range.start)
                body = FileSlice(self.file, byte_range.length)
            response = FileResponse(
                body,
                as_attachment=True,
                filename=self.filename,
                content_type=self.content_type,
                status=200 if byte_range is None else 206,
            )
            response["Content-Length"] = str(self.size if byte_range is None else byte_range.length)
            if byte_range is not None:
                response["Content-Range"] = byte_range.content_range
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = f'"{self.sha256}"'
        response["Cache-Control"] = "private, max-age=0"
        return response


def release_file_record(*, release: Release, fmt: str) -> tuple[ReleaseFile, str, str]:
    """The file's record, its manifest sha256 and content type, after the format and state
    checks (400 unknown format, 409 not ready, 500 missing from the manifest or records)."""
    if fmt not in release_formats() or fmt == "manifest":
        allowed = ", ".join(release_formats())
        raise ApplicationError(
            f"Unknown format {fmt!r}; use one of: {allowed}.",
            code="unknown_format",
            fields={"format": [f"Use one of: {allowed}."]},
        )
    if release.status != Release.Status.READY:
        raise ConflictError(f"Release {release.tag} is not ready yet.", code="not_ready")
    listed = {entry["format"]: entry for entry in (release.manifest or {}).get("files", [])}
    record = next((f for f in release.files.all() if f.format == fmt), None)
    if fmt not in listed or record is None:
        raise ReleaseIntegrityError(f"Release {release.tag} has no {fmt} file.", code="missing")
    expected = listed[fmt]["sha256"]
    if record.sha256 != expected:
        logger.error("Manifest and record disagree on %s (release %s)", record.path, release.pk)
        raise ReleaseIntegrityError(
            f"The {fmt} file of release {release.tag} does not match its manifest; "
            "it was not served."
        )
    content_type = (
        CONTENT_TYPES.get(fmt) or listed[fmt].get("content_type", "") or "application/octet-stream"
    )
    return record, expected, content_type


def release_file_open(*, release: Release, fmt: str) -> ReleaseDownload:
    """Open a ready release's file after checking its sha256 against the manifest."""
    record, expected, content_type = release_file_record(release=release, fmt=fmt)
    try:
        handle = default_storage.open(record.path, "rb")
    except FileNotFoundError:
        raise ReleaseIntegrityError(
            f"The {fmt} file of release {release.tag} is missing from storage.", code="missing"
        ) from None
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != expected or record.sha256 != expected:
        handle.close()
        logger.error("Checksum mismatch on %s (release %s)", record.path, release.pk)
        raise ReleaseIntegrityError(
            f"The stored {fmt} file of release {release.tag} does not match its checksum; "
            "it was not served."
        )
    handle.seek(0)
    return ReleaseDownload(
        file=handle,
        filename=release_download_name(release=release, fmt=fmt, path=record.path),
        content_type=content_type,
        sha256=expected,
        size=size,
    )

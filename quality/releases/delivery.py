"""Delivering release files to pages and the API: a signed redirect to object storage, or the
file streamed from storage (whole, or one byte range).

Which way: with `ASSAY_RELEASE_SIGNED_REDIRECT` (on when `ASSAY_STORAGE=s3`), a download is a
302 to a short-lived signed URL from `default_storage.url(path, expire=...)` (valid
`ASSAY_RELEASE_URL_EXPIRY_SECONDS`); the object store serves the bytes and ranges itself.
Otherwise the file is streamed from storage with HTTP range support.

Checksums:
- Redirect: the bytes never pass through us, so we trust the sha256 computed while the file was
  written at build time. We check that the file's record and the manifest agree and that the
  object exists; an object changed in the bucket later is not detected (keep the bucket
  write-protected for the application's credentials only).
- Streaming, whole file: every download reads the file once and compares its sha256 with the
  manifest before the first byte is sent (as `release_file_open`).
- Streaming, ranged request: a verification is remembered in the cache for
  `ASSAY_RELEASE_VERIFY_CACHE_SECONDS`, keyed by the file's path, checksum, size and storage
  modification time; a ranged request without such an entry verifies the whole file first. So
  a client resuming a 1 GB download in many ranges costs one full read, not one per range, and
  a file rewritten in place (new mtime or size) is verified again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.http import HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header

from core.audit import audit_record
from quality.models import Release, ReleaseFile
from quality.releases.services import (
    ReleaseDownload,
    ReleaseIntegrityError,
    release_download_name,
    release_file_record,
)

logger = logging.getLogger(__name__)

VERIFIED_KEY = "release-verified:{sha256}:{size}:{mtime}:{path}"


@dataclass
class ReleaseRedirect:
    """A release file served by the object store through a short-lived signed URL."""

    url: str
    sha256: str

    def response(self, range_header: str | None = None) -> HttpResponseBase:
        """A 302 to the signed URL (the store answers ranges itself); never cached."""
        response = HttpResponseRedirect(self.url)
        response["Cache-Control"] = "private, no-store"
        response["ETag"] = f'"{self.sha256}"'
        return response


def _verified_key(record: ReleaseFile, size: int) -> str:
    try:
        mtime = default_storage.get_modified_time(record.path).timestamp()
    except (NotImplementedError, OSError):
        mtime = 0.0
    return VERIFIED_KEY.format(sha256=record.sha256, size=size, mtime=mtime, path=record.path)


def _verify(handle: IO[bytes], *, expected: str) -> tuple[bool, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    handle.seek(0)
    return digest.hexdigest() == expected, size


def release_file_deliver(
    *,
    release: Release,
    fmt: str,
    ranged: bool = False,
    actor: AbstractBaseUser | AnonymousUser | None = None,
) -> ReleaseDownload | ReleaseRedirect:
    """How to serve one file of a ready release: a signed redirect (object storage) or the
    opened, checksum-verified file. `ranged`: the client asked for a byte range, so a cached
    verification of the same file is enough (see the module docstring). Records a
    "release.download" audit event by `actor` for each file served."""
    delivery = _deliver(release=release, fmt=fmt, ranged=ranged)
    audit_record(
        actor=actor if isinstance(actor, AbstractBaseUser) else None,
        project=release.project_id,
        action="release.download",
        target=f"release {release.tag} {fmt}",
        details={"format": fmt, "ranged": ranged, "sha256": delivery.sha256},
    )
    return delivery


def _deliver(*, release: Release, fmt: str, ranged: bool) -> ReleaseDownload | ReleaseRedirect:
    record, expected, content_type = release_file_record(release=release, fmt=fmt)
    filename = release_download_name(release=release, fmt=fmt, path=record.path)
    missing = f"The {fmt} file of release {release.tag} is missing from storage."
    if settings.ASSAY_RELEASE_SIGNED_REDIRECT:
        if not default_storage.exists(record.path):
            raise ReleaseIntegrityError(missing, code="missing")
        url = default_storage.url(
            record.path,
            parameters={
                "ResponseContentDisposition": content_disposition_header(True, filename),
                "ResponseContentType": content_type,
            },
            expire=settings.ASSAY_RELEASE_URL_EXPIRY_SECONDS,
        )
        return ReleaseRedirect(url=url, sha256=expected)
    try:
        handle = default_storage.open(record.path, "rb")
    except FileNotFoundError:
        raise ReleaseIntegrityError(missing, code="missing") from None
    size = default_storage.size(record.path)
    key = _verified_key(record, size)
    if not (ranged and size == record.size and cache.get(key)):
        matches, size = _verify(handle, expected=expected)
        if not matches:
            handle.close()
            logger.error("Checksum mismatch on %s (release %s)", record.path, release.pk)
            raise ReleaseIntegrityError(
                f"The stored {fmt} file of release {release.tag} does not match its checksum; "
                "it was not served."
            )
        cache.set(key, True, settings.ASSAY_RELEASE_VERIFY_CACHE_SECONDS)
    return ReleaseDownload(
        file=handle, filename=filename, content_type=content_type, sha256=expected, size=size
    )


def release_download_response(
    *,
    release: Release,
    fmt: str,
    range_header: str | None = None,
    if_range: str | None = None,
    actor: AbstractBaseUser | AnonymousUser | None = None,
) -> HttpResponseBase:
    """The HTTP answer to a download request (pages and the API) by `actor`: 302, 200, 206
    or 416.

    An `If-Range` that is not the file's ETag (its quoted sha256) turns a ranged request into
    a whole-file one, so a client never stitches parts of two different files.
    """
    delivery = release_file_deliver(
        release=release, fmt=fmt, ranged=bool(range_header), actor=actor
    )
    if if_range and if_range.strip() != f'"{delivery.sha256}"':
        range_header = None
    return delivery.response(range_header=range_header)

"""Putting a built release's files in storage: staged outside the release's row lock, moved
into place atomically under it, so a process killed at any step leaves no half-written file at
a final name and holds no lock while gigabytes are copied.

Local storages (FileSystemStorage and its subclasses): each file is copied
to releases/<project>/.staging/v<version>-<token>/<path> (outside the release's own directory,
so it is never listed there nor served), fsynced, and checked against its manifest entry (size
and sha256) before the lock is taken. Under the lock, `staged_files_move` os.replace()s each
staged file onto its final name (atomic on one filesystem) and fsyncs the directory. Staging
directories left by killed or losing builds are removed by `staging_sweep`, which the next
build of the release runs once the release is ready.

Other storages (S3 through django-storages): there is no rename, so each file is written to
its final name directly, still before the lock; an object PUT is atomic (a reader sees the old
object or the new one, never part of one), and the object's size is checked after the write.
Before the release is ready no download can reach those names (downloads need the ready status
and a ReleaseFile row), and every build of a release writes the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction
from django.utils import timezone

from quality.models import Release, ReleaseFile
from quality.releases.webhooks import release_ready_announce

COPY_CHUNK = 1 << 20
STAGING_DIR = ".staging"


class StagingError(RuntimeError):
    """A staged copy does not match its manifest entry, or storage renamed it."""


@dataclass(frozen=True)
class StagedFile:
    """One built file on its way to storage: its final storage name and, on local storages,
    where its verified copy waits (None: written to the final name directly)."""

    format: str
    path: str
    staged: Path | None
    sha256: str
    size: int


@dataclass(frozen=True)
class StagedRelease:
    """A build's staged files and its staging directory (None on non-local storages)."""

    files: list[StagedFile]
    staging_dir: Path | None


def release_publish(
    *, release: Release, workdir: Path, manifest: dict[str, Any], files: list[dict[str, Any]]
) -> bool:
    """Publish a build: stage its files (manifest entries, relative to `workdir`) outside the
    release's row lock, then move them into place, record them and mark the release ready in
    one short transaction under it. False when a concurrent build finished first (this one's
    staged files are removed then). Side effect: the ready webhook, on commit."""
    if Release.objects.filter(pk=release.pk, status=Release.Status.READY).exists():
        return False  # a concurrent build finished first: nothing to copy
    staged = release_files_stage(release=release, workdir=workdir, files=files)
    try:
        published = _mark_ready(release=release, staged=staged, manifest=manifest)
    except Exception:
        staged_files_discard(staged)
        raise
    staged_files_discard(staged)  # empty after the moves; the loser's files otherwise
    if published:
        staging_sweep(release=release)  # left by builds killed or beaten before this one
    return published


def _mark_ready(*, release: Release, staged: StagedRelease, manifest: dict[str, Any]) -> bool:
    """Under the release's row lock: move the staged files into place, record them and mark
    the release ready; False (nothing moved) when a concurrent build finished first."""
    with transaction.atomic():
        locked = Release.objects.select_for_update().get(pk=release.pk)
        if locked.status == Release.Status.READY:
            return False
        ReleaseFile.objects.filter(release=locked).delete()
        staged_files_move(staged)
        ReleaseFile.objects.bulk_create(
            ReleaseFile(release=locked, format=f.format, path=f.path, sha256=f.sha256, size=f.size)
            for f in staged.files
        )
        locked.manifest = manifest
        locked.status = Release.Status.READY
        locked.progress = 1.0
        locked.error = ""
        locked.built_at = timezone.now()
        locked.save(update_fields=["manifest", "status", "progress", "error", "built_at"])
        release_ready_announce(locked.pk)  # the project's webhook, once this commits
    return True


def release_storage_dir(*, release: Release) -> str:
    """Where a release's files live in the default storage."""
    return f"releases/{release.project_id}/v{release.version}"


def release_staging_dir(*, release: Release, token: str) -> str:
    """Where one build of a release stages its files (beside the release directories)."""
    return f"releases/{release.project_id}/{STAGING_DIR}/v{release.version}-{token}"


def _local_path(name: str) -> Path | None:
    """The filesystem path of a storage name; None when the storage does not keep its files on
    a local filesystem (`path()` alone does not tell: InMemoryStorage answers it)."""
    if not isinstance(default_storage, FileSystemStorage):
        return None
    return Path(default_storage.path(name))


def _makedirs(directory: Path) -> None:
    """Create a directory as FileSystemStorage would (its directory permissions, if any)."""
    mode = getattr(default_storage, "directory_permissions_mode", None)
    if mode is None:
        directory.mkdir(parents=True, exist_ok=True)
        return
    old_umask = os.umask(0o777 & ~mode)
    try:
        directory.mkdir(mode=mode, parents=True, exist_ok=True)
    finally:
        os.umask(old_umask)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage_one(source: Path, target: Path, entry: dict[str, Any]) -> None:
    """Copy one built file to its staging name, fsync it, and check size and sha256."""
    _makedirs(target.parent)
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as data, target.open("xb") as out:
        for chunk in iter(lambda: data.read(COPY_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    mode = getattr(default_storage, "file_permissions_mode", None)
    if mode is not None:
        target.chmod(mode)
    on_disk = target.stat().st_size
    if size != entry["size"] or on_disk != size or digest.hexdigest() != entry["sha256"]:
        raise StagingError(f"Staged {target} does not match its manifest entry.")


def _write_final(source: Path, path: str, entry: dict[str, Any]) -> None:
    """Write one built file to its final name on a storage without rename (one atomic PUT)."""
    if default_storage.exists(path):  # left by an earlier build that did not finish
        default_storage.delete(path)
    with source.open("rb") as handle:
        saved = default_storage.save(path, File(handle, name=entry["path"]))
    if saved != path:
        raise StagingError(f"Storage saved {path!r} as {saved!r}.")
    if default_storage.size(path) != entry["size"]:
        raise StagingError(f"Stored {path!r} does not have the manifest's size.")


def release_files_stage(
    *, release: Release, workdir: Path, files: list[dict[str, Any]]
) -> StagedRelease:
    """Stage a build's files (manifest entries, relative to `workdir`) outside any lock.

    Local storages: verified, fsynced copies in a staging directory of this build's own.
    Others: the final names written directly. On an error the staging directory is removed.
    """
    final_dir = release_storage_dir(release=release)
    staging = _local_path(release_staging_dir(release=release, token=uuid.uuid4().hex[:16]))
    staged: list[StagedFile] = []
    try:
        for entry in files:
            source, path = workdir / entry["path"], f"{final_dir}/{entry['path']}"
            target = None if staging is None else staging / entry["path"]
            if target is None:
                _write_final(source, path, entry)
            else:
                _stage_one(source, target, entry)
            staged.append(StagedFile(entry["format"], path, target, entry["sha256"], entry["size"]))
    except Exception:
        staged_files_discard(StagedRelease(files=staged, staging_dir=staging))
        raise
    return StagedRelease(files=staged, staging_dir=staging)


def _move_one(staged: Path, final: Path) -> None:
    _makedirs(final.parent)
    staged.replace(final)  # os.replace: atomic on one filesystem


def staged_files_move(staged: StagedRelease) -> None:
    """Move staged files onto their final names (call under the release's row lock).

    Each os.replace is atomic, so a final name holds either an earlier complete file or the
    new one; the directories are fsynced so the renames survive a crash. A no-op for files
    written in place (non-local storages).
    """
    directories: set[Path] = set()
    for file in staged.files:
        if file.staged is None:
            continue
        final = _local_path(file.path)
        if final is None:  # staged files exist only on local storages
            raise StagingError(f"Storage has no local path for {file.path!r}.")
        _move_one(file.staged, final)
        directories.add(final.parent)
    for directory in sorted(directories):
        _fsync_dir(directory)


def staged_files_discard(staged: StagedRelease) -> None:
    """Remove a build's staging directory and whatever is left in it (never final names)."""
    if staged.staging_dir is not None:
        shutil.rmtree(staged.staging_dir, ignore_errors=True)


def staging_sweep(*, release: Release) -> int:
    """Remove every staging directory of `release` (killed or losing builds); how many.

    Run only once the release is ready: a build still staging then fails harmlessly, as the
    ready release is never changed by a later build.
    """
    root = _local_path(f"releases/{release.project_id}/{STAGING_DIR}")
    if root is None or not root.is_dir():
        return 0
    removed = 0
    for child in root.iterdir():
        if child.name.startswith(f"v{release.version}-"):
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed

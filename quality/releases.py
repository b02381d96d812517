"""Versioned dataset releases: services and selectors.

A release freezes what it contains when it is created (item and annotation id cutoffs plus a
snapshot of the project's settings) and is built later, by a task, into three files kept in
Django's default storage under releases/<project_id>/v<version>/:

- data.jsonl: one JSON object per released item (sorted keys, compact separators);
- data.csv: the same rows flattened (item data as JSON in the `data` column);
- manifest.json: what the release is, its counts, agreement, and the files' sha256 and size.

Released items are those with id <= item_cutoff_id that have at least one annotation with
id <= annotation_cutoff_id. Gold items are included (they are part of the owner's dataset) and
flagged with `is_gold`; their gold answers are not exported. Only owners and reviewers can
read a release. With `include_raw`, each item also lists its annotations with a pseudonymous
annotator id that is stable within the project and never a username or email.

The files contain nothing that depends on when they were built, so building the same release
twice gives byte-identical files; a ready release is never rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.db.models.fields.json import KT
from django.http import Http404
from django.utils import timezone
from django.utils.text import slugify

from annotation.models import Annotation, Item, Project
from annotation.selectors import project_list_for_user, project_list_owned, project_list_reviewable
from core.exceptions import ApplicationError, ConflictError
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal, vote_shares
from quality.models import Release, ReleaseFile
from quality.release_tasks import release_build_task

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000  # rows fetched per round trip, and items between progress updates
CONSENSUS_METHOD = "majority vote, ties by label order"
SNAPSHOT_FIELDS = ("name", "instructions", "task_type", "labels", "overlap", "gold_ratio")
SNAPSHOT_FIELDS += ("reservation_timeout_seconds",)
DATA_FILES = {"jsonl": "data.jsonl", "csv": "data.csv"}
MANIFEST_FILE = "manifest.json"
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class ReleaseIntegrityError(ApplicationError):
    """A stored release file is missing or does not match the checksum in its manifest."""

    status_code = 500
    code = "checksum_mismatch"


# --- Selectors ----------------------------------------------------------------------------------


def project_get_for_releases(
    *, user: AbstractBaseUser | AnonymousUser, project_id: int, manage: bool = False
) -> Project:
    """The project if the user may read its releases (or, with `manage`, create them).

    Raises Http404 when the user cannot see the project at all, PermissionDenied when they
    can see it but not its releases (annotators) or may not create one (reviewers).
    """
    if not user.is_authenticated:
        raise Http404
    project = project_list_for_user(user=user).filter(pk=project_id).first()
    if project is None:
        raise Http404
    allowed = project_list_owned(user=user) if manage else project_list_reviewable(user=user)
    if not allowed.filter(pk=project.pk).exists():
        raise PermissionDenied
    return project


def release_list_for_project(*, project: Project) -> QuerySet[Release]:
    """A project's releases, newest version first; callers checked the actor may read them."""
    return Release.objects.filter(project=project).select_related("created_by").order_by("-version")


def release_get_for_user(*, user: AbstractBaseUser | AnonymousUser, release_id: int) -> Release:
    """One release with its project and files; 404 if the project is hidden, 403 for annotators."""
    if not user.is_authenticated:
        raise Http404
    release = (
        Release.objects.select_related("project", "created_by")
        .prefetch_related("files")
        .filter(pk=release_id, project__in=project_list_for_user(user=user))
        .first()
    )
    if release is None:
        raise Http404
    if not project_list_reviewable(user=user).filter(pk=release.project_id).exists():
        raise PermissionDenied
    return release


def release_may_manage(*, user: AbstractBaseUser | AnonymousUser, project: Project) -> bool:
    """True when the user may create releases of the project (owners and staff)."""
    return user.is_authenticated and project_list_owned(user=user).filter(pk=project.pk).exists()


def annotator_pseudonym(*, project_id: int, user_id: int) -> str:
    """A stable per-project pseudonym for an annotator: 'w' + 10 hex digits of an HMAC."""
    message = f"release-annotator:{project_id}:{user_id}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return "w" + digest[:10]


def release_download_name(*, release: Release, fmt: str) -> str:
    """The attachment filename of a release file, e.g. 'reviews-v1.jsonl'."""
    slug = slugify(release.project.name) or f"project-{release.project_id}"
    return f"{slug}-v{release.version}.{fmt}"


def release_label_rows(*, release: Release) -> list[dict[str, Any]]:
    """Per label of a built release: consensus items, annotations, and share of items."""
    if not release.manifest:
        return []
    distribution = release.manifest["label_distribution"]
    items = release.manifest["counts"]["items"]
    labels = [label["value"] for label in release.manifest["config"]["labels"]]  # jsonb: keep order
    return [
        {
            "label": label,
            "items": distribution["consensus"].get(label, 0),
            "annotations": distribution["annotations"].get(label, 0),
            "share": distribution["consensus"].get(label, 0) / items if items else 0.0,
        }
        for label in labels
    ]


# --- Services -----------------------------------------------------------------------------------


@transaction.atomic
def release_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str = "",
    notes: str = "",
    include_raw: bool = False,
) -> Release:
    """Freeze the project's current items, annotations and settings as the next version.

    Locks the project row so concurrent calls get consecutive versions (the unique constraint
    on (project, version) backs this up). Enqueues the build on commit.
    """
    if not release_may_manage(user=user, project=project):
        raise PermissionDenied("Only the project's owners can create releases.")
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
        item_cutoff_id=item_cutoff,
        annotation_cutoff_id=annotation_cutoff,
        config_snapshot={key: getattr(locked, key) for key in SNAPSHOT_FIELDS},
        created_by=user,
    )
    release.full_clean(exclude=["project", "created_by"])
    release.save()
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


def release_build(*, release: Release) -> Release:
    """Build a release's files and manifest; a no-op when it is ready already.

    Runs in autocommit so progress updates are visible while it streams; the files only
    become visible (ReleaseFile rows, status ready) in one final transaction. Any failure
    marks the release failed with the error and exposes no files.
    """
    started = (
        Release.objects.filter(pk=release.pk)
        .exclude(status=Release.Status.READY)
        .update(status=Release.Status.BUILDING, progress=0.0, error="")
    )
    if started:
        try:
            with tempfile.TemporaryDirectory(prefix="release-") as tmp:
                _build_into(release=release, workdir=Path(tmp))
        except Exception as exc:
            logger.exception("Release %s failed to build", release.pk)
            Release.objects.filter(pk=release.pk).exclude(status=Release.Status.READY).update(
                status=Release.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
    release.refresh_from_db()
    return release


@dataclass
class ReleaseDownload:
    """An opened, checksum-verified release file and how to serve it."""

    file: IO[bytes]
    filename: str
    content_type: str
    sha256: str
    size: int


def release_file_open(*, release: Release, fmt: str) -> ReleaseDownload:
    """Open a ready release's file after checking its sha256 against the manifest."""
    if fmt not in DATA_FILES:
        allowed = ", ".join(DATA_FILES)
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
        filename=release_download_name(release=release, fmt=fmt),
        content_type=CONTENT_TYPES[fmt],
        sha256=expected,
        size=size,
    )


# --- Building -----------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _HashingWriter:
    """A text sink that writes UTF-8 to a file and hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(text)

    def close(self) -> dict[str, Any]:
        self._file.close()
        return {"sha256": self._hash.hexdigest(), "size": self.size}


# (item id, item data, is_gold, [(author id, label), ...]) for one released item
_Entry = tuple[int, Any, bool, list[tuple[int, str | None]]]


@dataclass
class _Totals:
    items: int = 0
    gold_items: int = 0
    annotations: int = 0
    workers: set[int] = field(default_factory=set)
    consensus: Counter[str] = field(default_factory=Counter)
    votes: Counter[str] = field(default_factory=Counter)
    patterns: Counter[tuple[int, ...]] = field(default_factory=Counter)
    pseudonyms: dict[int, str] = field(default_factory=dict)  # one HMAC per annotator


def _released_items(release: Release) -> QuerySet[Item]:
    voted = Annotation.objects.filter(item_id=OuterRef("pk"), id__lte=release.annotation_cutoff_id)
    return Item.objects.filter(
        project_id=release.project_id, id__lte=release.item_cutoff_id
    ).filter(Exists(voted))


def _stream(release: Release) -> Iterator[_Entry]:
    """Items in id order with their annotations, merged from two server-side cursors."""
    items = (
        _released_items(release)
        .order_by("id")
        .values_list("id", "data", "is_gold")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    annotations = (
        Annotation.objects.filter(
            project_id=release.project_id,
            id__lte=release.annotation_cutoff_id,
            item_id__lte=release.item_cutoff_id,
        )
        .order_by("item_id", "id")
        .annotate(label=KT("value__label"))  # only the label: no JSON decoding per row
        .values_list("item_id", "author_id", "label")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    pending = next(annotations, None)
    for item_id, data, is_gold in items:
        votes: list[tuple[int, str | None]] = []
        while pending is not None and pending[0] <= item_id:
            if pending[0] == item_id:
                votes.append((pending[1], pending[2]))
            pending = next(annotations, None)
        yield item_id, data, is_gold, votes


def _build_into(*, release: Release, workdir: Path) -> None:
    labels = [label["value"] for label in release.config_snapshot["labels"]]
    index = {label: i for i, label in enumerate(labels)}
    total = _released_items(release).count()
    header = ["item_id", "text", "label", "agreement", "num_annotations", "is_gold", "data"]
    if release.include_raw:
        header.append("annotations")
    jsonl = _HashingWriter(workdir / DATA_FILES["jsonl"])
    csv_sink = _HashingWriter(workdir / DATA_FILES["csv"])
    rows = csv.writer(csv_sink, lineterminator="\n")
    rows.writerow(header)
    totals, batch = _Totals(), []
    for entry in _stream(release):
        batch.append(entry)
        if len(batch) == CHUNK_SIZE:
            _write_batch(release, batch, index, labels, jsonl, rows, totals)
            batch = []
            progress = 0.95 * totals.items / total if total else 0.0
            Release.objects.filter(pk=release.pk).update(progress=round(progress, 4))
    _write_batch(release, batch, index, labels, jsonl, rows, totals)
    files = {fmt: {"format": fmt, "path": name} for fmt, name in DATA_FILES.items()}
    files["jsonl"].update(jsonl.close())
    files["csv"].update(csv_sink.close())
    manifest = _manifest(release, labels, totals, [files["csv"], files["jsonl"]])
    body = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    (workdir / MANIFEST_FILE).write_bytes(body)
    files["manifest"] = {
        "format": "manifest",
        "path": MANIFEST_FILE,
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    _publish(release=release, workdir=workdir, manifest=manifest, files=list(files.values()))


def _write_batch(
    release: Release,
    batch: list[_Entry],
    index: dict[str, int],
    labels: list[str],
    jsonl: _HashingWriter,
    rows: Any,
    totals: _Totals,
) -> None:
    if not batch:
        return
    counts = np.zeros((len(batch), len(labels)), dtype=np.int64)
    for row, (item_id, _data, _gold, votes) in enumerate(batch):
        for _author, label in votes:
            if label not in index:
                raise ApplicationError(
                    f"Item {item_id} has an annotation with label {label!r}, "
                    "which is not in the release's label set."
                )
            counts[row, index[label]] += 1
    winners, shares = vote_shares(counts)
    for row, (item_id, data, is_gold, votes) in enumerate(batch):
        label, agreement = labels[int(winners[row])], round(float(shares[row]), 4)
        record: dict[str, Any] = {
            "item_id": item_id,
            "data": data,
            "label": label,
            "agreement": agreement,
            "num_annotations": len(votes),
            "is_gold": is_gold,
        }
        csv_row = [item_id, _text(data), label, agreement, len(votes), _flag(is_gold), _dumps(data)]
        if release.include_raw:
            for author, _label in votes:
                if author not in totals.pseudonyms:
                    totals.pseudonyms[author] = annotator_pseudonym(
                        project_id=release.project_id, user_id=author
                    )
            record["annotations"] = [
                {"annotator": totals.pseudonyms[author], "label": vote} for author, vote in votes
            ]
            csv_row.append(_dumps(record["annotations"]))
        jsonl.write(_dumps(record) + "\n")
        rows.writerow(csv_row)
        totals.items += 1
        totals.gold_items += int(is_gold)
        totals.annotations += len(votes)
        totals.workers.update(author for author, _label in votes)
        totals.consensus[label] += 1
        totals.votes.update(vote for _author, vote in votes)
        totals.patterns[tuple(int(n) for n in counts[row])] += 1


def _text(data: Any) -> str:
    text = data.get("text", "") if isinstance(data, dict) else ""
    return text if isinstance(text, str) else _dumps(text)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _agreement(totals: _Totals, n_labels: int) -> dict[str, float | None]:
    patterns = sorted(totals.patterns.items())  # fixed row order: identical float sums
    if patterns:
        matrix = np.repeat(
            np.array([p for p, _n in patterns], dtype=np.int64),
            [n for _p, n in patterns],
            axis=0,
        )
    else:
        matrix = np.zeros((0, n_labels), dtype=np.int64)
    kappa, alpha = fleiss_kappa(matrix), krippendorff_alpha_nominal(matrix)
    return {
        "fleiss_kappa": None if kappa is None else round(kappa, 6),
        "krippendorff_alpha": None if alpha is None else round(alpha, 6),
    }


def _manifest(
    release: Release, labels: list[str], totals: _Totals, files: list[dict[str, Any]]
) -> dict[str, Any]:
    """Only values fixed when the release was created, so a rebuild gives the same bytes."""
    return {
        "format_version": 1,
        "project_id": release.project_id,
        "version": release.version,
        "tag": release.tag,
        "name": release.name,
        "notes": release.notes,
        "created_at": release.created_at.astimezone(UTC).isoformat(),
        "cutoffs": {
            "item_id": release.item_cutoff_id,
            "annotation_id": release.annotation_cutoff_id,
        },
        "include_raw": release.include_raw,
        "config": release.config_snapshot,
        "counts": {
            "items": totals.items,
            "gold_items": totals.gold_items,
            "annotations": totals.annotations,
            "workers": len(totals.workers),
        },
        "label_distribution": {
            "consensus": {label: totals.consensus[label] for label in labels},
            "annotations": {label: totals.votes[label] for label in labels},
        },
        "agreement": _agreement(totals, len(labels)),
        "consensus_method": CONSENSUS_METHOD,
        "files": files,
    }


def release_storage_dir(*, release: Release) -> str:
    """Where a release's files live in the default storage."""
    return f"releases/{release.project_id}/v{release.version}"


def _publish(
    *, release: Release, workdir: Path, manifest: dict[str, Any], files: list[dict[str, Any]]
) -> None:
    """Copy the built files to storage and mark the release ready, under its row lock."""
    with transaction.atomic():
        locked = Release.objects.select_for_update().get(pk=release.pk)
        if locked.status == Release.Status.READY:  # a concurrent build finished first
            return
        ReleaseFile.objects.filter(release=locked).delete()
        records = []
        for entry in files:
            path = f"{release_storage_dir(release=locked)}/{entry['path']}"
            if default_storage.exists(path):  # left by an earlier, unfinished build
                default_storage.delete(path)
            with (workdir / entry["path"]).open("rb") as handle:
                saved = default_storage.save(path, File(handle, name=entry["path"]))
            if saved != path:
                raise RuntimeError(f"Storage saved {path!r} as {saved!r}.")
            records.append(
                ReleaseFile(
                    release=locked,
                    format=entry["format"],
                    path=path,
                    sha256=entry["sha256"],
                    size=entry["size"],
                )
            )
        ReleaseFile.objects.bulk_create(records)
        locked.manifest = manifest
        locked.status = Release.Status.READY
        locked.progress = 1.0
        locked.error = ""
        locked.built_at = timezone.now()
        locked.save(update_fields=["manifest", "status", "progress", "error", "built_at"])

"""Turning an uploaded CSV or JSONL file into items: upload checks, validation, bulk insert.

Rules of the format (what users are told):

- CSV: UTF-8 (a BOM is allowed), a header row with a `text` column (matched without regard to
  case or surrounding spaces); an optional `gold` column; every other named column is kept in the
  item's data. Blank rows are skipped. Columns with an empty header name are dropped.
- JSONL (.jsonl or .ndjson): one JSON object per line with `text` (a non-empty string) and an
  optional `gold`; other keys are kept in the item's data. Blank lines are ignored, since editors
  and exporters add them freely and they carry no data; line numbers still count them.
- `gold`, when present and not empty, must be one of the project's label values; it is stored as
  {"label": value} on an item with is_gold=True and never copied into the item's data.
- Duplicates: the content hash is the SHA-256 of the text after Unicode NFC normalisation and
  stripping surrounding whitespace. Case is kept (no casefold): "US" and "us", or a shouted
  review and a calm one, are different items to label. Texts already in the project or seen
  earlier in the same file are skipped and counted in `duplicate_count`.

- At most MAX_ROWS rows per file (the import keeps a 32-byte hash per row in memory).

An import is all-or-nothing: the file is validated first (pass 1, progress committed as it goes,
so pages polling the job see it move) and items are inserted only when no row has an error
(pass 2, one transaction, COPY on PostgreSQL). Both passes stream the file from storage; pass 2
reuses pass 1's hashes and sends JSONL lines without a gold key to COPY as they are.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import IO, Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import ImportJob, Item, Project
from annotation.selectors import project_list_for_user

logger = logging.getLogger(__name__)

EXTENSIONS = {
    ".csv": ImportJob.Format.CSV,
    ".jsonl": ImportJob.Format.JSONL,
    ".ndjson": ImportJob.Format.JSONL,
}
MAX_ERRORS = 100  # errors stored on the job; the rest are only counted
# Validation commits its progress at most every PROGRESS_SECONDS (pages poll every second),
# looking at the clock every PROGRESS_EVERY rows.
PROGRESS_EVERY = 1_000
PROGRESS_SECONDS = 0.5
INSERT_BATCH = 5_000  # rows per duplicate lookup and per COPY / bulk_create
PRELOAD_MAX = 500_000  # projects up to this many items have their hashes read in one go
# Bounds the memory of one import (32-byte hashes kept per row): split bigger files.
MAX_ROWS = 1_000_000
TOO_MANY_ROWS = f"The file has more than {MAX_ROWS:,} rows; split it into smaller files."
DIGEST_SIZE = hashlib.sha256().digest_size
BOM = b"\xef\xbb\xbf"
# JSON escapes hiding what PostgreSQL's jsonb refuses: NUL and (unpaired) surrogates.
SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
COPY_COLUMNS = (
    "project_id",
    "data",
    "content_hash",
    "gold",
    "is_gold",
    "target",
    "slots_taken",
    "annotation_count",
    "created_at",
)

Issue = dict[str, Any]  # {"line": int | None, "field": str | None, "message": str}


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row of an import file: what becomes an item."""

    line: int
    text: str
    data: dict[str, Any]
    gold: str | None
    data_json: str | None = None  # `data` as JSON text, when the file already holds it


class _NotUtf8Error(Exception):
    def __init__(self, line: int, exc: UnicodeDecodeError) -> None:
        super().__init__(line)
        self.line = line
        self.exc = exc


def _digest(text: str) -> bytes:
    return hashlib.sha256(unicodedata.normalize("NFC", text).strip().encode()).digest()


def content_hash(text: str) -> str:
    """The duplicate key of an item's text: SHA-256 of the NFC-normalised, stripped text."""
    return _digest(text).hex()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _issue(line: int | None, field: str | None, message: str) -> Issue:
    return {"line": line, "field": field, "message": message}


# --- Upload --------------------------------------------------------------------------------


def import_job_create(
    *, project: Project, user: AbstractBaseUser, uploaded_file: UploadedFile
) -> ImportJob:
    """Check and store an upload, create its pending job and enqueue the import on commit.

    Refuses at once (ValidationError on "file") an empty or oversized file and an extension
    other than .csv, .jsonl or .ndjson. Callers check that `user` may manage `project`.
    """
    from annotation.tasks import import_run_task  # body import: tasks imports this module

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
            {"file": ["Upload a .csv or .jsonl file (.ndjson is read as JSONL)."]}
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


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def import_job_get_for_user(*, user: AbstractBaseUser, import_job_id: int) -> ImportJob:
    """One import job of a project the user can see in any role (DoesNotExist otherwise).

    Callers still check the role: only owners and reviewers may read an import.
    """
    return ImportJob.objects.select_related("project").get(
        pk=import_job_id, project__in=project_list_for_user(user=user).values("pk")
    )


# --- Reading -------------------------------------------------------------------------------


def _decoded_lines(stream: IO[bytes]) -> Iterator[str]:
    """The file's lines as text, with line endings kept; a BOM on line 1 is dropped."""
    for number, raw in enumerate(stream, start=1):
        chunk = raw[len(BOM) :] if number == 1 and raw.startswith(BOM) else raw
        try:
            yield chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8Error(number, exc) from None


def _gold_clean(value: Any, labels: frozenset[str], line: int) -> tuple[str | None, Issue | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, str) and value.strip() in labels:
        return value.strip(), None
    allowed = ", ".join(sorted(labels))
    return None, _issue(line, "gold", f"Unknown gold label {value!r}; use one of: {allowed}.")


def _text_issue(text: Any, line: int) -> Issue | None:
    if not isinstance(text, str) or not text.strip():
        return _issue(line, "text", "'text' must be a non-empty string.")
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"the number {literal} is too large")
    return number


# One decoder for every line (json.loads would build a new one per call).
DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _unstorable(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored (NUL characters, unpaired surrogates)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000)"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "contains an unpaired surrogate escape"
        return None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next((why for why in map(_unstorable, value) if why), None)
    return None


def _json_object(raw: str, line: int) -> tuple[dict[str, Any] | None, Issue | None]:
    try:
        obj = DECODER.decode(raw)
    except json.JSONDecodeError as exc:
        return None, _issue(line, None, f"Invalid JSON: {exc.msg} (column {exc.colno}).")
    except (ValueError, RecursionError) as exc:
        return None, _issue(line, None, f"Invalid JSON: {exc or 'nested too deeply'}.")
    if not isinstance(obj, dict):
        return None, _issue(line, None, "Each line must be a JSON object with a 'text' key.")
    if SUSPECT_ESCAPE.search(raw):  # cheap test first: these escapes are rare
        for key, value in obj.items():
            why = _unstorable([key, value])
            if why:
                return None, _issue(line, key, f"The value {why}, which cannot be stored.")
    return obj, None


def _jsonl_rows(lines: Iterable[str], labels: frozenset[str]) -> Iterator[ImportRow | Issue]:
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj, problem = _json_object(raw, line)
        if problem is not None or obj is None:
            yield problem or _issue(line, None, "Unreadable line.")
            continue
        if "text" not in obj:
            yield _issue(line, "text", "Missing 'text'.")
            continue
        problem = _text_issue(obj["text"], line)
        gold, gold_problem = _gold_clean(obj.get("gold"), labels, line)
        if problem or gold_problem:
            yield from (p for p in (problem, gold_problem) if p)
            continue
        if "gold" in obj:
            data = {key: value for key, value in obj.items() if key != "gold"}
            yield ImportRow(line=line, text=obj["text"], data=data, gold=gold)
        else:  # the line itself is the data's JSON: COPY sends it without encoding it again
            yield ImportRow(line=line, text=obj["text"], data=obj, gold=None, data_json=raw.strip())


def _csv_header(header: list[str]) -> tuple[list[str], Issue | None]:
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if "text" not in lowered:
        found = ", ".join(name for name in names if name) or "no named columns"
        return names, _issue(1, "text", f"The header has no 'text' column (found: {found}).")
    for special in ("text", "gold"):
        if lowered.count(special) > 1:
            return names, _issue(1, special, f"The header has more than one '{special}' column.")
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            return names, _issue(1, name, f"The header has two columns named {name!r}.")
        seen.add(name)
    return [
        {"text": "text", "gold": "gold"}.get(low, name)
        for name, low in zip(names, lowered, strict=True)
    ], None


def _csv_rows(lines: Iterable[str], labels: frozenset[str]) -> Iterator[ImportRow | Issue]:
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _issue(1, None, f"Unreadable CSV header: {exc}.")
        return
    names, problem = _csv_header(header)
    if problem:
        yield problem
        return
    while True:
        line = reader.line_num + 1  # the record starts on the line after the previous one
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _issue(line, None, f"Unreadable CSV row: {exc}.")
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(names):
            yield _issue(line, None, f"Expected {len(names)} fields, found {len(fields)}.")
            continue
        row = dict(zip(names, fields, strict=True))
        text = row["text"]
        problem = _text_issue(text, line)
        gold, gold_problem = _gold_clean(row.get("gold"), labels, line)
        if problem or gold_problem:
            yield from (p for p in (problem, gold_problem) if p)
            continue
        data = {"text": text}
        data.update((k, v) for k, v in row.items() if k and k not in ("text", "gold"))
        yield ImportRow(line=line, text=text, data=data, gold=gold)


def _rows(stream: IO[bytes], job: ImportJob, labels: frozenset[str]) -> Iterator[ImportRow | Issue]:
    """Parse the file, yielding valid rows and issues in file order."""
    lines = _decoded_lines(stream)
    if job.format == ImportJob.Format.CSV:
        return _csv_rows(lines, labels)
    return _jsonl_rows(lines, labels)


def _open(job: ImportJob) -> IO[bytes]:
    return job.file.storage.open(job.file.name, "rb")


def _count_lines(job: ImportJob) -> int:
    """Lines in the file (an upper bound on rows, for the progress bar); reads in chunks."""
    count, last = 0, b"\n"
    with _open(job) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


# --- Running -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """What pass 1 learnt for pass 2: every valid row's content hash, in file order."""

    rows: int = 0
    digests: bytearray = field(default_factory=bytearray)  # DIGEST_SIZE bytes per row
    rebuild: set[int] = field(default_factory=set)  # rows whose data is not their line as is

    def add(self, row: ImportRow) -> None:
        self.digests += _digest(row.text)
        if row.data_json is None:
            self.rebuild.add(self.rows)
        self.rows += 1

    def digest(self, index: int) -> bytes:
        return bytes(self.digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE])


class _NewItem(NamedTuple):
    data_json: str
    digest: bytes
    gold: str | None


Writer = Callable[[Project, list[_NewItem]], None]


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


def _not_utf8(exc: _NotUtf8Error) -> Issue:
    bad = exc.exc.object[exc.exc.start : exc.exc.start + 1].hex().upper()
    return _issue(
        exc.line,
        None,
        f"The file is not UTF-8: byte 0x{bad} at position {exc.exc.start + 1} of this line. "
        "Save the file as UTF-8 and upload it again.",
    )


def _validate(job: ImportJob) -> tuple[_Plan, list[Issue]]:
    """Pass 1: read every row; return the plan for pass 2 and the first MAX_ERRORS issues."""
    estimate = _count_lines(job) - (job.format == ImportJob.Format.CSV)
    _progress(job, total_rows=max(estimate, 0))
    labels = frozenset(job.project.label_values)
    plan, hidden = _Plan(), 0
    errors: list[Issue] = []
    with _open(job) as stream:
        try:
            hidden = _scan(_rows(stream, job, labels), job, plan, errors, estimate)
        except _NotUtf8Error as exc:
            errors.append(_not_utf8(exc))
    if hidden:
        errors.append(_issue(None, None, f"…and {hidden} more errors not shown."))
    if not plan.rows and not errors:
        errors.append(_issue(None, None, "The file has no rows to import."))
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


def _insert(job: ImportJob, plan: _Plan) -> None:
    """Pass 2: insert every new row in one transaction, skipping duplicates.

    Locks the project row first, then the job row, so two imports into one project never
    race on the duplicate check, and a second delivery of the same job finds it finished.
    """
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=job.project_id)
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != ImportJob.Status.RUNNING:
            return
        writer: Writer = _copy_writer if connection.vendor == "postgresql" else _bulk_create_writer
        labels = frozenset(project.label_values)
        known = _KnownHashes(project)
        created = duplicates = 0
        with _open(job) as stream:
            for batch in _chunks(_new_items(stream, job, plan, labels), INSERT_BATCH):
                fresh = known.keep_new(batch)
                writer(project, fresh)
                created += len(fresh)
                duplicates += len(batch) - len(fresh)
        _finish(
            job,
            status=ImportJob.Status.SUCCEEDED,
            errors=[],
            total_rows=plan.rows,
            processed_rows=plan.rows,
            created_count=created,
            duplicate_count=duplicates,
        )


def _validated(entries: Iterable[ImportRow | Issue]) -> Iterator[ImportRow]:
    for entry in entries:
        if not isinstance(entry, ImportRow):  # validated in pass 1; the file cannot change
            raise RuntimeError(f"Row changed after validation: {entry}")
        yield entry


def _new_items(
    stream: IO[bytes], job: ImportJob, plan: _Plan, labels: frozenset[str]
) -> Iterator[_NewItem]:
    """The rows again, with pass 1's hashes. A JSONL line whose data is the line itself (no
    gold key) is passed on as it is, not parsed a second time: half of the work on big files.
    """
    if job.format == ImportJob.Format.CSV:
        for index, row in enumerate(_validated(_rows(stream, job, labels))):
            yield _NewItem(_dumps(row.data), plan.digest(index), row.gold)
        return
    index = 0
    for raw in _decoded_lines(stream):
        if not raw.strip():
            continue
        if index in plan.rebuild:
            row = next(_validated(_jsonl_rows([raw], labels)))
            yield _NewItem(_dumps(row.data), plan.digest(index), row.gold)
        else:
            yield _NewItem(raw.strip(), plan.digest(index), None)
        index += 1
    if index != plan.rows:
        raise RuntimeError(f"The file changed after validation: {index} rows, not {plan.rows}.")


def _chunks(items: Iterator[_NewItem], size: int) -> Iterator[list[_NewItem]]:
    batch: list[_NewItem] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _KnownHashes:
    """Content hashes already in the project or met earlier in the file.

    A project of up to PRELOAD_MAX items is read once (one index-only scan); a bigger one is
    asked batch by batch. Callers hold the project's row lock, so the answer cannot go stale.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.seen: set[bytes] = set()
        count = project.items.count()
        self.ask_database = count > PRELOAD_MAX
        if 0 < count <= PRELOAD_MAX:
            hashes = project.items.values_list("content_hash", flat=True)
            self.seen.update(_unhex(value) for value in hashes.iterator(chunk_size=10_000))

    def keep_new(self, batch: list[_NewItem]) -> list[_NewItem]:
        """The items of `batch` whose text is new, remembering them."""
        fresh = []
        for item in batch:
            if item.digest not in self.seen:
                self.seen.add(item.digest)
                fresh.append(item)
        if self.ask_database and fresh:
            existing = _existing_hashes(self.project, [item.digest.hex() for item in fresh])
            fresh = [item for item in fresh if item.digest.hex() not in existing]
        return fresh


def _unhex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:  # not one of ours: it can never equal a SHA-256 digest
        return value.encode()


def _existing_hashes(project: Project, digests: list[str]) -> set[str]:
    """Which of these content hashes the project already has (one query)."""
    if connection.vendor == "postgresql":
        # One array parameter: thousands of IN placeholders cost more to build than to run.
        sql = (
            f"SELECT content_hash FROM {Item._meta.db_table} "  # noqa: S608
            "WHERE project_id = %s AND content_hash = ANY(%s)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [project.pk, digests])
            return {digest for (digest,) in cursor.fetchall()}
    found = Item.objects.filter(project=project, content_hash__in=digests)
    return set(found.values_list("content_hash", flat=True))


def _copy_writer(project: Project, items: list[_NewItem]) -> None:
    """PostgreSQL: stream the rows with COPY (psycopg 3), an order of magnitude over INSERT."""
    if not items:
        return
    now, project_id, target = timezone.now(), project.pk, project.overlap
    sql = f"COPY {Item._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN"  # noqa: S608
    with connection.cursor() as cursor, cursor.copy(sql) as copy:
        for data, digest, gold in items:
            if gold is None:
                copy.write_row((project_id, data, digest.hex(), None, False, target, 0, 0, now))
            else:
                label = _dumps({"label": gold})
                copy.write_row((project_id, data, digest.hex(), label, True, target, 0, 0, now))


def _bulk_create_writer(project: Project, items: list[_NewItem]) -> None:
    """Other databases (SQLite in development and tests): bulk_create in batches."""
    Item.objects.bulk_create(
        [
            Item(
                project=project,
                data=json.loads(data),
                content_hash=digest.hex(),
                gold={"label": gold} if gold is not None else None,
                is_gold=gold is not None,
                target=project.overlap,
            )
            for data, digest, gold in items
        ],
        batch_size=1_000,
    )

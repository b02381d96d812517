"""Importing labels collected elsewhere into a project, to vet them with the quality engine.

The file is a CSV (UTF-8, a BOM is allowed) with the header `item,worker,label` and an optional
`text` column (column names are matched without regard to case or surrounding spaces; other
columns are ignored). One row per answer: the external item id, the external worker id and one
of the project's label values. Blank rows are skipped.

- Items are matched by the external id kept in `Item.data["external_id"]`; an unknown id creates
  an item with `data={"text": text or "", "external_id": id}`. Its content hash is the one
  regular imports use (annotation.imports.content_hash) when the text is non-empty and not in
  the project yet, else a hash of the external id (namespaced, so it never equals a text hash):
  empty or repeated texts do not clash with the project's one-item-per-text rule. New items
  want max(project overlap, labels imported) annotations; matched items get their counters
  raised by what is imported, and their target raised to match.
- Workers become pseudonymous, inactive users with an unusable password, named
  `ext-<project id>-<12 hex of an HMAC of the worker id>` (keyed by SECRET_KEY, salted per
  purpose, mixed with the project id): the same worker id maps to the same user within a
  project, and the external id is never stored in clear.
- Importing the same file again does not double the labels: a row whose item already holds an
  annotation by that pseudonymous worker is skipped and counted; repeats inside one file are
  kept as given (some sources have them).
- All or nothing: every problem is reported with its line and field, and nothing is written
  unless the whole file is valid. Then the quality recompute is scheduled.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import is_password_usable, make_password
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils.crypto import salted_hmac

from annotation.imports import content_hash
from annotation.models import Annotation, Item, Project
from core.exceptions import ApplicationError
from quality.services import quality_recompute_schedule

__all__ = [
    "LabelImportError",
    "LabelImportResult",
    "label_import_run",
    "worker_pseudonym",
]

logger = logging.getLogger(__name__)

REQUIRED = ("item", "worker", "label")
MAX_ROWS = 500_000  # the file is read in the request: bounds its time and memory
MAX_ERRORS = 100  # problems listed; the rest are only counted
BATCH = 5_000
MAX_COUNTER = 32_767  # the item counters are PositiveSmallIntegerField
PSEUDONYM_SALT = "assay.quality.label_import.worker"
BOM = b"\xef\xbb\xbf"

Issue = dict[str, Any]  # {"line": int | None, "field": str | None, "message": str}


@dataclass(frozen=True)
class LabelImportResult:
    """What an import wrote."""

    rows: int
    items_created: int
    items_matched: int
    workers: int
    workers_created: int
    annotations_created: int
    duplicates_skipped: int


class LabelImportError(ApplicationError):
    """The file has problems; nothing was imported. `errors` lists them by line and field."""

    code = "invalid_file"

    def __init__(self, errors: list[Issue]) -> None:
        count = len(errors)
        super().__init__(
            f"The file has {count} problem{'s' if count != 1 else ''}; nothing was imported.",
            fields={"file": errors},
        )
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    item: str
    worker: str
    label: str
    text: str


def worker_pseudonym(*, project_id: int, worker: str) -> str:
    """The username an external worker id gets in a project (stable, not reversible)."""
    digest = salted_hmac(PSEUDONYM_SALT, f"{project_id}\x00{worker}", algorithm="sha256")
    return f"ext-{project_id}-{digest.hexdigest()[:12]}"


def label_import_run(
    *, project: Project, file: IO[bytes], uploaded_by: AbstractBaseUser
) -> LabelImportResult:
    """Validate the whole CSV, then write its items, pseudonymous workers and annotations.

    Raises LabelImportError (nothing written) listing every bad line. Holds the project's row
    lock while writing (as item imports do, so content-hash checks do not race) and the matched
    items' row locks in primary-key order while raising their counters. Side effect: schedules
    the project's quality recompute after commit. Callers check that `uploaded_by` owns it.
    """
    _check_size(file)
    rows, errors = _parse(file, labels=frozenset(project.label_values))
    if errors:
        raise LabelImportError(errors)
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        workers, workers_created = _workers_get_or_create(project=project, rows=rows)
        item_ids, items_created = _items_get_or_create(project=project, rows=rows)
        result = _annotations_write(project=project, rows=rows, item_ids=item_ids, workers=workers)
        quality_recompute_schedule(project_id=project.pk)
    logger.info(
        "Label import into project %s by user %s: %s annotations, %s skipped",
        project.pk,
        uploaded_by.pk,
        result[0],
        result[1],
    )
    return LabelImportResult(
        rows=len(rows),
        items_created=items_created,
        items_matched=len(item_ids) - items_created,
        workers=len(workers),
        workers_created=workers_created,
        annotations_created=result[0],
        duplicates_skipped=result[1],
    )


# --- Reading ---------------------------------------------------------------------------------


def _issue(line: int | None, field: str | None, message: str) -> Issue:
    return {"line": line, "field": field, "message": message}


def _check_size(file: IO[bytes]) -> None:
    size = getattr(file, "size", None)
    if size == 0:
        raise LabelImportError([_issue(None, "file", "The file is empty.")])
    limit = settings.ASSAY_IMPORT_MAX_BYTES
    if size is not None and size > limit:
        megabytes = f"{size / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB"
        raise LabelImportError([_issue(None, "file", f"The file is {megabytes}.")])


class _NotUtf8Error(Exception):
    def __init__(self, line: int, exc: UnicodeDecodeError) -> None:
        super().__init__(line)
        self.issue = _issue(
            line,
            None,
            f"The file is not UTF-8: byte 0x{exc.object[exc.start : exc.start + 1].hex().upper()}"
            f" at position {exc.start + 1} of this line. Save it as UTF-8 and upload it again.",
        )


def _lines(file: IO[bytes]) -> Iterator[str]:
    if hasattr(file, "seek"):
        file.seek(0)
    for number, raw in enumerate(file, start=1):
        chunk = raw[len(BOM) :] if number == 1 and raw.startswith(BOM) else raw
        try:
            yield chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8Error(number, exc) from None


def _header(names: list[str]) -> tuple[dict[str, int], Issue | None]:
    lowered = [name.strip().lower() for name in names]
    found = ", ".join(name.strip() for name in names if name.strip()) or "no named columns"
    for column in (*REQUIRED, "text"):
        if lowered.count(column) > 1:
            return {}, _issue(1, column, f"The header has more than one '{column}' column.")
    for column in REQUIRED:
        if column not in lowered:
            return {}, _issue(
                1,
                column,
                f"The header has no '{column}' column (found: {found}); "
                "the header must be item,worker,label (and optionally text).",
            )
    columns = {column: lowered.index(column) for column in (*REQUIRED, "text") if column in lowered}
    return columns, None


def _row_issues(row: _Row, labels: frozenset[str]) -> Iterator[Issue]:
    if not row.item:
        yield _issue(row.line, "item", "The item id is empty.")
    if not row.worker:
        yield _issue(row.line, "worker", "The worker id is empty.")
    if not row.label:
        yield _issue(row.line, "label", "The label is empty.")
    elif row.label not in labels:
        allowed = ", ".join(sorted(labels))
        yield _issue(row.line, "label", f"Unknown label {row.label!r}; use one of: {allowed}.")
    for field in ("item", "text"):
        if "\x00" in getattr(row, field):
            yield _issue(row.line, field, "The value contains a NUL character.")


def _records(reader: Any, columns: dict[str, int], width: int) -> Iterator[_Row | Issue]:
    """The rows after the header, from the csv reader that read it (so line numbers hold)."""
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _issue(line, None, f"Unreadable CSV row: {exc}.")
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != width:
            yield _issue(line, None, f"Expected {width} fields, found {len(fields)}.")
            continue
        text = fields[columns["text"]] if "text" in columns else ""
        yield _Row(
            line=line,
            item=fields[columns["item"]].strip(),
            worker=fields[columns["worker"]].strip(),
            label=fields[columns["label"]].strip(),
            text=text,
        )


def _parse(file: IO[bytes], *, labels: frozenset[str]) -> tuple[list[_Row], list[Issue]]:
    """Every valid row, and the first MAX_ERRORS problems (plus a count of the rest)."""
    rows: list[_Row] = []
    errors: list[Issue] = []
    texts: dict[str, tuple[int, str]] = {}  # item id -> (line, first non-empty text)
    hidden = 0
    lines = _lines(file)
    try:
        try:
            reader = csv.reader(lines)
            header = next(reader)
        except StopIteration:
            return [], [_issue(None, "file", "The file is empty.")]
        except csv.Error as exc:
            return [], [_issue(1, None, f"Unreadable CSV header: {exc}.")]
        columns, problem = _header(header)
        entries: Iterable[_Row | Issue] = (
            [problem] if problem else _records(reader, columns, len(header))
        )
        for entry in entries:
            issues = list(_row_issues(entry, labels)) if isinstance(entry, _Row) else [entry]
            if isinstance(entry, _Row) and entry.text and not issues:
                first = texts.setdefault(entry.item, (entry.line, entry.text))
                if first[1] != entry.text:
                    issues.append(
                        _issue(
                            entry.line,
                            "text",
                            f"The text of item {entry.item!r} differs from line {first[0]}.",
                        )
                    )
            if isinstance(entry, _Row) and not issues:
                if len(rows) == MAX_ROWS:
                    errors.append(
                        _issue(entry.line, None, f"More than {MAX_ROWS:,} rows; split the file.")
                    )
                    break
                rows.append(entry)
            for issue in issues:
                if len(errors) < MAX_ERRORS:
                    errors.append(issue)
                else:
                    hidden += 1
    except _NotUtf8Error as exc:
        errors.append(exc.issue)
    if hidden:
        errors.append(_issue(None, None, f"…and {hidden} more problems not shown."))
    if not rows and not errors:
        errors.append(_issue(None, "file", "The file has no rows to import."))
    rows = [_with_text(row, texts) for row in rows] if texts else rows
    return rows, errors


def _with_text(row: _Row, texts: dict[str, tuple[int, str]]) -> _Row:
    text = texts.get(row.item, (0, ""))[1]
    if text == row.text:
        return row
    return _Row(line=row.line, item=row.item, worker=row.worker, label=row.label, text=text)


# --- Writing ---------------------------------------------------------------------------------


def _chunks(values: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _workers_get_or_create(*, project: Project, rows: list[_Row]) -> tuple[dict[str, int], int]:
    """Map each external worker id to its pseudonymous user's id; return (map, created)."""
    user_model = get_user_model()
    first_line: dict[str, int] = {}
    for row in rows:
        first_line.setdefault(row.worker, row.line)
    names = {
        worker: worker_pseudonym(project_id=project.pk, worker=worker) for worker in first_line
    }
    existing: dict[str, tuple[int, bool, str]] = {}
    for chunk in _chunks(list(names.values())):
        for pk, username, active, password in user_model.objects.filter(
            username__in=chunk
        ).values_list("pk", "username", "is_active", "password"):
            existing[username] = (pk, active, password)
    clashes = [
        _issue(first_line[worker], "worker", "This worker's pseudonym belongs to a real account.")
        for worker, name in names.items()
        if name in existing and (existing[name][1] or is_password_usable(existing[name][2]))
    ]
    if clashes:
        raise LabelImportError(clashes[:MAX_ERRORS])
    missing = [name for name in dict.fromkeys(names.values()) if name not in existing]
    user_model.objects.bulk_create(
        [
            user_model(username=name, is_active=False, password=make_password(None))
            for name in missing
        ],
        batch_size=BATCH,
    )
    for chunk in _chunks(missing):
        for pk, username in user_model.objects.filter(username__in=chunk).values_list(
            "pk", "username"
        ):
            existing[username] = (pk, False, "")
    return {worker: existing[name][0] for worker, name in names.items()}, len(missing)


def _external_hash(external_id: str, attempt: int) -> str:
    # NUL never occurs in an item's text (rejected on import), so this never equals a text hash.
    key = (
        f"\x00external\x00{external_id}\x00{attempt}"
        if attempt
        else f"\x00external\x00{external_id}"
    )
    return hashlib.sha256(key.encode()).hexdigest()


def _items_get_or_create(*, project: Project, rows: list[_Row]) -> tuple[dict[str, int], int]:
    """Map each external item id to an item id, creating missing items; return (map, created)."""
    texts: dict[str, str] = {}
    for row in rows:
        texts.setdefault(row.item, row.text)
    known: dict[str, int] = {}
    for pk, external_id in (
        Item.objects.filter(project=project, data__has_key="external_id")
        .order_by("pk")
        .values_list("pk", "data__external_id")
    ):
        if isinstance(external_id, str) and external_id in texts:
            known.setdefault(external_id, pk)
    new_ids = [external_id for external_id in texts if external_id not in known]
    planned: dict[str, str] = {}
    for external_id in new_ids:
        text = texts[external_id]
        planned[external_id] = (
            content_hash(text) if text.strip() else _external_hash(external_id, 0)
        )
    taken: set[str] = set()
    for chunk in _chunks(list(planned.values())):
        taken.update(
            Item.objects.filter(project=project, content_hash__in=chunk).values_list(
                "content_hash", flat=True
            )
        )
    hashes: dict[str, str] = {}
    for external_id, digest in planned.items():
        attempt = 0
        while digest in taken:  # the text is in the project already, or repeated in the file
            digest = _external_hash(external_id, attempt)
            attempt += 1
        taken.add(digest)
        hashes[external_id] = digest
    created = Item.objects.bulk_create(
        [
            Item(
                project=project,
                data={"text": texts[external_id], "external_id": external_id},
                content_hash=hashes[external_id],
                target=project.overlap,
            )
            for external_id in new_ids
        ],
        batch_size=BATCH,
    )
    known.update((external_id, item.pk) for external_id, item in zip(new_ids, created, strict=True))
    return known, len(created)


def _annotations_write(
    *, project: Project, rows: list[_Row], item_ids: dict[str, int], workers: dict[str, int]
) -> tuple[int, int]:
    """Insert the annotations not already in the project and raise the item counters."""
    pairs = {(item_ids[row.item], workers[row.worker]) for row in rows}
    present: set[tuple[int, int]] = set()
    item_list = sorted({item for item, _ in pairs})
    author_list = sorted({author for _, author in pairs})
    for chunk in _chunks(item_list):
        present.update(
            Annotation.objects.filter(
                project=project, item_id__in=chunk, author_id__in=author_list
            ).values_list("item_id", "author_id")
        )
    fresh = [row for row in rows if (item_ids[row.item], workers[row.worker]) not in present]
    per_item = Counter(item_ids[row.item] for row in fresh)
    _item_counters_raise(per_item)
    Annotation.objects.bulk_create(
        [
            Annotation(
                project=project,
                item_id=item_ids[row.item],
                author_id=workers[row.worker],
                value={"label": row.label},
            )
            for row in fresh
        ],
        batch_size=BATCH,
    )
    return len(fresh), len(rows) - len(fresh)


def _item_counters_raise(per_item: Counter[int]) -> None:
    """Add the imported labels to each item's slots and annotations, raising its target."""
    ids = sorted(per_item)
    locked: dict[int, int] = {}
    for chunk in _chunks(ids):  # primary-key order, as every item lock is taken
        locked.update(
            Item.objects.filter(pk__in=chunk)
            .order_by("pk")
            .select_for_update()
            .values_list("pk", "slots_taken")
        )
    too_many = [pk for pk in ids if locked[pk] + per_item[pk] > MAX_COUNTER]
    if too_many:
        raise LabelImportError(
            [_issue(None, "item", f"An item would get more than {MAX_COUNTER} labels.")]
        )
    by_count: dict[int, list[int]] = defaultdict(list)
    for pk, count in per_item.items():
        by_count[count].append(pk)
    for count, pks in sorted(by_count.items()):
        for chunk in _chunks(sorted(pks)):
            Item.objects.filter(pk__in=chunk).update(
                slots_taken=F("slots_taken") + count,
                annotation_count=F("annotation_count") + count,
                target=Greatest(F("target"), F("slots_taken") + count),
            )

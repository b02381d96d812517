"""Pass 2 of an import: the validated rows again, new texts written with COPY or bulk_create.

Duplicates (texts already in the project or met earlier in the file) are skipped here, by
content hash; the caller holds the project's row lock, so no other import races the check.
Rows' predictions are stored after their batch's items (`predicting.predictions_store`); rows
without any cost nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, NamedTuple

from django.db import connection
from django.utils import timezone

from annotation.imports.parsing import (
    ImportRow,
    Issue,
    _decoded_lines,
    _dumps,
    _jsonl_rows,
    _open,
    _Plan,
    _rows,
)
from annotation.imports.predicting import RowRefusedError, predictions_store
from annotation.imports.rules import RowRules
from annotation.models import ImportJob, Item, Project

INSERT_BATCH = 5_000  # rows per duplicate lookup and per COPY / bulk_create
PRELOAD_MAX = 500_000  # projects up to this many items have their hashes read in one go
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


class _NewItem(NamedTuple):
    data_json: str
    digest: bytes
    gold_json: str | None  # the gold answer in stored form, as JSON
    line: int = 0
    predictions: tuple[dict, ...] = ()  # cleaned, see ImportRow.predictions


Writer = Callable[[Project, list[_NewItem]], None]


def _write_new_rows(job: ImportJob, project: Project, plan: _Plan) -> tuple[int, int]:
    """Write every new row of the file; return (created, duplicates skipped).

    Runs inside the caller's transaction, which holds the project's row lock.
    """
    rules = RowRules(project)
    with _open(job) as stream:
        return _write_items(project, _new_items(stream, job, plan, rules))


def _write_items(project: Project, items: Iterable[_NewItem]) -> tuple[int, int]:
    """Write the items new to the project and the rows' predictions; return (created,
    duplicates skipped). Raises RowRefusedError when a row's prediction lands on a gold item.
    """
    writer: Writer = _copy_writer if connection.vendor == "postgresql" else _bulk_create_writer
    known = _KnownHashes(project)
    created = duplicates = 0
    refused = []
    for batch in _chunks(iter(items), INSERT_BATCH):
        fresh = known.keep_new(batch)
        writer(project, fresh)
        created += len(fresh)
        duplicates += len(batch) - len(fresh)
        refused += predictions_store(
            project,
            [(item.line, item.digest, item.predictions) for item in batch if item.predictions],
        )
    if refused:
        raise RowRefusedError(refused)
    return created, duplicates


def _gold_json(row: ImportRow) -> str | None:
    return None if row.gold is None else _dumps(row.gold)


def _new_item(row: ImportRow, digest: bytes, line: int | None = None) -> _NewItem:
    line = row.line if line is None else line
    return _NewItem(_dumps(row.data), digest, _gold_json(row), line, row.predictions)


def _validated(entries: Iterable[ImportRow | Issue]) -> Iterator[ImportRow]:
    for entry in entries:
        if not isinstance(entry, ImportRow):  # validated in pass 1; the file cannot change
            raise RuntimeError(f"Row changed after validation: {entry}")
        yield entry


def _new_items(
    stream: IO[bytes], job: ImportJob, plan: _Plan, rules: RowRules
) -> Iterator[_NewItem]:
    """The rows again, with pass 1's hashes. A JSONL line whose data is the line itself (no
    gold or predictions key) is passed on as it is, not parsed a second time: half of the
    work on big files.
    """
    if job.format == ImportJob.Format.CSV:
        for index, row in enumerate(_validated(_rows(stream, job, rules))):
            yield _new_item(row, plan.digest(index))
        return
    index = 0
    for line, raw in enumerate(_decoded_lines(stream), start=1):
        if not raw.strip():
            continue
        if index in plan.rebuild:
            row = next(_validated(_jsonl_rows([raw], rules)))
            yield _new_item(row, plan.digest(index), line)
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
        for data, digest, gold, *_rest in items:
            is_gold = gold is not None
            copy.write_row((project_id, data, digest.hex(), gold, is_gold, target, 0, 0, now))


def _bulk_create_writer(project: Project, items: list[_NewItem]) -> None:
    """Other databases (SQLite in development and tests): bulk_create in batches."""
    Item.objects.bulk_create(
        [
            Item(
                project=project,
                data=json.loads(data),
                content_hash=digest.hex(),
                gold=json.loads(gold) if gold is not None else None,
                is_gold=gold is not None,
                target=project.overlap,
            )
            for data, digest, gold, *_rest in items
        ],
        batch_size=1_000,
    )

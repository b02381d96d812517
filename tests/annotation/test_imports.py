from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from annotation.imports import content_hash, import_job_create, import_run, inserting, services
from annotation.models import ImportJob, Item
from annotation.tasks import import_run_task
from tests.annotation.factories import ItemFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def upload(name: str, content: bytes | str) -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data)


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def run(project, owner, name: str, content: bytes | str) -> ImportJob:
    job = import_job_create(project=project, user=owner, uploaded_file=upload(name, content))
    return import_run(job=job)


def errors_of(job: ImportJob) -> list[tuple]:
    return [(e["line"], e["field"]) for e in job.errors]


# --- Happy paths -----------------------------------------------------------------------------


def test_import_jsonl_creates_items_with_data_gold_and_target(project, owner):
    content = jsonl(
        {"text": "Great phone", "source": "shop", "stars": 5},
        {"text": "Broke in a day", "gold": "negative"},
    )

    job = run(project, owner, "reviews.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.total_rows, job.processed_rows, job.created_count, job.duplicate_count) == (
        2,
        2,
        2,
        0,
    )
    assert job.progress == 1.0
    assert job.finished_at is not None
    assert job.errors == []
    regular, gold = Item.objects.filter(project=project).order_by("id")
    assert regular.data == {"text": "Great phone", "source": "shop", "stars": 5}
    assert (regular.gold, regular.is_gold, regular.target) == (None, False, project.overlap)
    assert gold.data == {"text": "Broke in a day"}  # the answer never reaches workers' data
    assert (gold.gold, gold.is_gold) == ({"label": "negative"}, True)
    assert regular.content_hash == content_hash("Great phone")


def test_import_csv_keeps_extra_columns_and_parses_gold(project, owner):
    content = 'id,Text,gold,lang\r\na1,Loved it,positive,en\r\na2,"Multi\nline, with comma",,fr\r\n'

    job = run(project, owner, "reviews.CSV", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert job.format == ImportJob.Format.CSV
    first, second = Item.objects.filter(project=project).order_by("id")
    assert first.data == {"text": "Loved it", "id": "a1", "lang": "en"}
    assert (first.gold, first.is_gold) == ({"label": "positive"}, True)
    assert second.data == {"text": "Multi\nline, with comma", "id": "a2", "lang": "fr"}
    assert (second.gold, second.is_gold) == (None, False)


def test_import_accepts_a_bom_and_the_ndjson_extension(project, owner):
    content = "\ufeff" + jsonl({"text": "café au lait"})

    job = run(project, owner, "export.ndjson", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert job.format == ImportJob.Format.JSONL
    assert Item.objects.get(project=project).data == {"text": "café au lait"}


def test_import_csv_with_bom_finds_the_text_column(project, owner):
    job = run(project, owner, "bom.csv", "\ufefftext\nhello\n")

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert Item.objects.get(project=project).text == "hello"


def test_import_jsonl_ignores_blank_lines_but_counts_them_in_line_numbers(project, owner):
    content = '{"text": "one"}\n\n   \n{"text": ""}\n'

    job = run(project, owner, "gaps.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(4, "text")]


# --- Bad files: each names the line and field -------------------------------------------------


def test_import_csv_without_text_column_fails_on_the_header(project, owner):
    job = run(project, owner, "bad.csv", "body,gold\nhello,positive\n")

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(1, "text")]
    assert "body, gold" in job.errors[0]["message"]
    assert Item.objects.count() == 0


def test_import_invalid_json_names_the_line(project, owner):
    content = '{"text": "fine"}\n{"text": "fine too"}\n{"text": "broken"\n'

    job = run(project, owner, "bad.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(3, None)]
    assert job.errors[0]["message"].startswith("Invalid JSON")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("e.jsonl", '{"text": "ok"}\n{"text": "   "}\n', [(2, "text")]),
        ("e.jsonl", '{"text": "ok"}\n{"other": 1}\n{"text": 5}\n', [(2, "text"), (3, "text")]),
        ("e.jsonl", '["text"]\n', [(1, None)]),
        ("e.csv", "text,gold\nok,\n ,positive\n", [(3, "text")]),
        ("e.csv", "text,lang\nok,en\nmissing a field\n", [(3, None)]),
        ("e.csv", 'text,lang\n"two\nlines",en\n,fr\n', [(4, "text")]),
    ],
)
def test_import_empty_or_missing_text_names_line_and_field(project, owner, name, content, expected):
    job = run(project, owner, name, content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == expected
    assert Item.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("g.jsonl", '{"text": "a", "gold": "positive"}\n{"text": "b", "gold": "meh"}\n', 2),
        ("g.csv", "text,gold\na,positive\nb,meh\n", 3),  # the header is line 1
    ],
)
def test_import_unknown_gold_label_names_line_and_field(project, owner, name, content, line):
    job = run(project, owner, name, content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(line, "gold")]
    assert "'meh'" in job.errors[0]["message"]
    assert "positive" in job.errors[0]["message"]


def test_import_gold_must_be_a_string_label(project, owner):
    job = run(project, owner, "g.jsonl", '{"text": "a", "gold": 1}\n')

    assert errors_of(job) == [(1, "gold")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"text": "a", "score": NaN}', (1, None)),
        ('{"text": "nul \\u0000 inside"}', (1, "text")),
        ('{"text": "ok", "meta": {"k": ["lone \\ud800 surrogate"]}}', (1, "meta")),
        ("[" * 100_000 + "]" * 100_000, (1, None)),
        ('{"text": "a", "big": 1e999}', (1, None)),
    ],
)
def test_import_refuses_json_that_postgresql_cannot_store(project, owner, line, expected):
    job = run(project, owner, "odd.jsonl", line + "\n")

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [expected]


def test_import_keeps_escaped_emoji_and_unicode(project, owner):
    job = run(project, owner, "emoji.jsonl", '{"text": "smile \\ud83d\\ude00 caf\\u00e9"}\n')

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert Item.objects.get(project=project).text == "smile \U0001f600 café"


def test_import_non_utf8_bytes_fail_naming_the_line(project, owner):
    content = b'{"text": "ok"}\n{"text": "na\xefve caf\xe9"}\n'

    job = run(project, owner, "latin1.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(2, None)]
    assert "UTF-8" in job.errors[0]["message"]
    assert Item.objects.count() == 0


def test_import_file_with_only_a_header_fails(project, owner):
    job = run(project, owner, "empty.csv", "text,gold\n")

    assert job.status == ImportJob.Status.FAILED
    assert job.errors == [
        {"line": None, "field": None, "message": "The file has no rows to import."}
    ]


def test_import_keeps_the_first_100_errors_and_counts_the_rest(project, owner):
    content = '{"text": ""}\n' * 130

    job = run(project, owner, "many.jsonl", content)

    assert len(job.errors) == services.MAX_ERRORS + 1
    assert job.errors[99] == {"line": 100, "field": "text", "message": job.errors[0]["message"]}
    assert job.errors[-1]["line"] is None
    assert "30 more errors" in job.errors[-1]["message"]


def test_import_refuses_files_with_too_many_rows(project, owner, monkeypatch):
    monkeypatch.setattr(services, "MAX_ROWS", 3)

    job = run(project, owner, "big.csv", "text\na\nb\nc\nd\ne\n")

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(5, None)]
    assert "split it" in job.errors[0]["message"]


# --- Upload checks (synchronous) ---------------------------------------------------------------


def test_import_job_create_refuses_an_empty_file(project, owner):
    with pytest.raises(ValidationError) as caught:
        import_job_create(project=project, user=owner, uploaded_file=upload("a.csv", b""))

    assert caught.value.message_dict == {"file": ["The file is empty."]}
    assert ImportJob.objects.count() == 0


def test_import_job_create_refuses_an_oversized_file(project, owner, settings):
    settings.ASSAY_IMPORT_MAX_BYTES = 1024

    with pytest.raises(ValidationError) as caught:
        import_job_create(project=project, user=owner, uploaded_file=upload("a.csv", "x" * 1025))

    assert list(caught.value.message_dict) == ["file"]
    assert "limit" in caught.value.message_dict["file"][0]
    assert ImportJob.objects.count() == 0


@pytest.mark.parametrize("name", ["data.json", "data.txt", "data", "data.csv.gz"])
def test_import_job_create_refuses_other_extensions(project, owner, name):
    with pytest.raises(ValidationError) as caught:
        import_job_create(project=project, user=owner, uploaded_file=upload(name, "text\na\n"))

    assert list(caught.value.message_dict) == ["file"]


def test_import_job_create_stores_the_file_and_enqueues_on_commit(
    project, owner, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(import_run_task, "delay", lambda *args: enqueued.append(args))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = import_job_create(
            project=project, user=owner, uploaded_file=upload("My reviews.csv", "text\na\n")
        )
        assert enqueued == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()

    assert enqueued == [(job.pk,)]
    job.refresh_from_db()
    assert (job.status, job.original_name, job.created_by) == ("pending", "My reviews.csv", owner)
    with job.file.open("rb") as stored:
        assert stored.read() == b"text\na\n"


# --- Duplicates and all-or-nothing -------------------------------------------------------------


def test_import_skips_duplicates_inside_the_file_and_against_the_project(project, owner):
    ItemFactory(project=project, data={"text": "Known"}, content_hash=content_hash("Known"))
    content = jsonl(
        {"text": "New one"},
        {"text": "  New one  "},  # same text once stripped
        {"text": "Cafe\u0301"},  # decomposed é ...
        {"text": "Caf\u00e9"},  # ... and composed: the same after NFC
        {"text": "Known"},
        {"text": "new one"},  # case is kept: a different item
    )

    job = run(project, owner, "dups.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert (job.total_rows, job.created_count, job.duplicate_count) == (6, 3, 3)
    texts = sorted(Item.objects.filter(project=project).values_list("data__text", flat=True))
    assert texts == sorted(["Known", "New one", "Cafe\u0301", "new one"])


@pytest.mark.parametrize("preload_max", [0, 100], ids=["ask-database", "preloaded"])
def test_import_duplicates_across_batches_are_found(project, owner, monkeypatch, preload_max):
    monkeypatch.setattr(inserting, "INSERT_BATCH", 2)
    monkeypatch.setattr(inserting, "PRELOAD_MAX", preload_max)
    ItemFactory(project=project, data={"text": "e"}, content_hash=content_hash("e"))
    content = jsonl(*({"text": t} for t in ["a", "b", "c", "a", "e", "b", "f"]))

    job = run(project, owner, "batches.jsonl", content)

    assert (job.created_count, job.duplicate_count) == (4, 3)
    assert Item.objects.filter(project=project).count() == 5


def test_import_same_text_in_another_project_is_not_a_duplicate(project, owner):
    ItemFactory(data={"text": "Shared"}, content_hash=content_hash("Shared"))

    job = run(project, owner, "a.jsonl", jsonl({"text": "Shared"}))

    assert (job.created_count, job.duplicate_count) == (1, 0)


def test_import_a_bad_row_at_the_end_leaves_zero_items(project, owner):
    rows = [{"text": f"Row number {n}"} for n in range(500)]
    content = jsonl(*rows) + '{"text": "last", "gold": "unknown"}\n'

    job = run(project, owner, "late-error.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(501, "gold")]
    assert (job.total_rows, job.created_count) == (500, 0)
    assert Item.objects.filter(project=project).count() == 0


def test_import_failing_while_inserting_rolls_back_every_row(project, owner, monkeypatch):
    monkeypatch.setattr(inserting, "INSERT_BATCH", 10)
    calls = []
    writer = (
        inserting._copy_writer
        if connection.vendor == "postgresql"
        else inserting._bulk_create_writer
    )

    def fail_on_second_batch(project, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        writer(project, rows)

    monkeypatch.setattr(inserting, "_copy_writer", fail_on_second_batch)
    monkeypatch.setattr(inserting, "_bulk_create_writer", fail_on_second_batch)
    content = jsonl(*({"text": f"t{n}"} for n in range(25)))
    job = import_job_create(project=project, user=owner, uploaded_file=upload("a.jsonl", content))

    with pytest.raises(RuntimeError):
        import_run(job=job)

    job.refresh_from_db()
    assert calls == [10, 10]
    assert job.status == ImportJob.Status.FAILED
    assert "nothing was imported" in job.errors[0]["message"]
    assert Item.objects.filter(project=project).count() == 0


# --- Progress and idempotency -----------------------------------------------------------------


def test_import_reports_progress_while_validating(project, owner, monkeypatch):
    monkeypatch.setattr(services, "PROGRESS_EVERY", 3)
    monkeypatch.setattr(services, "PROGRESS_SECONDS", 0)
    seen = []
    original = services._progress

    def spy(job, **counts):
        original(job, **counts)
        seen.append(ImportJob.objects.values_list("processed_rows", "total_rows").get(pk=job.pk))

    monkeypatch.setattr(services, "_progress", spy)
    content = jsonl(*({"text": f"t{n}"} for n in range(7))) + "\n\n"

    run(project, owner, "p.jsonl", content)

    # First the line count as an estimate (9 lines), then every 3 rows, then the exact total.
    assert seen == [(0, 9), (3, 9), (6, 9), (7, 7)]


def test_import_run_leaves_a_finished_job_alone(project, owner):
    job = run(project, owner, "a.jsonl", jsonl({"text": "one"}, {"text": "two"}))
    Item.objects.filter(project=project).delete()

    again = import_run(job=job)

    assert again.status == ImportJob.Status.SUCCEEDED
    assert again.created_count == 2
    assert Item.objects.filter(project=project).count() == 0  # nothing inserted a second time


def test_import_run_restarts_a_job_left_running(project, owner):
    job = import_job_create(project=project, user=owner, uploaded_file=upload("a.csv", "text\na\n"))
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, processed_rows=1)

    finished = import_run(job=job)

    assert (finished.status, finished.created_count) == (ImportJob.Status.SUCCEEDED, 1)


def test_import_run_task_runs_the_job_and_ignores_deleted_ones(project, owner):
    job = import_job_create(project=project, user=owner, uploaded_file=upload("a.csv", "text\na\n"))

    import_run_task(job.pk)
    import_run_task(job.pk + 1000)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert Item.objects.filter(project=project).count() == 1


@pytest.mark.postgres
def test_import_on_postgresql_copies_json_and_nulls_faithfully(project, owner):
    content = jsonl(
        {"text": 'Quote " and tab\t and backslash \\ and ünïcode ✓', "meta": {"n": [1, None]}},
        {"text": "gold one", "gold": "positive", "note": None},
    )

    job = run(project, owner, "pg.jsonl", content)

    first, second = Item.objects.filter(project=project).order_by("id")
    assert job.created_count == 2
    assert first.data == {
        "text": 'Quote " and tab\t and backslash \\ and ünïcode ✓',
        "meta": {"n": [1, None]},
    }
    assert Item.objects.filter(project=project, gold__isnull=True).get() == first
    assert second.gold == {"label": "positive"}
    assert second.data["note"] is None
    assert first.created_at is not None
    assert first.slots_taken == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_into_one_project_never_insert_a_text_twice(owner):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from tests.annotation.factories import ProjectFactory

    project = ProjectFactory(created_by=owner)
    shared = [{"text": f"shared {n}"} for n in range(300)]
    jobs = [
        import_job_create(
            project=project,
            user=owner,
            uploaded_file=upload(
                f"{name}.jsonl", jsonl(*shared, *({"text": f"{name} {n}"} for n in range(200)))
            ),
        )
        for name in ("left", "right")
    ]

    def run_job(job):
        try:
            return import_run(job=job)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        finished = list(pool.map(run_job, jobs))

    assert [job.status for job in finished] == ["succeeded", "succeeded"]
    assert sorted(job.created_count for job in finished) == [200, 500]
    assert sorted(job.duplicate_count for job in finished) == [0, 300]
    assert Item.objects.filter(project=project).count() == 700

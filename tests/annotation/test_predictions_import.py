"""Predictions carried by import rows: JSONL lists, CSV columns and zip metadata; errors with
line and field; all-or-nothing with the items; the text fast path left as it was."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.imports import RowRules
from annotation.imports.parsing import _jsonl_rows
from annotation.models import ImportJob, Item, Prediction
from tests.annotation.factories import ItemFactory, ProjectFactory
from tests.annotation.test_image_zip import make_zip, picture, run_zip
from tests.annotation.test_imports import errors_of, jsonl, run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

SPAN_LABELS = [{"value": "PER", "hotkey": "p", "colour": "#0072b2"}]


def stored(project) -> list[tuple]:
    rows = Prediction.objects.filter(project=project).select_related("item").order_by("id")
    return [
        (p.item.data.get("text"), p.value, p.score, p.source, p.model_name, p.model_version)
        for p in rows
    ]


# --- JSONL -----------------------------------------------------------------------------------


def test_import_jsonl_stores_predictions_with_source_import(project, owner):
    content = jsonl(
        {
            "text": "Great phone",
            "predictions": [
                {"value": "positive", "score": 0.9, "model_name": "bert", "model_version": "3"},
                {"value": {"label": "negative"}, "model_name": "rules-v0"},
            ],
        },
        {"text": "Broke in a day"},
        {"text": "Fine", "predictions": []},
    )

    job = run(project, owner, "reviews.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert job.created_count == 3
    assert stored(project) == [
        ("Great phone", {"label": "positive"}, 0.9, "import", "bert", "3"),
        ("Great phone", {"label": "negative"}, None, "import", "rules-v0", ""),
    ]
    # the predictions never become item data
    assert sorted(Item.objects.values_list("data", flat=True), key=str) == sorted(
        [{"text": "Great phone"}, {"text": "Broke in a day"}, {"text": "Fine"}], key=str
    )


def test_import_jsonl_checks_span_predictions_against_the_row_text(owner):
    project = ProjectFactory(
        task_type="spans", labels=SPAN_LABELS, task_options={}, created_by=owner
    )
    good = {"spans": [{"start": 0, "end": 3, "label": "PER"}]}
    bad = {
        "spans": [{"start": 0, "end": 3, "label": "PER"}, {"start": 4, "end": 50, "label": "PER"}]
    }
    content = jsonl(
        {"text": "Ada met Alan", "predictions": [{"value": good, "score": 0.5}]},
        {"text": "Bob and Eve", "predictions": [{"value": bad}]},
    )

    job = run(project, owner, "people.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(2, "predictions[0].value.spans[1].end")]
    assert not Item.objects.filter(project=project).exists()
    assert not Prediction.objects.exists()


def test_import_jsonl_stores_span_predictions_in_stored_form(owner):
    project = ProjectFactory(
        task_type="spans", labels=SPAN_LABELS, task_options={}, created_by=owner
    )
    value = {
        "spans": [{"start": 8, "end": 12, "label": "PER"}, {"start": 0, "end": 3, "label": "PER"}]
    }
    content = jsonl({"text": "Ada met Alan", "predictions": [{"value": value}]})

    job = run(project, owner, "people.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    prediction = Prediction.objects.get()
    assert [span["start"] for span in prediction.value["spans"]] == [0, 8]
    assert prediction.value["relations"] == []


@pytest.mark.parametrize(
    ("predictions", "field"),
    [
        ([{"value": "positive", "score": 1.5}], "predictions[0].score"),
        ([{"value": "positive", "score": "high"}], "predictions[0].score"),
        ([{"value": "meh"}], "predictions[0].value"),
        ([{"score": 0.5}], "predictions[0].value"),
        ([{"value": "positive", "model": "x"}], "predictions[0].model"),
        ([{"value": "positive", "model_name": 7}], "predictions[0].model_name"),
        ([{"value": "positive", "model_version": "v" * 101}], "predictions[0].model_version"),
        ([{"value": "positive"}, {"value": "negative"}], "predictions[1].model_name"),
        (["positive"], "predictions[0]"),
        ({"value": "positive"}, "predictions"),
    ],
)
def test_import_jsonl_reports_bad_predictions_by_line_and_field(project, owner, predictions, field):
    content = jsonl(
        {"text": "Fine row"}, {"text": "Row with a bad one", "predictions": predictions}
    )

    job = run(project, owner, "reviews.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(2, field)]
    assert not Item.objects.exists()


def test_import_refuses_a_prediction_on_a_gold_row(project, owner):
    content = jsonl(
        {"text": "Gold row", "gold": "positive", "predictions": [{"value": "positive"}]},
    )

    job = run(project, owner, "reviews.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert [(e["line"], e["field"], e["message"]) for e in job.errors] == [
        (1, "predictions", "A gold item cannot carry a prediction.")
    ]


def test_import_refuses_a_prediction_on_a_row_repeating_a_gold_item(project, owner):
    gold = ItemFactory(project=project, data={"text": "Known gold"}, gold={"label": "positive"})
    content = jsonl(
        {"text": "A new row"},
        {"text": "Known gold", "predictions": [{"value": "negative"}]},
    )

    job = run(project, owner, "reviews.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(2, "predictions")]
    assert f"gold item {gold.pk}" in job.errors[0]["message"]
    assert list(Item.objects.values_list("pk", flat=True)) == [gold.pk]  # nothing inserted
    assert not Prediction.objects.exists()


def test_import_puts_a_duplicate_rows_predictions_on_the_existing_item_replacing_the_model(
    project, owner
):
    item = ItemFactory(project=project, data={"text": "Seen before"})
    Prediction.objects.create(
        project=project,
        item=item,
        source="import",
        value={"label": "positive"},
        model_name="bert",
        model_version="1",
    )
    Prediction.objects.create(
        project=project,
        item=item,
        source="import",
        value={"label": "positive"},
        model_name="other",
    )
    content = jsonl(
        {
            "text": "Seen before",
            "predictions": [{"value": "negative", "model_name": "bert", "model_version": "2"}],
        },
    )

    job = run(project, owner, "again.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert (job.created_count, job.duplicate_count) == (0, 1)
    assert sorted(
        Prediction.objects.filter(item=item).values_list("model_name", "model_version", "value")
    ) == [("bert", "2", {"label": "negative"}), ("other", "", {"label": "positive"})]


def test_import_last_row_wins_for_a_text_repeated_in_the_file(project, owner):
    content = jsonl(
        {"text": "Twice", "predictions": [{"value": "positive", "model_name": "m"}]},
        {"text": "Twice", "predictions": [{"value": "negative", "model_name": "m"}]},
    )

    job = run(project, owner, "twice.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert stored(project) == [("Twice", {"label": "negative"}, None, "import", "m", "")]


# --- CSV -------------------------------------------------------------------------------------


def test_import_csv_reads_the_prediction_columns(project, owner):
    content = (
        "text,lang,Prediction,prediction_score,prediction_model,prediction_model_version\r\n"
        "Loved it,en,positive,0.75,bert,3\r\n"
        'Hated it,en,"{""label"": ""negative""}",,bert,3\r\n'
        "No guess,fr,,,,\r\n"
    )

    job = run(project, owner, "reviews.csv", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert stored(project) == [
        ("Loved it", {"label": "positive"}, 0.75, "import", "bert", "3"),
        ("Hated it", {"label": "negative"}, None, "import", "bert", "3"),
    ]
    assert Item.objects.get(data__text="No guess").data == {"text": "No guess", "lang": "fr"}


def test_import_csv_multi_label_predictions_are_json_answers(owner):
    project = ProjectFactory(task_type="multi_label", task_options={}, created_by=owner)
    content = (
        "text,prediction,prediction_score\r\n"
        'Both,"{""labels"": [""negative"", ""positive""]}",0.4\r\n'
    )

    job = run(project, owner, "multi.csv", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert stored(project) == [
        ("Both", {"labels": ["positive", "negative"]}, 0.4, "import", "", "")
    ]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("x,meh,,", "prediction"),
        ("x,positive,2,", "prediction_score"),
        ("x,positive,abc,", "prediction_score"),
        ("x,,0.5,bert", "prediction"),
        ("x,positive,,,", None),  # wrong field count: the row itself
    ],
)
def test_import_csv_reports_bad_prediction_cells_by_line_and_column(project, owner, row, field):
    content = f"text,prediction,prediction_score,prediction_model\r\nok,,,\r\n{row}\r\n"

    job = run(project, owner, "reviews.csv", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(3, field)]
    assert not Item.objects.exists()


def test_import_csv_multi_label_refuses_a_prediction_that_is_not_json(owner):
    project = ProjectFactory(task_type="multi_label", task_options={}, created_by=owner)

    job = run(project, owner, "multi.csv", "text,prediction\r\nBoth,positive\r\n")

    assert errors_of(job) == [(2, "prediction")]


def test_import_csv_refuses_a_prediction_on_a_gold_row(project, owner):
    job = run(project, owner, "g.csv", "text,gold,prediction\r\nGold row,positive,negative\r\n")

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [(2, "prediction")]


# --- Zip metadata ----------------------------------------------------------------------------


def test_import_zip_metadata_rows_carry_predictions(project, owner):
    metadata = json.dumps(
        {
            "image": "x.png",
            "predictions": [{"value": "positive", "score": 0.6, "model_name": "cnn"}],
        }
    )
    content = make_zip({"metadata.jsonl": metadata + "\n", "x.png": picture()})

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    prediction = Prediction.objects.get()
    assert (prediction.value, prediction.score, prediction.model_name) == (
        {"label": "positive"},
        0.6,
        "cnn",
    )
    assert "predictions" not in prediction.item.data


# --- The text fast path ----------------------------------------------------------------------


def test_jsonl_rows_without_predictions_keep_the_fast_path(project):
    lines = [
        '{"text": "plain"}\n',
        '{"text": "guessed", "predictions": [{"value": "positive"}]}\n',
    ]

    plain, guessed = list(_jsonl_rows(lines, RowRules(project)))

    assert plain.data_json == '{"text": "plain"}'  # sent to COPY as it is
    assert plain.predictions == ()
    assert guessed.data_json is None  # rebuilt without its predictions
    assert guessed.data == {"text": "guessed"}
    assert guessed.predictions == (
        {"value": {"label": "positive"}, "score": None, "model_name": "", "model_version": ""},
    )


def test_import_without_predictions_never_touches_the_predictions_table(project, owner):
    content = jsonl(*({"text": f"row {n}"} for n in range(20)))

    with CaptureQueriesContext(connection) as queries:
        job = run(project, owner, "plain.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.created_count == 20
    assert not [q for q in queries.captured_queries if Prediction._meta.db_table in q["sql"]]

"""Predictions (pre-labels): checks per task type, scores, replace semantics, gold, which one
an annotator is shown, and the owner's summary."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string

from annotation.models import Prediction
from annotation.predictions import (
    prediction_for_item,
    prediction_list,
    prediction_summary,
    prediction_value_clean,
    predictions_replace,
    predictions_upload,
    score_clean,
)
from tests.annotation.factories import ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SPAN_LABELS = [{"value": "PER", "hotkey": "p", "colour": "#0072b2"}]
BOX_LABELS = [{"value": "car", "hotkey": "c", "colour": "#d55e00"}]


def spans_project(**options):
    return ProjectFactory(task_type="spans", labels=SPAN_LABELS, task_options=options)


def errors_of(exc_info) -> dict:
    return exc_info.value.message_dict


# --- Values per task type --------------------------------------------------------------------


def test_prediction_value_clean_accepts_a_bare_label_for_single_label(project):
    value = prediction_value_clean(project=project, value="positive")

    assert value == {"label": "positive"}


def test_prediction_value_clean_names_the_field_of_a_single_label_error(project):
    with pytest.raises(ValidationError) as exc_info:
        prediction_value_clean(project=project, value={"label": "meh"}, where="rows[3].value")

    assert list(errors_of(exc_info)) == ["rows[3].value.label"]


def test_prediction_value_clean_checks_spans_against_the_item_text():
    project = spans_project()
    value = {
        "spans": [{"start": 0, "end": 5, "label": "PER"}, {"start": 6, "end": 40, "label": "PER"}]
    }

    with pytest.raises(ValidationError) as exc_info:
        prediction_value_clean(
            project=project, value=value, item_data={"text": "Hello world"}, where="p[0].value"
        )

    assert list(errors_of(exc_info)) == ["p[0].value.spans[1].end"]


def test_prediction_value_clean_returns_spans_in_stored_order():
    project = spans_project()
    value = {
        "spans": [{"start": 6, "end": 11, "label": "PER"}, {"start": 0, "end": 5, "label": "PER"}]
    }

    cleaned = prediction_value_clean(
        project=project, value=value, item_data={"text": "Ada Lovelace"}
    )

    assert cleaned["spans"][0]["start"] == 0
    assert cleaned["relations"] == []


def test_prediction_value_clean_refuses_a_box_outside_the_image():
    project = ProjectFactory(task_type="boxes", labels=BOX_LABELS, task_options={})
    data = {"image": "https://example.org/a.png", "width": 100, "height": 50}
    value = {"boxes": [{"x": 90, "y": 10, "w": 30, "h": 10, "label": "car"}]}

    with pytest.raises(ValidationError) as exc_info:
        prediction_value_clean(project=project, value=value, item_data=data)

    assert all(key.startswith("value.boxes[0]") for key in errors_of(exc_info))


def test_prediction_value_clean_multi_label_keeps_label_set_order():
    project = ProjectFactory(task_type="multi_label", task_options={})

    value = prediction_value_clean(project=project, value={"labels": ["negative", "positive"]})

    assert value == {"labels": ["positive", "negative"]}


# --- Scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("score", [0, 1, 0.5, None])
def test_score_clean_accepts_numbers_between_0_and_1(score):
    assert score_clean(score) == (None if score is None else float(score))


@pytest.mark.parametrize("score", [-0.1, 1.01, "0.5", True, float("nan"), [0.5]])
def test_score_clean_refuses_other_values(score):
    with pytest.raises(ValidationError) as exc_info:
        score_clean(score, where="predictions[1].score")

    assert list(errors_of(exc_info)) == ["predictions[1].score"]


# --- Replace semantics -----------------------------------------------------------------------


def test_predictions_replace_drops_the_same_model_names_earlier_predictions(project):
    first, second = ItemFactory.create_batch(2, project=project)
    predictions_replace(
        project=project,
        source=Prediction.Source.API,
        rows=[(first.pk, "positive", 0.9), (second.pk, "negative", 0.6)],
        model_name="bert",
        model_version="1",
    )
    predictions_replace(
        project=project,
        source=Prediction.Source.API,
        rows=[(first.pk, "negative", 0.7)],
        model_name="other",
    )

    stored = predictions_replace(
        project=project,
        source=Prediction.Source.API,
        rows=[(second.pk, "positive", 0.8)],
        model_name="bert",
        model_version="2",
    )

    assert stored == 1
    rows = Prediction.objects.filter(project=project).values_list(
        "item_id", "value", "model_name", "model_version"
    )
    assert sorted(rows) == sorted(
        [
            (first.pk, {"label": "negative"}, "other", ""),
            (second.pk, {"label": "positive"}, "bert", "2"),
        ]
    )


def test_predictions_replace_is_all_or_nothing_and_names_every_bad_row(project):
    item = ItemFactory(project=project)
    predictions_replace(
        project=project, source="api", rows=[(item.pk, "positive", None)], model_name="m"
    )
    other = ItemFactory()  # another project's item

    with pytest.raises(ValidationError) as exc_info:
        predictions_replace(
            project=project,
            source="api",
            rows=[(item.pk, "negative", 2), (other.pk, "positive", None), (item.pk, "nope", 0.1)],
            model_name="m",
        )

    assert set(errors_of(exc_info)) == {"rows[0].score", "rows[1].item", "rows[2].item"}
    assert list(Prediction.objects.values_list("value", flat=True)) == [{"label": "positive"}]


def test_predictions_replace_refuses_gold_items(project, gold_item):
    with pytest.raises(ValidationError) as exc_info:
        predictions_replace(
            project=project, source="import", rows=[(gold_item.pk, "positive", None)]
        )

    assert "gold item cannot carry a prediction" in errors_of(exc_info)["rows[0].item"][0]
    assert not Prediction.objects.exists()


def test_predictions_replace_refuses_an_unknown_source(project, item):
    with pytest.raises(ValidationError) as exc_info:
        predictions_replace(project=project, source="guess", rows=[(item.pk, "positive", None)])

    assert list(errors_of(exc_info)) == ["source"]


def test_predictions_upload_refuses_an_empty_list_and_malformed_entries(project, item):
    with pytest.raises(ValidationError) as empty:
        predictions_upload(project=project, model_name="m", model_version="", predictions=[])
    with pytest.raises(ValidationError) as malformed:
        predictions_upload(
            project=project,
            model_name="m",
            model_version="",
            predictions=[{"item": item.pk}, "x", {"item": item.pk, "value": "positive", "p": 1}],
        )

    assert list(errors_of(empty)) == ["predictions"]
    assert set(errors_of(malformed)) == {
        "predictions[0].value",
        "predictions[1]",
        "predictions[2].p",
    }


# --- Which prediction is shown ---------------------------------------------------------------


def add(item, source, value, *, model_name="", model_version="", score=None):
    return Prediction.objects.create(
        project=item.project,
        item=item,
        source=source,
        value={"label": value},
        score=score,
        model_name=model_name,
        model_version=model_version,
    )


def test_prediction_for_item_prefers_the_owners_model_then_built_in_then_rules(item):
    add(item, Prediction.Source.RULE, "negative", score=1.0)
    model = add(item, Prediction.Source.MODEL, "negative", score=0.99)
    assert prediction_for_item(item=item) == model

    api = add(item, Prediction.Source.API, "positive", score=0.1)
    assert prediction_for_item(item=item) == api

    imported = add(item, Prediction.Source.IMPORT, "positive", score=0.2)
    assert prediction_for_item(item=item) == imported


def test_prediction_for_item_takes_the_newest_upload_within_a_source(item):
    add(item, Prediction.Source.API, "positive", model_name="a", score=0.9)
    newer = add(item, Prediction.Source.API, "negative", model_name="b", score=0.5)

    assert prediction_for_item(item=item) == newer


def test_prediction_for_item_is_none_for_gold_items_and_items_without_any(project, item):
    gold = ItemFactory(project=project, gold={"label": "positive"})
    Prediction.objects.create(
        project=project, item=gold, source="import", value={"label": "positive"}
    )

    assert prediction_for_item(item=gold) is None
    assert prediction_for_item(item=item) is None


# --- Listing and summary ---------------------------------------------------------------------


def test_prediction_list_filters_by_source_and_model_name(project, item):
    add(item, Prediction.Source.API, "positive", model_name="a")
    wanted = add(item, Prediction.Source.IMPORT, "positive", model_name="b")
    add(item, Prediction.Source.IMPORT, "negative", model_name="c")

    found = prediction_list(project=project, source="import", model_name="b")

    assert list(found) == [wanted]


def test_prediction_summary_counts_per_source_and_model_version(project, django_assert_num_queries):
    items = ItemFactory.create_batch(3, project=project)
    for item in items:
        add(item, Prediction.Source.RULE, "positive")
        add(item, Prediction.Source.API, "positive", model_name="bert", model_version="2")
    add(items[0], Prediction.Source.IMPORT, "negative", model_name="bert", model_version="1")

    with django_assert_num_queries(1):
        summary = prediction_summary(project=project)

    assert [
        (row["source"], row["model_name"], row["model_version"], row["count"]) for row in summary
    ] == [("import", "bert", "1", 1), ("api", "bert", "2", 3), ("rule", "", "", 3)]
    assert summary[0]["source_label"] == "Imported"


def test_predictions_summary_partial_shows_counts_or_how_to_add_some(project, item):
    add(item, Prediction.Source.API, "positive", model_name="bert", model_version="v7")

    filled = render_to_string(
        "annotation/_predictions_summary.html",
        {"project": project, "summary": prediction_summary(project=project)},
    )
    empty = render_to_string(
        "annotation/_predictions_summary.html", {"project": project, "summary": []}
    )

    assert "Pre-labels" in filled
    assert "<td>API</td>" in filled
    assert "v7" in filled
    assert "No pre-labels yet" in empty
    assert f"/api/v1/projects/{project.pk}/predictions/" in empty

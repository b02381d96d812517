"""The predictions API: owners upload a model's predictions (replacing that model name's
earlier ones), owners and reviewers list them; errors carry field paths."""

from __future__ import annotations

import pytest

from annotation.models import Prediction
from tests.annotation.factories import ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SPAN_LABELS = [{"value": "PER", "hotkey": "p", "colour": "#0072b2"}]


def url(project) -> str:
    return f"/api/v1/projects/{project.pk}/predictions/"


def upload(client, project, predictions, *, model_name="bert", model_version="1"):
    body = {"model_name": model_name, "model_version": model_version, "predictions": predictions}
    return client.post(url(project), body, format="json")


# --- Permissions -----------------------------------------------------------------------------


def test_upload_is_for_owners_only(project, item, worker, reviewer, outsider, client_for):
    rows = [{"item": item.pk, "value": "positive"}]

    assert upload(client_for(None), project, rows).status_code in (401, 403)
    assert upload(client_for(outsider), project, rows).status_code == 404
    assert upload(client_for(worker), project, rows).status_code == 403
    assert upload(client_for(reviewer), project, rows).status_code == 403
    assert not Prediction.objects.exists()


def test_list_is_for_owners_and_reviewers(project, owner, worker, reviewer, outsider, client_for):
    assert client_for(owner).get(url(project)).status_code == 200
    assert client_for(reviewer).get(url(project)).status_code == 200
    assert client_for(worker).get(url(project)).status_code == 403
    assert client_for(outsider).get(url(project)).status_code == 404


# --- Upload ----------------------------------------------------------------------------------


def test_upload_stores_predictions_with_source_api(project, owner, client_for):
    first, second = ItemFactory.create_batch(2, project=project)

    response = upload(
        client_for(owner),
        project,
        [
            {"item": first.pk, "value": "positive", "score": 0.8},
            {"item": second.pk, "value": {"label": "negative"}},
        ],
        model_version="2024-05",
    )

    assert response.status_code == 201, response.json()
    assert response.json() == {"model_name": "bert", "model_version": "2024-05", "stored": 2}
    assert sorted(
        Prediction.objects.values_list("item_id", "value", "score", "source", "model_version")
    ) == [
        (first.pk, {"label": "positive"}, 0.8, "api", "2024-05"),
        (second.pk, {"label": "negative"}, None, "api", "2024-05"),
    ]


def test_a_new_upload_of_a_model_name_replaces_its_earlier_predictions(project, owner, client_for):
    first, second = ItemFactory.create_batch(2, project=project)
    client = client_for(owner)
    upload(client, project, [{"item": first.pk, "value": "positive"}], model_version="1")
    upload(client, project, [{"item": first.pk, "value": "negative"}], model_name="other")

    response = upload(
        client, project, [{"item": second.pk, "value": "negative"}], model_version="2"
    )

    assert response.status_code == 201
    assert sorted(Prediction.objects.values_list("item_id", "model_name", "model_version")) == [
        (first.pk, "other", "1"),
        (second.pk, "bert", "2"),
    ]


def test_upload_reports_field_paths_and_stores_nothing(project, owner, gold_item, client_for):
    item = ItemFactory(project=project)
    foreign = ItemFactory()

    response = upload(
        client_for(owner),
        project,
        [
            {"item": item.pk, "value": "positive", "score": 1.2},
            {"item": foreign.pk, "value": "positive"},
            {"item": gold_item.pk, "value": "positive"},
            {"item": item.pk, "value": "unknown"},
        ],
    )

    assert response.status_code == 400
    fields = response.json()["fields"]
    assert set(fields) == {
        "predictions[0].score",
        "predictions[1].item",
        "predictions[2].item",
        "predictions[3].item",
    }
    assert "gold item cannot carry a prediction" in fields["predictions[2].item"][0]
    assert not Prediction.objects.exists()


def test_upload_checks_span_values_against_the_item_text(owner, client_for):
    project = ProjectFactory(
        task_type="spans", labels=SPAN_LABELS, task_options={}, created_by=owner
    )
    item = ItemFactory(project=project, data={"text": "Ada met Alan"})
    value = {
        "spans": [{"start": 0, "end": 3, "label": "PER"}, {"start": 8, "end": 30, "label": "PER"}]
    }

    response = upload(client_for(owner), project, [{"item": item.pk, "value": value}])

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["predictions[0].value.spans[1].end"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_name": "m", "predictions": []}, "predictions"),
        ({"predictions": [{"item": 1, "value": "positive"}]}, "model_name"),
        ({"model_name": "   ", "predictions": [{"item": 1, "value": "x"}]}, "model_name"),
        ({"model_name": "m", "predictions": [{"value": "positive"}]}, "predictions[0].item"),
        ({"model_name": "m", "predictions": [{"item": 1, "value": 1, "x": 2}]}, "predictions[0].x"),
    ],
)
def test_upload_refuses_malformed_bodies(project, owner, client_for, body, field):
    response = client_for(owner).post(url(project), body, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


# --- Listing ---------------------------------------------------------------------------------


def test_list_filters_by_source_and_model_name(
    project, owner, client_for, django_assert_max_num_queries
):
    items = ItemFactory.create_batch(3, project=project)
    for item in items:
        Prediction.objects.create(
            project=project, item=item, source="api", value={"label": "positive"}, model_name="a"
        )
        Prediction.objects.create(
            project=project, item=item, source="import", value={"label": "negative"}, score=0.5
        )
    client = client_for(owner)

    with django_assert_max_num_queries(4):
        response = client.get(url(project), {"source": "import"})
    by_model = client.get(url(project), {"model_name": "a"}).json()
    everything = client.get(url(project)).json()

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert body["results"][0] == {
        "id": body["results"][0]["id"],
        "item": items[0].pk,
        "value": {"label": "negative"},
        "score": 0.5,
        "source": "import",
        "model_name": "",
        "model_version": "",
        "created_at": body["results"][0]["created_at"],
    }
    assert {row["source"] for row in by_model["results"]} == {"api"}
    assert everything["count"] == 6


def test_list_refuses_an_unknown_source(project, owner, client_for):
    response = client_for(owner).get(url(project), {"source": "guess"})

    assert response.status_code == 400
    assert "source" in response.json()["fields"]


def test_list_shows_only_the_projects_own_predictions(project, owner, client_for):
    other = ItemFactory()
    Prediction.objects.create(
        project=other.project, item=other, source="api", value={"label": "positive"}
    )

    assert client_for(owner).get(url(project)).json()["count"] == 0

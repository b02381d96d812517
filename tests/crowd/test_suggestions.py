"""Suggestions (pre-labels) in the annotator's hands: who sees them, never on gold items, and
what the server records about them (which one was shown, and whether it was accepted unchanged:
computed by the server, never taken from the client)."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse

from annotation.models import Annotation, Item, Prediction
from annotation.predictions import predictions_replace
from annotation.services import annotation_create
from crowd.api.serializers import AssignmentOutputSerializer
from crowd.models import Pool, ProjectPool
from crowd.selectors import suggestion_list_for_worker, suggestions_shown_to
from crowd.services import assignment_claim_next, project_default_pool
from crowd.suggestions import suggestion_settings_set
from tests.annotation.factories import ItemFactory, UserFactory
from tests.crowd.factories import join_pool, make_annotator, make_pool

pytestmark = pytest.mark.django_db


@pytest.fixture
def shown_project(project):
    """The conftest project, with suggestions switched on."""
    project.suggestions_enabled = True
    project.save(update_fields=["suggestions_enabled"])
    return project


def _predict(project, item, label="positive", *, source="import"):
    predictions_replace(
        project=project,
        source=source,
        rows=[(item.pk, {"label": label}, 0.9)],
        model_name="sentiment-bert",
        model_version="v3",
    )
    return Prediction.objects.get(item=item, source=source)


def _submit(client, assignment, value, **extra):
    url = reverse("crowd:label-submit", args=[assignment.project_id, assignment.pk])
    body = {"value": json.dumps(value), "duration_ms": "900", **extra}
    return client.post(url, body)


def _suggestions_on_page(content: bytes) -> list[dict]:
    found = re.findall(r'data-suggestion="([^"]*)"', content.decode())
    return [json.loads(html.unescape(raw)) for raw in found]


# --- who sees them -----------------------------------------------------------------------------


def test_suggestions_shown_to_needs_the_project_switch(project, worker):
    assert suggestions_shown_to(worker=worker, project=project) is False

    project.suggestions_enabled = True
    project.save(update_fields=["suggestions_enabled"])

    assert suggestions_shown_to(worker=worker, project=project) is True


def test_suggestions_shown_to_follows_the_pool_switch(shown_project, worker):
    ProjectPool.objects.filter(project=shown_project).update(show_suggestions=False)
    assert suggestions_shown_to(worker=worker, project=shown_project) is False

    experts = make_pool(shown_project, name="Experts")  # shows suggestions by default
    join_pool(experts, worker)

    assert suggestions_shown_to(worker=worker, project=shown_project) is True


def test_suggestions_shown_to_ignores_review_pools_and_strangers(shown_project, owner):
    reviewers = Pool.objects.create(name="Reviewers", created_by=owner)
    ProjectPool.objects.create(project=shown_project, pool=reviewers, rule=ProjectPool.Rule.REVIEW)
    reviewer = UserFactory(username="rev")
    join_pool(reviewers, reviewer)

    assert suggestions_shown_to(worker=reviewer, project=shown_project) is False
    assert suggestions_shown_to(worker=UserFactory(username="x"), project=shown_project) is False


def test_gold_items_never_get_a_suggestion(shown_project, worker, item):
    gold = ItemFactory(project=shown_project, gold={"label": "positive"})
    _predict(shown_project, item)
    # predictions_replace refuses gold items; one written around it must still not be shown
    Prediction.objects.create(
        project=shown_project, item=gold, value={"label": "positive"}, source="rule"
    )

    shown = suggestion_list_for_worker(worker=worker, project=shown_project, items=[item, gold])

    assert list(shown) == [item.pk]


def test_label_page_carries_the_suggestion_for_the_widget(client, shown_project, worker, item):
    prediction = _predict(shown_project, item, "negative")
    client.force_login(worker)

    response = client.get(reverse("crowd:label", args=[shown_project.pk]))

    assert _suggestions_on_page(response.content) == [
        {
            "id": prediction.pk,
            "value": {"label": "negative"},
            "source": "import",
            "source_label": "Imported",
            "model_name": "sentiment-bert",
            "model_version": "v3",
        }
    ]


def test_label_page_has_no_suggestion_for_a_hidden_pool(client, shown_project, worker, item):
    _predict(shown_project, item)
    ProjectPool.objects.filter(project=shown_project).update(show_suggestions=False)
    client.force_login(worker)

    response = client.get(reverse("crowd:label", args=[shown_project.pk]))

    assert 'class="label-item"' in response.content.decode()
    assert _suggestions_on_page(response.content) == []


# --- what is recorded --------------------------------------------------------------------------


def test_submit_records_an_accepted_suggestion(client, shown_project, worker, item):
    prediction = _predict(shown_project, item, "negative")
    assignment = assignment_claim_next(worker=worker, project=shown_project)
    client.force_login(worker)

    response = _submit(client, assignment, {"label": "negative"}, suggestion=prediction.pk)

    assert response.status_code == 200
    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (prediction.pk, True)


def test_submit_records_a_corrected_suggestion(client, shown_project, worker, item):
    prediction = _predict(shown_project, item, "negative")
    assignment = assignment_claim_next(worker=worker, project=shown_project)
    client.force_login(worker)

    _submit(client, assignment, {"label": "positive"}, suggestion=prediction.pk)

    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (prediction.pk, False)


def test_submit_without_a_suggestion_records_none(client, shown_project, worker, item):
    _predict(shown_project, item, "negative")
    assignment = assignment_claim_next(worker=worker, project=shown_project)
    client.force_login(worker)

    _submit(client, assignment, {"label": "negative"})

    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (None, None)


def test_a_foreign_prediction_id_is_ignored(client, shown_project, worker, item):
    other = ItemFactory(project=shown_project)
    foreign = _predict(shown_project, other, "negative")
    assignment = assignment_claim_next(worker=worker, project=shown_project)
    assert assignment.item_id == item.pk
    client.force_login(worker)

    response = _submit(client, assignment, {"label": "negative"}, suggestion=foreign.pk)

    assert response.status_code == 200
    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (None, None)


@pytest.mark.parametrize("junk", ["abc", "-3", "99999999999999999999999", ""])
def test_a_malformed_suggestion_is_no_suggestion(client, shown_project, worker, item, junk):
    _predict(shown_project, item, "negative")
    assignment = assignment_claim_next(worker=worker, project=shown_project)
    client.force_login(worker)

    response = _submit(client, assignment, {"label": "negative"}, suggestion=junk)

    assert response.status_code == 200
    assert Annotation.objects.get(item=item, author=worker).suggestion_id is None


def test_a_suggestion_the_worker_may_not_see_is_ignored(client, shown_project, worker, item):
    prediction = _predict(shown_project, item, "negative")
    ProjectPool.objects.filter(project=shown_project).update(show_suggestions=False)
    assignment = assignment_claim_next(worker=worker, project=shown_project)
    client.force_login(worker)

    _submit(client, assignment, {"label": "negative"}, suggestion=prediction.pk)

    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (None, None)


def test_the_api_submit_takes_a_suggestion(shown_project, worker, item, client_for):
    prediction = _predict(shown_project, item, "positive")
    api = client_for(worker)
    claimed = api.post(f"/api/v1/projects/{shown_project.pk}/next/").json()

    response = api.post(
        f"/api/v1/assignments/{claimed['assignment']}/submit/",
        {"value": {"label": "positive"}, "suggestion": prediction.pk},
        format="json",
    )

    assert response.status_code == 200
    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (prediction.pk, True)


def test_annotation_create_computes_acceptance_itself(shown_project, worker, item):
    """The general submit path (no PostgreSQL fast path) records the same."""
    prediction = _predict(shown_project, item, "negative")
    gold = ItemFactory(project=shown_project, gold={"label": "negative"})
    on_gold = Prediction.objects.create(
        project=shown_project, item=gold, value={"label": "negative"}, source="rule"
    )
    Item.objects.filter(pk=item.pk).update(slots_taken=2)  # the callers' claims

    kept = annotation_create(
        item=item,
        author=worker,
        value={"label": "negative"},
        duration_ms=5,
        suggestion_id=prediction.pk,
    )
    changed = annotation_create(
        item=item,
        author=UserFactory(username="b"),
        value={"label": "positive"},
        duration_ms=5,
        suggestion_id=prediction.pk,
    )
    gold_answer = annotation_create(
        item=gold,
        author=worker,
        value={"label": "negative"},
        duration_ms=5,
        suggestion_id=on_gold.pk,
    )

    assert (kept.suggestion_id, kept.suggestion_accepted) == (prediction.pk, True)
    assert (changed.suggestion_id, changed.suggestion_accepted) == (prediction.pk, False)
    assert (gold_answer.suggestion_id, gold_answer.suggestion_accepted) == (None, None)


# --- the owner's switches ----------------------------------------------------------------------


def test_suggestion_settings_set_switches_project_and_pools(project):
    default = ProjectPool.objects.get(project=project, pool=project_default_pool(project=project))
    crowd = make_pool(project, name="External crowd")

    suggestion_settings_set(project=project, enabled=True, shown_pool_ids=[default.pool_id])

    project.refresh_from_db()
    assert project.suggestions_enabled is True
    shown = dict(
        ProjectPool.objects.filter(project=project).values_list("pool_id", "show_suggestions")
    )
    assert shown == {default.pool_id: True, crowd.pk: False}


def test_suggestion_settings_set_refuses_a_foreign_pool(project, owner):
    stranger = Pool.objects.create(name="Elsewhere", created_by=owner)

    with pytest.raises(ValidationError) as error:
        suggestion_settings_set(project=project, enabled=True, shown_pool_ids=[stranger.pk])

    assert "pools" in error.value.message_dict


def test_suggestions_page_saves_the_switches(client, project, owner, django_assert_max_num_queries):
    project_default_pool(project=project)
    crowd = make_pool(project, name="External crowd")
    client.force_login(owner)
    url = reverse("crowd:suggestions", args=[project.pk])

    with django_assert_max_num_queries(12):
        page = client.get(url)
    response = client.post(url, {"enabled": "on", "pools": [str(crowd.pk)]})

    assert page.status_code == 200
    assert "External crowd" in page.content.decode()
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.suggestions_enabled is True
    assert ProjectPool.objects.get(project=project, pool=crowd).show_suggestions is True
    assert ProjectPool.objects.exclude(pool=crowd).get(project=project).show_suggestions is False


def test_suggestions_page_is_for_owners_only(client, project, worker):
    client.force_login(worker)

    response = client.post(reverse("crowd:suggestions", args=[project.pk]), {"enabled": "on"})

    assert response.status_code == 403
    project.refresh_from_db()
    assert project.suggestions_enabled is False


def test_suggestions_page_refuses_an_unknown_pool(client, project, owner):
    client.force_login(owner)

    response = client.post(reverse("crowd:suggestions", args=[project.pk]), {"pools": ["999999"]})

    assert response.status_code == 422


def test_worker_sees_suggestions_only_after_the_owner_switches_them_on(client, project, item):
    worker = make_annotator(project, "late")
    _predict(project, item)
    client.force_login(worker)
    before = client.get(reverse("crowd:label", args=[project.pk]))

    suggestion_settings_set(
        project=project,
        enabled=True,
        shown_pool_ids=ProjectPool.objects.filter(project=project).values_list(
            "pool_id", flat=True
        ),
    )
    after = client.get(reverse("crowd:label", args=[project.pk]))

    assert _suggestions_on_page(before.content) == []
    assert [s["value"] for s in _suggestions_on_page(after.content)] == [{"label": "positive"}]


# --- the work API hands out the same suggestion as the page ------------------------------------


def _api_next(api, project):
    response = api.post(f"/api/v1/projects/{project.pk}/next/")
    assert response.status_code == 200
    return response.json()


def test_api_next_carries_the_suggestion_the_page_shows(
    client, shown_project, worker, item, client_for, django_assert_max_num_queries
):
    _predict(shown_project, item, "negative", source="rule")
    imported = _predict(shown_project, item, "positive")  # the page prefers the owner's model

    with django_assert_max_num_queries(9):  # 2 more than without suggestions
        claimed = _api_next(client_for(worker), shown_project)
    client.force_login(worker)  # the page shows the worker's reservation: the same item
    page = client.get(reverse("crowd:label", args=[shown_project.pk]))
    on_page = _suggestions_on_page(page.content)

    assert claimed["item"]["id"] == item.pk
    assert (
        claimed["suggestion"]
        == on_page[0]
        == {
            "id": imported.pk,
            "value": {"label": "positive"},
            "source": "import",
            "source_label": "Imported",
            "model_name": "sentiment-bert",
            "model_version": "v3",
        }
    )
    assert "score" not in claimed["suggestion"]  # the page does not show the confidence


def test_api_next_has_no_suggestion_when_the_project_hides_them(project, worker, item, client_for):
    _predict(project, item)
    assert project.suggestions_enabled is False

    claimed = _api_next(client_for(worker), project)

    assert claimed["item"]["id"] == item.pk
    assert claimed["suggestion"] is None


def test_api_next_has_no_suggestion_when_the_pool_hides_them(
    shown_project, worker, item, client_for
):
    _predict(shown_project, item)
    ProjectPool.objects.filter(project=shown_project).update(show_suggestions=False)

    claimed = _api_next(client_for(worker), shown_project)

    assert claimed["item"]["id"] == item.pk
    assert claimed["suggestion"] is None


def test_api_next_never_has_a_suggestion_on_a_gold_item(
    shown_project, worker, client_for, monkeypatch
):
    shown_project.gold_ratio = 0.5
    shown_project.save(update_fields=["gold_ratio"])
    gold = ItemFactory(project=shown_project, gold={"label": "positive"})
    ItemFactory(project=shown_project)  # gold is mixed into regular work
    Prediction.objects.create(  # written around predictions_replace, which refuses gold items
        project=shown_project, item=gold, value={"label": "positive"}, source="import"
    )
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.0)  # roll for gold

    claimed = _api_next(client_for(worker), shown_project)

    assert claimed["item"]["id"] == gold.pk
    assert claimed["suggestion"] is None


def test_api_submit_with_the_shown_suggestion_records_acceptance(
    shown_project, worker, item, client_for
):
    second = ItemFactory(project=shown_project)
    predictions_replace(  # one upload: it replaces the model's earlier predictions
        project=shown_project,
        source="import",
        rows=[(item.pk, {"label": "negative"}, 0.9), (second.pk, {"label": "positive"}, 0.8)],
        model_name="sentiment-bert",
    )
    next_prediction = Prediction.objects.get(item=second)
    api = client_for(worker)
    claimed = _api_next(api, shown_project)
    suggestion = claimed["suggestion"]

    response = api.post(
        f"/api/v1/assignments/{claimed['assignment']}/submit/?next=1",
        {"value": suggestion["value"], "suggestion": suggestion["id"]},
        format="json",
    )

    assert response.status_code == 200
    stored = Annotation.objects.get(item=item, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (suggestion["id"], True)
    following = response.json()["next"]  # the next item comes with its own suggestion
    assert following["item"]["id"] == second.pk
    assert following["suggestion"]["id"] == next_prediction.pk

    corrected = api.post(
        f"/api/v1/assignments/{following['assignment']}/submit/",
        {"value": {"label": "negative"}, "suggestion": following["suggestion"]["id"]},
        format="json",
    )

    assert corrected.status_code == 200
    stored = Annotation.objects.get(item=second, author=worker)
    assert (stored.suggestion_id, stored.suggestion_accepted) == (next_prediction.pk, False)


def test_api_skip_with_next_carries_the_next_suggestion(shown_project, worker, item, client_for):
    second = ItemFactory(project=shown_project)
    prediction = _predict(shown_project, second, "negative")
    api = client_for(worker)
    claimed = _api_next(api, shown_project)

    response = api.post(f"/api/v1/assignments/{claimed['assignment']}/skip/?next=1")

    assert claimed["suggestion"] is None  # no prediction for the first item
    assert response.json()["next"]["suggestion"]["id"] == prediction.pk


def test_assignment_serializer_refuses_to_run_without_the_suggestion_decision(
    shown_project, worker, item
):
    assignment = assignment_claim_next(worker=worker, project=shown_project)

    with pytest.raises(ImproperlyConfigured):
        AssignmentOutputSerializer(assignment, context={"masking": None}).data  # noqa: B018

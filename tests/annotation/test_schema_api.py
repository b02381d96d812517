from __future__ import annotations

import pytest

from annotation.models import Annotation, LabelSchemaVersion, ProjectMember
from annotation.services import project_create, project_member_set
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

RENAME = [{"op": "rename", "label": "bad", "to": "poor"}]


@pytest.fixture
def live(owner):
    """A project made through the service (so it has version 1) with one answer."""
    project = project_create(user=owner, name="Live", labels=["good", "bad"])
    AnnotationFactory(item=ItemFactory(project=project), value={"label": "bad"})
    return project


def versions_url(project):
    return f"/api/v1/projects/{project.pk}/schema/versions/"


def plan_url(project):
    return f"/api/v1/projects/{project.pk}/schema/plan/"


def test_plan_returns_the_mapping_counts_and_token(live, owner, client_for):
    response = client_for(owner).post(plan_url(live), {"operations": RENAME}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["mapping"] == {"bad": "poor"}
    assert [label["value"] for label in body["labels"]] == ["good", "poor"]
    assert (body["migrated_count"], body["superseded_count"]) == (1, 0)
    assert (body["relabel_item_count"], body["gold_lost_item_ids"]) == (0, [])
    assert body["from_version"] == 1
    assert len(body["token"]) == 64
    assert not LabelSchemaVersion.objects.filter(project=live, number=2).exists()


def test_confirming_the_plan_creates_the_next_version(live, owner, client_for):
    api = client_for(owner)
    token = api.post(plan_url(live), {"operations": RENAME}, format="json").json()["token"]

    response = api.post(
        versions_url(live),
        {"operations": RENAME, "token": token, "note": "Gentler wording"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["number"] == 2
    assert body["mapping"] == {"bad": "poor"}
    assert (body["migrated_count"], body["note"], body["created_by"]) == (
        1,
        "Gentler wording",
        "owner",
    )
    assert Annotation.objects.get(project=live).value == {"label": "poor"}


def test_confirming_with_a_stale_token_is_refused_with_the_field(live, owner, client_for):
    api = client_for(owner)
    token = api.post(plan_url(live), {"operations": RENAME}, format="json").json()["token"]
    retire = [{"op": "retire", "label": "bad"}]

    response = api.post(versions_url(live), {"operations": retire, "token": token}, format="json")

    assert response.status_code == 400
    assert "token" in response.json()["fields"]
    assert Annotation.objects.get(project=live).superseded_at is None


def test_plan_errors_name_the_operation_field(live, owner, client_for):
    operations = [{"op": "rename", "label": "missing", "to": "x"}]

    response = client_for(owner).post(plan_url(live), {"operations": operations}, format="json")

    assert response.status_code == 400
    assert "operations[0].label" in response.json()["fields"]


def test_reviewers_read_the_history_but_cannot_change_it(live, client_for):
    reviewer = UserFactory(username="checker")
    project_member_set(project=live, user=reviewer, role=ProjectMember.Role.REVIEWER)
    api = client_for(reviewer)

    listed = api.get(versions_url(live))
    planned = api.post(plan_url(live), {"operations": RENAME}, format="json")
    created = api.post(versions_url(live), {"operations": RENAME, "token": "x"}, format="json")

    assert listed.status_code == 200
    assert [v["number"] for v in listed.json()["results"]] == [1]
    assert (planned.status_code, created.status_code) == (403, 403)


@pytest.mark.parametrize("who", ["annotator", "outsider"])
def test_workers_and_strangers_get_nothing(live, client_for, outsider, who):
    user = make_annotator(live, "labeler") if who == "annotator" else outsider
    expected = 403 if who == "annotator" else 404

    response = client_for(user).get(versions_url(live))

    assert response.status_code == expected


def test_version_list_query_count_does_not_grow(
    live, owner, client_for, django_assert_max_num_queries
):
    api = client_for(owner)
    for n in range(5):
        operations = [{"op": "add", "label": {"value": f"extra{n}"}}]
        token = api.post(plan_url(live), {"operations": operations}, format="json").json()["token"]
        api.post(versions_url(live), {"operations": operations, "token": token}, format="json")

    with django_assert_max_num_queries(4):
        response = api.get(versions_url(live))

    assert [v["number"] for v in response.json()["results"]] == [6, 5, 4, 3, 2, 1]

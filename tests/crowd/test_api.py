from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotation.models import Annotation
from crowd.models import Assignment
from crowd.services import client_key_compute
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db


def test_auth_token_exchanges_credentials_for_a_token(worker):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "worker", "password": "pass-word-123"}, format="json"
    )
    wrong = APIClient().post(
        "/api/v1/auth/token/", {"username": "worker", "password": "nope"}, format="json"
    )

    assert response.status_code == 200
    token = response.json()["token"]
    authed = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert authed.get("/api/v1/projects/").status_code == 200
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "authentication_failed"


def test_next_returns_the_item_without_gold(project, worker, gold_item, monkeypatch, client_for):
    project.gold_ratio = 0.5
    project.save(update_fields=["gold_ratio"])
    regular = ItemFactory(project=project)
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.0)  # always roll for gold
    seen = []

    for _ in range(2):
        response = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/")
        assert response.status_code == 200
        body = response.json()
        seen.append(body)

    assert [body["item"]["id"] for body in seen] == [gold_item.pk, regular.pk]
    for body in seen:
        assert set(body) == {"assignment", "item", "expires_at", "suggestion"}
        assert body["suggestion"] is None  # the project does not show suggestions
        assert set(body["item"]) == {"id", "data", "image_urls"}  # never the gold answer
        assert "gold" not in str(body)


def test_next_returns_204_when_nothing_is_left(project, worker, client_for):
    response = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 204


def test_next_is_404_on_a_project_the_worker_cannot_see(project, worker, owner, client_for):
    other = ProjectFactory(created_by=owner)
    ItemFactory(project=other)

    response = client_for(worker).post(f"/api/v1/projects/{other.pk}/next/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_next_is_403_for_a_reviewer_without_a_pool(project, item, client_for):
    reviewer = UserFactory(username="rev")
    project.members.create(user=reviewer, role="reviewer")

    response = client_for(reviewer).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 403


def test_submit_is_idempotent_and_can_return_the_next_item(project, worker, client_for):
    ItemFactory.create_batch(2, project=project)
    client = client_for(worker)
    first = client.post(f"/api/v1/projects/{project.pk}/next/").json()
    url = f"/api/v1/assignments/{first['assignment']}/submit/?next=1"

    response = client.post(url, {"label": "negative", "duration_ms": 1234}, format="json")
    repeat = client.post(url, {"label": "negative", "duration_ms": 1234}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["annotation"]["label"] == "negative"
    assert body["annotation"]["duration_ms"] == 1234
    assert body["next"]["item"]["id"] != first["item"]["id"]
    assert repeat.json()["annotation"]["id"] == body["annotation"]["id"]
    assert Annotation.objects.count() == 1


def test_submit_with_a_bad_label_names_the_field(project, worker, item, client_for):
    client = client_for(worker)
    claimed = client.post(f"/api/v1/projects/{project.pk}/next/").json()

    response = client.post(
        f"/api/v1/assignments/{claimed['assignment']}/submit/", {"label": "maybe"}, format="json"
    )

    assert response.status_code == 400
    assert "label" in response.json()["fields"]
    assert Annotation.objects.count() == 0


def test_a_worker_cannot_submit_someone_elses_assignment(project, worker, item, client_for):
    claimed = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/").json()
    intruder = make_annotator(project, "intruder")

    response = client_for(intruder).post(
        f"/api/v1/assignments/{claimed['assignment']}/submit/", {"label": "positive"}, format="json"
    )

    assert response.status_code == 404


def test_skip_releases_the_item(project, worker, item, client_for):
    client = client_for(worker)
    claimed = client.post(f"/api/v1/projects/{project.pk}/next/").json()

    response = client.post(f"/api/v1/assignments/{claimed['assignment']}/skip/?next=1")

    assert response.status_code == 200
    assert response.json() == {
        "assignment": claimed["assignment"],
        "status": "skipped",
        "next": None,
    }
    assert Assignment.objects.get().status == Assignment.Status.SKIPPED


def test_owner_adds_members_and_annotators_can_then_label(project, owner, item, client_for):
    UserFactory(username="newbie")
    client = client_for(owner)

    added = client.post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "newbie", "role": "annotator"},
        format="json",
    )
    unknown = client.post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "ghost", "role": "annotator"},
        format="json",
    )
    listed = client.get(f"/api/v1/projects/{project.pk}/members/")

    assert added.status_code == 201
    assert unknown.status_code == 400
    assert "username" in unknown.json()["fields"]
    assert {m["username"]: m["role"] for m in listed.json()} == {
        "owner": "owner",
        "newbie": "annotator",
    }
    newbie_client = client_for(UserFactory(username="newbie"))
    assert newbie_client.post(f"/api/v1/projects/{project.pk}/next/").status_code == 200


def test_only_owners_manage_members(project, worker, client_for):
    response = client_for(worker).get(f"/api/v1/projects/{project.pk}/members/")

    assert response.status_code == 403


def test_users_are_created_by_staff_only(owner, client_for):
    staff = UserFactory(username="admin")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    body = {"username": "w9", "password": "a-Long-passw0rd!", "email": "w9@example.org"}

    by_owner = client_for(owner).post("/api/v1/users/", body, format="json")
    by_staff = client_for(staff).post("/api/v1/users/", body, format="json")
    again = client_for(staff).post("/api/v1/users/", body, format="json")

    assert by_owner.status_code == 403
    assert by_staff.status_code == 201
    assert by_staff.json()["username"] == "w9"
    assert again.status_code == 400
    assert "username" in again.json()["fields"]


def test_crowd_endpoints_are_throttled_per_worker(project, worker, settings, client_for):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"crowd": "3/min", "auth": None},
    }
    client = client_for(worker)
    other = client_for(make_annotator(project, "other"))

    codes = [client.post(f"/api/v1/projects/{project.pk}/next/").status_code for _ in range(4)]

    assert codes == [204, 204, 204, 429]
    assert other.post(f"/api/v1/projects/{project.pk}/next/").status_code == 204


def test_submit_succeeds_when_quality_scheduling_fails(
    project, worker, item, client_for, django_capture_on_commit_callbacks
):
    from unittest import mock

    from quality.tasks import quality_recompute_task

    client = client_for(worker)
    claimed = client.post(f"/api/v1/projects/{project.pk}/next/").json()

    with (
        mock.patch.object(quality_recompute_task, "apply_async", side_effect=OSError("down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(
            f"/api/v1/assignments/{claimed['assignment']}/submit/",
            {"label": "positive"},
            format="json",
        )

    assert response.status_code == 200
    assert Annotation.objects.filter(item=item).count() == 1


def test_submit_stores_a_keyed_hash_of_the_client(project, worker, item):
    client = APIClient(REMOTE_ADDR="192.0.2.77", HTTP_USER_AGENT="LabelBot/2.1")
    client.force_authenticate(worker)
    claimed = client.post(f"/api/v1/projects/{project.pk}/next/").json()

    response = client.post(
        f"/api/v1/assignments/{claimed['assignment']}/submit/", {"label": "positive"}
    )

    assert response.status_code == 200
    stored = Annotation.objects.get().client_key
    assert stored == client_key_compute(address="192.0.2.77", user_agent="LabelBot/2.1")
    assert stored != client_key_compute(address="192.0.2.78", user_agent="LabelBot/2.1")

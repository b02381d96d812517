from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotation.models import ImportJob, Item, Project
from tests.annotation.factories import ItemFactory, ProjectFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

NEW_PROJECT = {
    "name": "Toxicity",
    "instructions": "Is the comment **toxic**?",
    "task_type": "single_label",
    "labels": [{"value": "toxic", "hotkey": "t"}, {"value": "fine", "hotkey": "f"}],
    "overlap": 5,
    "gold_ratio": 0.2,
}


def jsonl_file(name: str, rows: list[dict]) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, "".join(json.dumps(r) + "\n" for r in rows).encode())


# --- Projects ---------------------------------------------------------------------------------


def test_project_create_makes_the_caller_owner(outsider, client_for):
    response = client_for(outsider).post("/api/v1/projects/", NEW_PROJECT, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    project = Project.objects.get(pk=body["id"])
    assert body["role"] == "owner"
    assert body["labels"] == [
        {**label, "colour": colour}
        for label, colour in zip(NEW_PROJECT["labels"], ["#0072b2", "#d55e00"], strict=True)
    ]
    assert (body["overlap"], body["gold_ratio"], body["reservation_timeout_seconds"]) == (
        5,
        0.2,
        600,
    )
    assert set(body) >= {"id", "name", "instructions", "task_type", "created_at"}
    assert project.members.get().user == outsider


def test_project_create_reports_invalid_fields(outsider, client_for):
    body = {**NEW_PROJECT, "labels": [{"value": "a", "hotkey": "1"}, {"value": "a"}]}

    response = client_for(outsider).post("/api/v1/projects/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "labels[1]" in response.json()["fields"]
    assert not Project.objects.filter(name="Toxicity").exists()


def test_project_create_requires_authentication():
    response = APIClient().post("/api/v1/projects/", NEW_PROJECT, format="json")

    assert response.status_code in (401, 403)
    assert not Project.objects.exists()


def test_project_list_shows_projects_in_any_role_with_the_role(project, owner, worker, client_for):
    ProjectFactory(name="Not mine")
    own = ProjectFactory(created_by=worker, name="Worker's own")

    body = client_for(worker).get("/api/v1/projects/").json()

    assert body["count"] == 2
    roles = {row["name"]: row["role"] for row in body["results"]}
    assert roles == {"Reviews": "annotator", own.name: "owner"}


def test_project_list_query_count_does_not_grow_with_projects(
    owner, django_assert_max_num_queries, client_for
):
    for n in range(8):
        ProjectFactory(created_by=owner, name=f"P{n}")
    client = client_for(owner)

    with django_assert_max_num_queries(2):
        response = client.get("/api/v1/projects/")

    assert response.json()["count"] == 8


def test_project_detail_visible_to_members_404_for_others(project, worker, outsider, client_for):
    assert client_for(worker).get(f"/api/v1/projects/{project.pk}/").json()["role"] == "annotator"
    assert client_for(outsider).get(f"/api/v1/projects/{project.pk}/").status_code == 404


def test_project_patch_by_owner_updates_and_retargets_items(project, owner, item, client_for):
    response = client_for(owner).patch(
        f"/api/v1/projects/{project.pk}/", {"overlap": 5, "name": "Renamed"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["overlap"], response.json()["name"]) == (5, "Renamed")
    item.refresh_from_db()
    assert item.target == 5


@pytest.mark.parametrize(("who", "status"), [("worker", 403), ("reviewer", 403), ("outsider", 404)])
def test_project_patch_refused_for_non_owners(
    project, worker, reviewer, outsider, who, status, client_for
):
    user = {"worker": worker, "reviewer": reviewer, "outsider": outsider}[who]

    response = client_for(user).patch(
        f"/api/v1/projects/{project.pk}/", {"name": "Hijacked"}, format="json"
    )

    assert response.status_code == status
    project.refresh_from_db()
    assert project.name == "Reviews"


def test_project_patch_invalid_value_is_400_with_field(project, owner, client_for):
    response = client_for(owner).patch(
        f"/api/v1/projects/{project.pk}/", {"gold_ratio": 0.9}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["fields"]  # the service names the rule it refused
    project.refresh_from_db()
    assert project.gold_ratio == 0.0


def test_worker_of_project_a_gets_404_on_project_b(project, worker, owner, client_for):
    other = ProjectFactory(created_by=owner, name="B")
    job = ImportJob.objects.create(
        project=other, created_by=owner, file="imports/x.csv", original_name="x.csv", format="csv"
    )
    client = client_for(worker)

    assert client.get(f"/api/v1/projects/{other.pk}/").status_code == 404
    assert client.get(f"/api/v1/projects/{other.pk}/items/").status_code == 404
    assert client.get(f"/api/v1/imports/{job.pk}/").status_code == 404
    upload = jsonl_file("a.jsonl", [{"text": "x"}])
    assert client.post(f"/api/v1/projects/{other.pk}/imports/", {"file": upload}).status_code == 404


# --- Imports ----------------------------------------------------------------------------------


def test_import_through_the_api_runs_and_reports_progress(
    project, owner, celery_eager, django_capture_on_commit_callbacks, client_for
):
    upload = jsonl_file(
        "data.jsonl", [{"text": "a"}, {"text": "b", "gold": "positive"}, {"text": "a"}]
    )
    client = client_for(owner)

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(f"/api/v1/projects/{project.pk}/imports/", {"file": upload})
    detail = client.get(f"/api/v1/imports/{created.json()['id']}/")

    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "pending"
    body = detail.json()
    assert body["status"] == "succeeded"
    assert body["progress"] == 1.0
    assert (body["total_rows"], body["processed_rows"]) == (3, 3)
    assert (body["created_count"], body["duplicate_count"]) == (2, 1)
    assert body["errors"] == []
    assert body["finished_at"] is not None
    assert Item.objects.filter(project=project).count() == 2


def test_import_failure_lists_line_and_field(
    project, owner, celery_eager, django_capture_on_commit_callbacks, client_for
):
    upload = SimpleUploadedFile("bad.csv", b"text,gold\nok,positive\nbad,maybe\n")
    client = client_for(owner)

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(f"/api/v1/projects/{project.pk}/imports/", {"file": upload})
    body = client.get(f"/api/v1/imports/{created.json()['id']}/").json()

    assert body["status"] == "failed"
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(3, "gold")]
    assert Item.objects.filter(project=project).count() == 0


def test_import_create_refuses_a_bad_extension_at_once(project, owner, client_for):
    upload = SimpleUploadedFile("data.xlsx", b"PK\x03\x04")

    response = client_for(owner).post(f"/api/v1/projects/{project.pk}/imports/", {"file": upload})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["file"]
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize("who", ["worker", "reviewer"])
def test_import_create_is_for_owners_only(project, worker, reviewer, who, client_for):
    user = worker if who == "worker" else reviewer
    upload = jsonl_file("a.jsonl", [{"text": "x"}])

    response = client_for(user).post(f"/api/v1/projects/{project.pk}/imports/", {"file": upload})

    assert response.status_code == 403
    assert not ImportJob.objects.exists()


def test_import_detail_for_owner_and_reviewer_only(project, owner, reviewer, worker, client_for):
    job = ImportJob.objects.create(
        project=project, created_by=owner, file="imports/x.csv", original_name="x.csv", format="csv"
    )

    assert client_for(reviewer).get(f"/api/v1/imports/{job.pk}/").status_code == 200
    assert client_for(worker).get(f"/api/v1/imports/{job.pk}/").status_code == 403


# --- Items ------------------------------------------------------------------------------------


def test_item_list_shows_gold_and_state_to_owners(project, owner, item, gold_item, client_for):
    body = client_for(owner).get(f"/api/v1/projects/{project.pk}/items/").json()

    assert body["count"] == 2
    first, second = body["results"]
    assert first == {
        "id": item.pk,
        "data": item.data,
        "gold": None,
        "is_gold": False,
        "state": "open",
        "annotation_count": 0,
        "target": 3,
    }
    assert (second["gold"], second["is_gold"]) == ({"label": "positive"}, True)


def test_item_list_is_paginated(project, owner, client_for):
    ItemFactory.create_batch(55, project=project)

    first = client_for(owner).get(f"/api/v1/projects/{project.pk}/items/").json()
    second = client_for(owner).get(f"/api/v1/projects/{project.pk}/items/?page=2").json()

    assert (first["count"], len(first["results"]), len(second["results"])) == (55, 50, 5)
    assert first["next"] is not None
    assert second["next"] is None


def test_item_list_refused_to_annotators_and_404_for_outsiders(
    project, worker, outsider, item, client_for
):
    assert client_for(worker).get(f"/api/v1/projects/{project.pk}/items/").status_code == 403
    assert client_for(outsider).get(f"/api/v1/projects/{project.pk}/items/").status_code == 404


def test_item_list_open_to_reviewers(project, reviewer, gold_item, client_for):
    response = client_for(reviewer).get(f"/api/v1/projects/{project.pk}/items/")

    assert response.status_code == 200
    assert response.json()["results"][0]["gold"] == {"label": "positive"}


def test_item_list_query_count_does_not_grow_with_items(
    project, owner, django_assert_max_num_queries, client_for
):
    ItemFactory.create_batch(30, project=project)
    client = client_for(owner)

    with django_assert_max_num_queries(3):
        response = client.get(f"/api/v1/projects/{project.pk}/items/")

    assert len(response.json()["results"]) == 30

from __future__ import annotations

import hashlib
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from quality import release_tasks
from quality.models import Release
from quality.releases import release_build, release_formats
from tests.annotation.factories import UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import label_items, make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def labeled(project):
    authors = [UserFactory(username=f"annotator-{i}") for i in range(3)]
    return label_items(project, authors, ["positive", "positive", "negative"], count=3)


@pytest.fixture
def ready(labeled, owner):
    return release_build(release=make_release(labeled, owner, name="first"))


def list_url(project):
    return reverse("api:release-list", args=[project.pk])


def detail_url(release):
    return reverse("api:release-detail", args=[release.pk])


def download_url(release, fmt="jsonl"):
    return reverse("api:release-download", args=[release.pk]) + f"?format={fmt}"


# --- list and create ----------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "reviewer"])
def test_release_list_api_shows_versions_to_owners_and_reviewers(
    who, project, owner, reviewer, ready, django_assert_max_num_queries, client_for
):
    make_release(project, owner)
    user = {"owner": owner, "reviewer": reviewer}[who]

    with django_assert_max_num_queries(3):
        response = client_for(user).get(list_url(project))

    assert response.status_code == 200
    body = response.json()
    assert [r["version"] for r in body] == [2, 1]
    assert body[1]["status"] == "ready"
    assert body[1]["counts"] == {"items": 3, "gold_items": 0, "annotations": 9, "workers": 3}
    assert body[0]["counts"] is None
    assert body[1]["created_by"] == "owner"


def test_release_list_api_query_count_does_not_grow(
    project, owner, django_assert_max_num_queries, client_for
):
    for _ in range(10):
        make_release(project, owner)

    with django_assert_max_num_queries(3):
        response = client_for(owner).get(list_url(project))

    assert len(response.json()) == 10


def test_release_list_api_hides_project_from_strangers_and_refuses_annotators(
    project, outsider, client_for
):
    annotator = make_annotator(project, "annotator")

    hidden = client_for(outsider).get(list_url(project))
    refused = client_for(annotator).get(list_url(project))
    anonymous = client_for(None).get(list_url(project))

    assert hidden.status_code == 404
    assert hidden.json()["code"] == "not_found"
    assert refused.status_code == 403
    assert anonymous.status_code == 401


def test_release_create_api_creates_the_next_version_and_enqueues_it(
    labeled, owner, django_capture_on_commit_callbacks, client_for
):
    with (
        mock.patch.object(release_tasks.release_build_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client_for(owner).post(
            list_url(labeled), {"name": "Spring", "notes": "n", "include_raw": True}, format="json"
        )

    assert response.status_code == 201
    body = response.json()
    assert (body["version"], body["tag"], body["status"]) == (1, "v1", "pending")
    assert body["include_raw"] is True
    assert body["manifest"] is None
    assert body["config_snapshot"]["labels"] == labeled.labels
    delay.assert_called_once_with(body["id"])


def test_release_create_api_with_empty_body_uses_defaults(project, owner, client_for):
    with mock.patch.object(release_tasks.release_build_task, "delay"):
        response = client_for(owner).post(list_url(project), {}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["include_raw"], body["include_identities"]) == ("", False, False)


def test_release_create_api_includes_identities_when_the_owner_asks(labeled, owner, client_for):
    with mock.patch.object(release_tasks.release_build_task, "delay"):
        response = client_for(owner).post(
            list_url(labeled), {"include_raw": True, "include_identities": True}, format="json"
        )

    assert response.status_code == 201
    assert response.json()["include_identities"] is True
    release = Release.objects.get()
    assert (release.include_raw, release.include_identities) == (True, True)
    built = release_build(release=release)
    data = default_storage.open(built.files.get(format="jsonl").path).read().decode()
    assert '"annotator_username":"annotator-0"' in data


def test_release_create_api_refuses_identities_without_raw(project, owner, client_for):
    with mock.patch.object(release_tasks.release_build_task, "delay"):
        response = client_for(owner).post(
            list_url(project), {"include_identities": True}, format="json"
        )

    assert response.status_code == 400
    assert "include_identities" in response.json()["fields"]
    assert not Release.objects.exists()


def test_release_create_api_validates_input(project, owner, client_for):
    response = client_for(owner).post(list_url(project), {"name": "x" * 201}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()["fields"]
    assert not Release.objects.exists()


def test_release_create_api_is_for_owners_only(project, reviewer, outsider, client_for):
    annotator = make_annotator(project, "annotator")

    by_reviewer = client_for(reviewer).post(list_url(project), {}, format="json")
    by_annotator = client_for(annotator).post(list_url(project), {}, format="json")
    by_stranger = client_for(outsider).post(list_url(project), {}, format="json")

    assert by_reviewer.status_code == 403
    assert by_annotator.status_code == 403
    assert by_stranger.status_code == 404
    assert not Release.objects.exists()


# --- detail -------------------------------------------------------------------------------------


def test_release_detail_api_returns_manifest_and_files(ready, reviewer, client_for):
    response = client_for(reviewer).get(detail_url(ready))

    assert response.status_code == 200
    body = response.json()
    assert body["manifest"]["counts"]["items"] == 3
    assert body["manifest"]["consensus_method"] == "majority vote, ties by label order"
    files = {f["format"]: f for f in body["files"]}
    assert set(files) == {"jsonl", "csv", "parquet", "hf", "labelstudio", "datasheet"}
    stored = ready.files.get(format="jsonl")
    assert files["jsonl"]["sha256"] == stored.sha256
    assert files["jsonl"]["download_url"] == download_url(ready, "jsonl")


def test_release_detail_api_permissions(ready, project, outsider, client_for):
    annotator = make_annotator(project, "annotator")

    assert client_for(outsider).get(detail_url(ready)).status_code == 404
    assert client_for(annotator).get(detail_url(ready)).status_code == 403
    missing = reverse("api:release-detail", args=[ready.pk + 100])
    assert client_for(outsider).get(missing).status_code == 404


# --- download -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("jsonl", "application/x-ndjson"), ("csv", "text/csv; charset=utf-8")],
)
def test_release_download_api_streams_the_file_as_an_attachment(
    ready, owner, fmt, content_type, client_for
):
    response = client_for(owner).get(download_url(ready, fmt))

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    stored = ready.files.get(format=fmt)
    assert hashlib.sha256(body).hexdigest() == stored.sha256
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="reviews-v1.{fmt}"'
    assert response["Content-Length"] == str(stored.size)
    assert response["ETag"] == f'"{stored.sha256}"'


def test_release_download_api_refuses_releases_that_are_not_ready(labeled, owner, client_for):
    release = make_release(labeled, owner)

    response = client_for(owner).get(download_url(release))

    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"


@pytest.mark.parametrize("query", ["?format=xlsx", "?format=", ""])
def test_release_download_api_rejects_unknown_formats(ready, owner, query, client_for):
    url = reverse("api:release-download", args=[ready.pk]) + query

    response = client_for(owner).get(url)

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_format"


def test_release_download_api_refuses_a_tampered_file(ready, owner, client_for):
    path = ready.files.get(format="jsonl").path
    default_storage.delete(path)
    default_storage.save(path, ContentFile(b'{"forged":true}\n'))

    response = client_for(owner).get(download_url(ready))

    assert response.status_code == 500
    assert response.json()["code"] == "checksum_mismatch"
    assert b"forged" not in response.content


def test_release_download_api_permissions(ready, project, outsider, client_for):
    annotator = make_annotator(project, "annotator")

    assert client_for(outsider).get(download_url(ready)).status_code == 404
    assert client_for(annotator).get(download_url(ready)).status_code == 403


# --- schema -------------------------------------------------------------------------------------


def test_release_api_schema_documents_the_endpoints():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    paths = schema["paths"]
    assert set(paths["/api/v1/projects/{project_id}/releases/"]) >= {"get", "post"}
    download = paths["/api/v1/releases/{release_id}/download/"]["get"]
    fmt = next(p for p in download["parameters"] if p["name"] == "format")
    assert sorted(fmt["schema"]["enum"]) == sorted(release_formats())
    assert {"csv", "jsonl"} <= set(release_formats())
    assert "application/octet-stream" in download["responses"]["200"]["content"]
    detail = paths["/api/v1/releases/{release_id}/"]["get"]["responses"]["200"]
    ref = detail["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "files" in schema["components"]["schemas"][ref]["properties"]

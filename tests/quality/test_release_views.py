from __future__ import annotations

import hashlib
import re
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from quality import release_tasks
from quality.models import Release
from quality.releases import release_build
from tests.annotation.factories import UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import label_items, make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def labeled(project):
    authors = [UserFactory(username=f"annotator-{i}", email=f"a{i}@corp.example") for i in range(3)]
    return label_items(project, authors, ["negative", "positive", "negative"], count=4)


@pytest.fixture
def ready(labeled, owner):
    return release_build(release=make_release(labeled, owner, name="Spring cut"))


def list_url(project):
    return reverse("releases:release-list", args=[project.pk])


def detail_url(release):
    return reverse("releases:release-detail", args=[release.pk])


# --- list page ----------------------------------------------------------------------------------


def test_release_list_page_shows_versions_and_the_build_form_to_owners(
    client, owner, ready, django_assert_max_num_queries
):
    make_release(ready.project, owner, name="Pending one")
    client.force_login(owner)

    with django_assert_max_num_queries(7):
        response = client.get(list_url(ready.project))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Spring cut" in page
    assert "Pending one" in page
    assert '<td class="num muted">—</td>' in page  # not built yet: no counts
    assert f'href="{detail_url(ready)}"' in page
    assert 'aria-current="page">Releases' in page.replace("\n", "")
    assert "Build new version" in page
    assert 'name="include_raw"' in page
    assert 'name="include_identities"' in page
    assert "adds usernames, emails and external platform ids of annotators" in page
    assert response.context["releases"][0].version == 2


def test_release_list_page_query_count_does_not_grow(
    client, owner, project, django_assert_max_num_queries
):
    for _ in range(8):
        make_release(project, owner)
    client.force_login(owner)

    with django_assert_max_num_queries(7):
        response = client.get(list_url(project))

    assert len(re.findall(r'<tr id="release-\d+"', response.content.decode())) == 8


def test_release_list_page_has_no_build_form_for_reviewers(client, reviewer, ready):
    client.force_login(reviewer)

    response = client.get(list_url(ready.project))

    assert response.status_code == 200
    assert "Spring cut" in response.content.decode()
    assert "Build new version" not in response.content.decode()


def test_release_list_page_refuses_annotators_and_hides_from_strangers(client, project, outsider):
    annotator = make_annotator(project, "annotator")

    client.force_login(annotator)
    refused = client.get(list_url(project))
    client.force_login(outsider)
    hidden = client.get(list_url(project))
    client.logout()
    anonymous = client.get(list_url(project))

    assert refused.status_code == 403
    assert hidden.status_code == 404
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("login"))


def test_release_list_post_creates_a_release_and_redirects(
    client, owner, labeled, django_capture_on_commit_callbacks
):
    client.force_login(owner)

    with (
        mock.patch.object(release_tasks.release_build_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(
            list_url(labeled), {"name": "Nightly", "notes": "", "include_raw": "on"}
        )

    release = Release.objects.get()
    assert response.status_code == 302
    assert response["Location"] == detail_url(release)
    assert (release.name, release.include_raw, release.version) == ("Nightly", True, 1)
    delay.assert_called_once_with(release.pk)


def test_release_list_htmx_post_redirects_on_the_client(client, owner, labeled):
    client.force_login(owner)

    with mock.patch.object(release_tasks.release_build_task, "delay"):
        response = client.post(list_url(labeled), {"name": ""}, **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == detail_url(Release.objects.get())


def test_release_list_invalid_post_returns_the_form_with_422(client, owner, labeled):
    client.force_login(owner)

    response = client.post(list_url(labeled), {"name": "x" * 201}, **HTMX)

    assert response.status_code == 422
    page = response.content.decode()
    assert 'id="release-form"' in page
    assert "<html" not in page
    assert 'aria-invalid="true"' in page
    assert not Release.objects.exists()


def test_release_list_post_with_identities_records_the_owner_choice(client, owner, labeled):
    client.force_login(owner)

    with mock.patch.object(release_tasks.release_build_task, "delay"):
        response = client.post(list_url(labeled), {"include_raw": "on", "include_identities": "on"})

    release = Release.objects.get()
    assert response.status_code == 302
    assert (release.include_raw, release.include_identities) == (True, True)
    release_build(release=release)
    page = client.get(detail_url(release)).content.decode()
    assert "annotator identities (usernames, emails, external platform ids)" in page


def test_release_list_post_refuses_identities_without_raw(client, owner, labeled):
    client.force_login(owner)

    response = client.post(list_url(labeled), {"include_identities": "on"}, **HTMX)

    assert response.status_code == 422
    page = response.content.decode()
    assert 'id="include-identities-errors"' in page
    assert "only exported with raw annotations" in page
    assert not Release.objects.exists()


def test_release_list_post_is_refused_for_reviewers(client, reviewer, labeled):
    client.force_login(reviewer)

    response = client.post(list_url(labeled), {"name": "x"})

    assert response.status_code == 403
    assert not Release.objects.exists()


# --- detail page --------------------------------------------------------------------------------


def test_release_detail_polls_every_second_while_building(client, owner, labeled):
    release = make_release(labeled, owner)
    Release.objects.filter(pk=release.pk).update(status=Release.Status.BUILDING, progress=0.42)
    client.force_login(owner)

    page = client.get(detail_url(release))
    fragment = client.get(detail_url(release), **HTMX)

    assert page.status_code == 200
    assert 'hx-trigger="every 1s"' in page.content.decode()
    assert f'hx-get="{detail_url(release)}"' in page.content.decode()
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body
    assert 'hx-trigger="every 1s"' in body
    assert 'value="42"' in body


def test_release_detail_stops_polling_with_286_once_ready(client, owner, ready):
    client.force_login(owner)

    fragment = client.get(detail_url(ready), **HTMX)

    assert fragment.status_code == 286
    body = fragment.content.decode()
    assert "hx-trigger" not in body
    assert ready.files.get(format="jsonl").sha256 in body


def test_release_detail_shows_the_manifest_summary(client, reviewer, ready):
    client.force_login(reviewer)

    response = client.get(detail_url(ready))

    page = response.content.decode()
    manifest = ready.manifest
    assert response.status_code == 200
    assert "hx-trigger" not in page
    assert f'<div class="stat-value">{manifest["counts"]["items"]}</div>' in page
    assert f'<div class="stat-value">{manifest["counts"]["annotations"]}</div>' in page
    for record in ready.files.filter(format__in=["jsonl", "csv"]):
        assert record.sha256 in page
        assert reverse("releases:release-download", args=[ready.pk, record.format]) in page
    assert "majority vote, ties by label order" in page
    assert response.context["label_rows"][0] == {
        "label": "positive",
        "items": 0,
        "annotations": 4,
        "share": 0.0,
    }
    assert "Build again" not in page


def test_release_detail_of_a_failed_release_offers_a_retry_to_owners(client, owner, labeled):
    release = make_release(labeled, owner)
    Release.objects.filter(pk=release.pk).update(status=Release.Status.FAILED, error="Boom: x")
    client.force_login(owner)

    page = client.get(detail_url(release)).content.decode()
    with mock.patch.object(release_tasks.release_build_task, "delay"):
        retried = client.post(reverse("releases:release-retry", args=[release.pk]))

    assert "Boom: x" in page
    assert "Build again" in page
    assert retried.status_code == 302
    release.refresh_from_db()
    assert release.status == Release.Status.PENDING


def test_release_detail_permissions(client, project, ready, outsider):
    annotator = make_annotator(project, "annotator")

    client.force_login(annotator)
    refused = client.get(detail_url(ready))
    client.force_login(outsider)
    hidden = client.get(detail_url(ready))

    assert refused.status_code == 403
    assert hidden.status_code == 404


# --- downloads ----------------------------------------------------------------------------------


def test_release_download_sends_a_named_attachment(client, reviewer, ready):
    client.force_login(reviewer)

    response = client.get(reverse("releases:release-download", args=[ready.pk, "csv"]))

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == ready.files.get(format="csv").sha256
    assert response["Content-Disposition"] == 'attachment; filename="reviews-v1.csv"'
    assert body.startswith(
        b"item_id,text,label,confidence,expert_reviewed,agreement,num_annotations,is_gold,data\n"
    )
    assert b"corp.example" not in body


def test_release_download_refuses_a_tampered_file(client, owner, ready):
    path = ready.files.get(format="csv").path
    default_storage.delete(path)
    default_storage.save(path, ContentFile(b"item_id\n1\n"))
    client.force_login(owner)

    response = client.get(reverse("releases:release-download", args=[ready.pk, "csv"]))

    assert response.status_code == 500
    assert "does not match its checksum" in response.content.decode()


def test_release_download_errors(client, owner, labeled):
    pending = make_release(labeled, owner)
    client.force_login(owner)

    not_ready = client.get(reverse("releases:release-download", args=[pending.pk, "jsonl"]))
    unknown = client.get(reverse("releases:release-download", args=[pending.pk, "xlsx"]))

    assert not_ready.status_code == 409
    assert "not ready" in not_ready.content.decode()
    assert unknown.status_code == 400


def test_release_download_permissions(client, project, ready):
    annotator = make_annotator(project, "annotator")
    url = reverse("releases:release-download", args=[ready.pk, "jsonl"])

    client.force_login(annotator)

    assert client.get(url).status_code == 403

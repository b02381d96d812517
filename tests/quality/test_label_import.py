from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Annotation, Item
from quality import label_import as service
from quality.label_import import LabelImportError, label_import_run, worker_pseudonym
from tests.annotation.factories import ItemFactory

pytestmark = pytest.mark.django_db

GOOD = (
    "item,worker,label,text\n"
    "a1,w-alice,positive,Great film\n"
    "a1,w-bob,negative,Great film\n"
    "a2,w-alice,negative,\n"
    "a3,w-carol,positive,\n"
)


def upload(content: str | bytes, name: str = "labels.csv") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="text/csv")


@pytest.fixture
def schedule():
    with mock.patch.object(service, "quality_recompute_schedule") as patched:
        yield patched


def test_label_import_creates_items_pseudonymous_workers_and_annotations(project, owner, schedule):
    existing = ItemFactory(project=project, data={"text": "Old", "external_id": "a3"}, target=3)

    result = label_import_run(project=project, file=upload(GOOD), uploaded_by=owner)

    assert (result.rows, result.items_created, result.items_matched) == (4, 2, 1)
    assert (result.workers, result.workers_created, result.annotations_created) == (3, 3, 4)
    a1 = Item.objects.get(project=project, data__external_id="a1")
    assert a1.data == {"text": "Great film", "external_id": "a1"}
    assert (a1.target, a1.slots_taken, a1.annotation_count) == (3, 2, 2)
    assert Item.objects.get(project=project, data__external_id="a2").data["text"] == ""
    existing.refresh_from_db()
    assert (existing.slots_taken, existing.annotation_count) == (1, 1)
    labels = sorted(
        (a.item.data["external_id"], a.author.username, a.label)
        for a in Annotation.objects.filter(project=project).select_related("item", "author")
    )
    alice = worker_pseudonym(project_id=project.pk, worker="w-alice")
    assert ("a1", alice, "positive") in labels
    assert len(labels) == 4
    user = get_user_model().objects.get(username=alice)
    assert not user.is_active
    assert not user.has_usable_password()
    schedule.assert_called_once_with(project_id=project.pk)


def test_label_import_again_skips_what_is_already_there(project, owner, schedule):
    label_import_run(project=project, file=upload(GOOD), uploaded_by=owner)

    again = label_import_run(project=project, file=upload(GOOD), uploaded_by=owner)

    assert (again.items_created, again.items_matched, again.workers_created) == (0, 3, 0)
    assert (again.annotations_created, again.duplicates_skipped) == (0, 4)
    assert Annotation.objects.filter(project=project).count() == 4
    assert Item.objects.get(project=project, data__external_id="a1").annotation_count == 2


def test_label_import_reports_every_bad_line_and_writes_nothing(project, owner, schedule):
    content = (
        "item,worker,label\na1,w1,positive\na2,,positive\na3,w2,neutral\na4,w3\n,w4,negative\n"
    )
    users_before = get_user_model().objects.count()

    with pytest.raises(LabelImportError) as caught:
        label_import_run(project=project, file=upload(content), uploaded_by=owner)

    errors = caught.value.errors
    assert [(e["line"], e["field"]) for e in errors] == [
        (3, "worker"),
        (4, "label"),
        (5, None),
        (6, "item"),
    ]
    assert "'neutral'" in errors[1]["message"]
    assert "negative, positive" in errors[1]["message"]
    assert not Item.objects.filter(project=project).exists()
    assert not Annotation.objects.exists()
    assert get_user_model().objects.count() == users_before
    schedule.assert_not_called()


@pytest.mark.parametrize(
    ("content", "line", "field", "words"),
    [
        ("item,label\na1,positive\n", 1, "worker", "no 'worker' column"),
        (b"item,worker,label\na1,w1,positive\na\xe9,w1,negative\n", 3, None, "not UTF-8"),
        ("item,worker,label\n", None, "file", "no rows"),
        ("item,worker,label,text\na1,w1,positive,One\na1,w2,positive,Two\n", 3, "text", "line 2"),
    ],
)
def test_label_import_file_level_errors(project, owner, schedule, content, line, field, words):
    with pytest.raises(LabelImportError) as caught:
        label_import_run(project=project, file=upload(content), uploaded_by=owner)

    (error,) = caught.value.errors
    assert (error["line"], error["field"]) == (line, field)
    assert words in error["message"]
    assert not Item.objects.filter(project=project).exists()


def test_pseudonym_is_stable_per_project_and_hides_the_external_id(project):
    name = worker_pseudonym(project_id=project.pk, worker="A1B2C3-worker-77")

    assert name == worker_pseudonym(project_id=project.pk, worker="A1B2C3-worker-77")
    assert name != worker_pseudonym(project_id=project.pk + 1, worker="A1B2C3-worker-77")
    assert name != worker_pseudonym(project_id=project.pk, worker="A1B2C3-worker-78")
    assert name.startswith(f"ext-{project.pk}-")
    assert len(name.rsplit("-", 1)[1]) == 12
    assert "A1B2C3" not in name
    int(name.rsplit("-", 1)[1], 16)  # the tail is hex
    assert "worker" not in name


def test_pseudonym_never_stored_in_clear(project, owner, schedule):
    secret = "AMT-WORKER-9F8E7D"
    label_import_run(
        project=project, file=upload(f"item,worker,label\nx,{secret},positive\n"), uploaded_by=owner
    )

    user = get_user_model().objects.get(username__startswith=f"ext-{project.pk}-")
    stored = [user.username, user.email, user.first_name, user.last_name, user.password]
    assert all(secret.lower() not in value.lower() for value in stored)
    item = Item.objects.get(project=project)
    assert secret not in str(item.data)


def test_label_import_refuses_a_real_account_holding_the_pseudonym(project, owner, schedule):
    get_user_model().objects.create_user(
        username=worker_pseudonym(project_id=project.pk, worker="w1"), password="pass-word-123"
    )

    with pytest.raises(LabelImportError) as caught:
        label_import_run(
            project=project, file=upload("item,worker,label\nx,w1,positive\n"), uploaded_by=owner
        )

    assert caught.value.errors[0]["line"] == 2
    assert not Annotation.objects.exists()


def test_label_import_text_clash_gets_a_distinct_item(project, owner, schedule):
    ItemFactory(project=project, data={"text": "Great film"})

    result = label_import_run(project=project, file=upload(GOOD), uploaded_by=owner)

    assert result.items_created == 3
    assert Item.objects.filter(project=project, data__text="Great film").count() == 2


# --- API -------------------------------------------------------------------------------------


def api_url(project):
    return reverse("api:label-import-create", kwargs={"project_id": project.pk})


def test_api_imports_labels(project, owner, client_for, schedule):
    response = client_for(owner).post(api_url(project), {"file": upload(GOOD)}, format="multipart")

    assert response.status_code == 201
    assert response.json()["annotations_created"] == 4
    assert response.json()["items_created"] == 3


def test_api_lists_line_errors_with_400(project, owner, client_for, schedule):
    bad = upload("item,worker,label\na1,w1,positive\na2,w2,maybe\n")

    response = client_for(owner).post(api_url(project), {"file": bad}, format="multipart")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_file"
    assert body["fields"]["file"] == [
        {"line": 3, "field": "label", "message": mock.ANY},
    ]
    assert not Annotation.objects.exists()


def test_api_requires_a_file(project, owner, client_for):
    response = client_for(owner).post(api_url(project), {}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()["fields"]


def test_api_refuses_non_owners(project, reviewer, outsider, worker, client_for, schedule):
    for user, status in ((reviewer, 403), (worker, 403), (outsider, 404)):
        response = client_for(user).post(
            api_url(project), {"file": upload(GOOD)}, format="multipart"
        )
        assert response.status_code == status, user
    assert client_for(None).post(api_url(project), {"file": upload(GOOD)}).status_code in (
        401,
        403,
    )
    assert not Annotation.objects.exists()


# --- HTML ------------------------------------------------------------------------------------


def page_url(project):
    return reverse("label_import:label-import", kwargs={"pk": project.pk})


def test_page_shows_the_form_to_owners(client, project, owner):
    client.force_login(owner)

    response = client.get(page_url(project))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="label-import-panel"' in page
    assert 'enctype="multipart/form-data"' in page
    assert "item,worker,label" in page


def test_page_import_success_and_errors(client, project, owner, schedule):
    client.force_login(owner)

    ok = client.post(page_url(project), {"file": upload(GOOD)})
    bad = client.post(
        page_url(project),
        {"file": upload("item,worker,label\nz,w1,maybe\n")},
        HTTP_HX_REQUEST="true",
    )

    assert ok.status_code == 200
    assert "Imported 4 labels" in ok.content.decode()
    assert bad.status_code == 422
    fragment = bad.content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="label-import-panel"')
    assert "Unknown label &#x27;maybe&#x27;" in fragment
    assert Annotation.objects.count() == 4


def test_page_refuses_non_owners(client, project, reviewer, outsider):
    for user, status in ((reviewer, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(page_url(project)).status_code == status
        assert client.post(page_url(project), {"file": upload(GOOD)}).status_code == status
    assert not Annotation.objects.exists()

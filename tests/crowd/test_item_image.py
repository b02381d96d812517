"""crowd:item-image: who sees an item's image, how stored images are served, URL redirects."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from crowd.models import Assignment, Qualification, QualificationAttempt
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2), "red").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def image_item(project):
    path = default_storage.save(f"items/{project.pk}/abc.png", ContentFile(png()))
    return ItemFactory(project=project, data={"image": path, "width": 3, "height": 2})


def url(item, **query) -> str:
    address = reverse("crowd:item-image", args=[item.project_id, item.pk])
    return address + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def get(user, address: str):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client.get(address)


def assign(item, worker, status: str = Assignment.Status.SUBMITTED) -> Assignment:
    annotation = None
    if status == Assignment.Status.SUBMITTED:
        from annotation.models import Annotation

        annotation = Annotation.objects.create(
            project=item.project, item=item, author=worker, value={"label": "positive"}
        )
    return Assignment.objects.create(
        project=item.project,
        item=item,
        worker=worker,
        status=status,
        annotation=annotation,
        expires_at=timezone.now() + timedelta(minutes=5),
    )


def test_owner_gets_the_stored_image_with_private_cache_and_nosniff(owner, image_item):
    response = get(owner, url(image_item))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == png()


def test_reviewer_and_staff_see_any_item_image(reviewer, image_item):
    staff = UserFactory(username="staff", is_staff=True)

    assert get(reviewer, url(image_item)).status_code == 200
    assert get(staff, url(image_item)).status_code == 200


@pytest.mark.parametrize(
    "status",
    [Assignment.Status.RESERVED, Assignment.Status.SUBMITTED, Assignment.Status.EXPIRED],
)
def test_annotator_sees_images_of_items_they_were_given(project, worker, image_item, status):
    assign(image_item, worker, status)

    assert get(worker, url(image_item)).status_code == 200


def test_annotator_without_an_assignment_for_the_item_gets_404(project, worker, image_item):
    other = ItemFactory(project=project)
    assign(other, worker, Assignment.Status.RESERVED)

    assert get(worker, url(image_item)).status_code == 404


def test_annotator_sees_test_items_of_a_qualification_they_started(project, worker, image_item):
    qualification = Qualification.objects.create(project=project)
    qualification.items.add(image_item)

    assert get(worker, url(image_item)).status_code == 404
    QualificationAttempt.objects.create(qualification=qualification, worker=worker)
    assert get(worker, url(image_item)).status_code == 200


def test_worker_of_another_project_and_outsiders_get_404(image_item, outsider):
    elsewhere = ProjectFactory()
    other_worker = make_annotator(elsewhere, "elsewhere")
    assign(ItemFactory(project=elsewhere), other_worker, Assignment.Status.RESERVED)

    assert get(other_worker, url(image_item)).status_code == 404
    assert get(outsider, url(image_item)).status_code == 404


def test_an_item_of_another_project_is_not_reachable_through_this_one(owner, project, image_item):
    elsewhere = ProjectFactory(created_by=owner)
    address = reverse("crowd:item-image", args=[elsewhere.pk, image_item.pk])

    assert get(owner, address).status_code == 404


def test_anonymous_users_are_sent_to_log_in(image_item):
    response = get(None, url(image_item))

    assert response.status_code == 302
    assert "login" in response["Location"]


def test_url_images_redirect_after_the_same_check(project, owner, worker):
    item = ItemFactory(project=project, data={"image": "https://cdn.example.org/a.png"})

    response = get(owner, url(item))

    assert response.status_code == 302
    assert response["Location"] == "https://cdn.example.org/a.png"
    assert get(worker, url(item)).status_code == 404


def test_pair_sides_and_missing_images(project, owner):
    item = ItemFactory(
        project=project,
        data={"image_a": "https://x.org/a.png", "image_b": "https://x.org/b.png"},
    )
    text_item = ItemFactory(project=project)

    assert get(owner, url(item, side="a"))["Location"] == "https://x.org/a.png"
    assert get(owner, url(item, side="b"))["Location"] == "https://x.org/b.png"
    assert get(owner, url(item, side="c")).status_code == 404
    assert get(owner, url(item)).status_code == 404
    assert get(owner, url(text_item)).status_code == 404


def test_paths_outside_the_projects_image_folder_are_never_served(project, owner):
    default_storage.save("imports/secret.csv", ContentFile(b"secret"))
    item = ItemFactory(project=project, data={"image": "imports/secret.csv"})
    sneaky = ItemFactory(
        project=project,
        data={"image": f"items/{project.pk}/../../imports/secret.csv"},
        content_hash="sneaky",
    )

    assert get(owner, url(item)).status_code == 404
    assert get(owner, url(sneaky)).status_code == 404

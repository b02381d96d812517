"""The model page and API: who sees versions, who may train and set the serving order."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Item
from quality.model import MIN_VETTED, model_train
from quality.model.tasks import model_train_task
from quality.models import ModelVersion
from tests.quality.test_model import sentiment_project

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def queued(monkeypatch):
    """Training requests that reached the queue (after commit)."""
    calls: list[int] = []
    monkeypatch.setattr(model_train_task, "delay", calls.append)
    return calls


def page_url(project) -> str:
    return reverse("model:page", args=[project.pk])


def test_owner_sees_versions_and_controls(client, owner, project):
    sentiment_project(project, vetted=40)
    version = model_train(project=project)
    ModelVersion.objects.create(
        project=project, version=2, status=ModelVersion.Status.FAILED, error="Boom: bad data"
    )
    client.force_login(owner)

    response = client.get(page_url(project))

    assert response.status_code == 200
    page = response.content.decode()
    assert f'id="model-version-{version.version}"' in page
    assert f"{version.validation_accuracy:.3f}" in page
    assert "Boom: bad data" in page
    assert "Train now" in page
    assert 'name="serving_order" value="uncertainty"' in page
    assert "<strong>40</strong> vetted labels" in page


def test_reviewer_reads_the_page_without_controls(client, reviewer, project):
    client.force_login(reviewer)

    response = client.get(page_url(project))

    assert response.status_code == 200
    page = response.content.decode()
    assert "No model trained yet." in page
    assert "Train now" not in page
    assert 'name="serving_order"' not in page


@pytest.mark.parametrize("who", ["worker", "outsider"])
def test_annotators_and_outsiders_are_kept_out(client, project, who, request):
    client.force_login(request.getfixturevalue(who))
    status = client.get(page_url(project)).status_code
    assert status == (403 if who == "worker" else 404)


def test_train_now_queues_a_training_for_owners(
    client, owner, reviewer, project, queued, django_capture_on_commit_callbacks
):
    sentiment_project(project, vetted=MIN_VETTED)
    url = reverse("model:train", args=[project.pk])
    client.force_login(reviewer)
    assert client.post(url).status_code == 403
    assert queued == []

    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, follow=True)

    assert queued == [project.pk]
    assert f"Training queued on {MIN_VETTED} vetted labels." in response.content.decode()


def test_train_now_with_too_few_labels_says_why(client, owner, project, queued):
    sentiment_project(project, vetted=5)
    client.force_login(owner)

    response = client.post(reverse("model:train", args=[project.pk]), follow=True)

    assert queued == []
    assert f"at least {MIN_VETTED} vetted labels; the project has 5" in response.content.decode()


def test_owner_sets_the_serving_order_and_items_are_reranked(client, owner, reviewer, project):
    sentiment_project(project, vetted=40, unlabeled=6)
    model_train(project=project)
    url = reverse("model:serving-order", args=[project.pk])
    client.force_login(reviewer)
    assert client.post(url, {"serving_order": "rare_first"}).status_code == 403

    client.force_login(owner)
    response = client.post(url, {"serving_order": "rare_first"}, follow=True)

    project.refresh_from_db()
    assert project.serving_order == "rare_first"
    assert "Serving order: Predicted rare classes first." in response.content.decode()
    assert (
        min(
            Item.objects.filter(project=project, is_gold=False).values_list("serve_rank", flat=True)
        )
        >= 1.0
    )

    response = client.post(url, {"serving_order": "random"}, follow=True)
    assert "Unknown serving order" in response.content.decode()
    project.refresh_from_db()
    assert project.serving_order == "rare_first"


# --- API -------------------------------------------------------------------------------------


def test_api_lists_versions_for_owners_and_reviewers(client_for, owner, reviewer, worker, project):
    sentiment_project(project, vetted=40)
    version = model_train(project=project)
    url = f"/api/v1/projects/{project.pk}/model/versions/"

    for user in (owner, reviewer):
        response = client_for(user).get(url)
        assert response.status_code == 200
        [row] = response.json()
        assert row["version"] == 1
        assert row["status"] == "ready"
        assert row["validation_accuracy"] == pytest.approx(version.validation_accuracy)
        assert row["train_count"] + row["validation_count"] == 40
        assert row["macro_f1"] == pytest.approx(version.details["macro_f1"])
    assert client_for(worker).get(url).status_code == 403
    assert client_for(None).get(url).status_code in (401, 403)


def test_api_train(
    client_for, owner, reviewer, project, queued, django_capture_on_commit_callbacks
):
    url = f"/api/v1/projects/{project.pk}/model/train/"
    sentiment_project(project, vetted=10)

    too_few = client_for(owner).post(url)
    assert too_few.status_code == 400
    assert "at least" in str(too_few.json())
    assert client_for(reviewer).post(url).status_code == 403

    sentiment_project(project, vetted=40, seed=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(url)
    assert response.status_code == 202
    assert response.json() == {"queued": True, "vetted": 50}
    assert queued == [project.pk]

    ModelVersion.objects.create(project=project, version=1, created_at=timezone.now())
    busy = client_for(owner).post(url)
    assert busy.status_code == 400
    assert "training already" in str(busy.json())

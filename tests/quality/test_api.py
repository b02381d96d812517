from __future__ import annotations

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from annotation.services import project_member_set
from quality.models import ItemScore
from quality.services import quality_recompute
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import vote

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored(project):
    """Two regular items and a gold item labeled by two workers, then recomputed."""
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    first, second = ItemFactory(project=project), ItemFactory(project=project)
    gold = ItemFactory(project=project, gold={"label": "negative"})
    vote(first, ann, "positive", 1200), vote(first, bob, "positive", 800)
    vote(second, ann, "negative", 3000), vote(second, bob, "positive", 1000)
    vote(gold, ann, "negative", 500), vote(gold, bob, "positive", 400)
    return {"score": quality_recompute(project=project), "ann": ann, "bob": bob}


def url(project):
    return reverse("api:project-quality", kwargs={"pk": project.pk})


def test_quality_api_returns_scores_workers_and_distribution(project, owner, scored, client_for):
    response = client_for(owner).get(url(project))

    assert response.status_code == 200
    body = response.json()
    score = scored["score"]
    assert body["fleiss_kappa"] == pytest.approx(score.fleiss_kappa)
    assert body["krippendorff_alpha"] == pytest.approx(score.krippendorff_alpha)
    assert (body["items_scored"], body["annotations_scored"]) == (3, 6)
    assert body["computed_at"] is not None
    assert body["progress"] == {
        "items": 2,
        "complete": 0,  # factory annotations do not move the item counters
        "gold_items": 1,
        "annotations_wanted": 6,
        "annotations_made": 0,
    }
    # Consensus over regular items: the engine's label where it gave one, else the majority's.
    first_label = ItemScore.objects.get(item__project=project, item__is_gold=False, agreement=1)
    assert first_label.label in ("", "positive")  # both workers said positive
    consensus = [
        score.label or score.majority_label
        for score in ItemScore.objects.filter(project=project, item__is_gold=False)
    ]
    assert body["label_distribution"] == {
        "positive": consensus.count("positive"),
        "negative": consensus.count("negative"),
    }
    assert sum(body["label_distribution"].values()) == 2
    workers = {row["username"]: row for row in body["workers"]}
    assert set(workers["ann"]) >= {"gold_low", "gold_high", "reliability", "signals", "flags"}
    assert (
        workers["ann"].items()
        >= {
            "worker_id": scored["ann"].pk,
            "username": "ann",
            "annotation_count": 3,
            "gold_seen": 1,
            "gold_correct": 1,
            "gold_accuracy": 1.0,
            "majority_agreement": 0.5,
            "median_duration_ms": 1200,
        }.items()
    )
    assert (workers["bob"]["gold_correct"], workers["bob"]["gold_accuracy"]) == (0, 0.0)
    assert workers["bob"]["majority_agreement"] == 1.0


def test_quality_api_before_the_first_recompute_has_empty_scores(project, owner, item, client_for):
    response = client_for(owner).get(url(project))

    body = response.json()
    assert response.status_code == 200
    assert (body["fleiss_kappa"], body["krippendorff_alpha"], body["computed_at"]) == (
        None,
        None,
        None,
    )
    assert (body["items_scored"], body["workers"]) == (0, [])
    assert body["label_distribution"] == {"positive": 0, "negative": 0}
    assert body["progress"]["items"] == 1


def test_quality_api_is_open_to_reviewers_and_staff(project, scored, client_for):
    reviewer = UserFactory(username="rita")
    project_member_set(project=project, user=reviewer, role="reviewer")
    staff = UserFactory(username="sam", is_staff=True)

    assert client_for(reviewer).get(url(project)).status_code == 200
    assert client_for(staff).get(url(project)).status_code == 200


def test_quality_api_refuses_annotators_with_403(project, scored, client_for):
    annotator = make_annotator(project, "annie")

    response = client_for(annotator).get(url(project))

    assert response.status_code == 403
    assert set(response.json()) == {"detail", "code", "fields"}
    assert "workers" not in response.json()


def test_quality_api_hides_projects_the_user_cannot_see(project, scored, client_for):
    stranger = UserFactory(username="stranger")
    other_owner_project = ProjectFactory()

    assert client_for(stranger).get(url(project)).status_code == 404
    assert client_for(stranger).get(url(other_owner_project)).status_code == 404
    missing = reverse("api:project-quality", kwargs={"pk": 10**9})
    assert client_for(stranger).get(missing).status_code == 404


def test_quality_api_needs_authentication(project):
    response = APIClient().get(url(project))

    assert response.status_code == 401


def test_quality_api_query_count_does_not_grow_with_workers_or_items(
    project, owner, django_assert_max_num_queries, client_for
):
    workers = [UserFactory() for _ in range(25)]
    for item in ItemFactory.create_batch(40, project=project):
        for worker in workers[:3]:
            vote(item, worker, "positive")
    for worker in workers[3:]:
        vote(ItemFactory(project=project), worker, "negative")
    quality_recompute(project=project)
    client = client_for(owner)

    with django_assert_max_num_queries(7):
        response = client.get(url(project))

    assert len(response.json()["workers"]) == 25


def test_quality_api_schema_describes_the_response():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    operation = schema["paths"]["/api/v1/projects/{id}/quality/"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(component["properties"]) == {
        "progress",
        "fleiss_kappa",
        "krippendorff_alpha",
        "items_scored",
        "annotations_scored",
        "computed_at",
        "workers",
        "label_distribution",
        "method",
        "method_requested",
        "method_reason",
        "full_at",
        "agreement",
        "per_label_agreement",
        "agreement_over_time",
        "gold_trend",
        "confusion",
        "label_balance",
        "gold_pool",
        "review_queue_count",
    }
    assert {"403", "404"} <= set(operation["responses"])


def test_quality_api_returns_the_dashboard_numbers_from_the_details(project, owner, client_for):
    from django.utils import timezone

    from quality.models import ProjectScore, QualityAction, WorkerScore
    from tests.quality.test_views import DETAILS

    ProjectScore.objects.create(project=project, details=DETAILS, computed_at=timezone.now())
    worker = UserFactory(username="wanda")
    WorkerScore.objects.create(
        project=project,
        worker=worker,
        gold_seen=10,
        gold_correct=8,
        gold_low=0.49,
        gold_high=0.94,
        reliability=0.83,
        class_recall={"positive": 0.9},
        computed_at=timezone.now(),
    )
    action = QualityAction.objects.create(
        project=project, worker=worker, kind="flag", evidence={"signal": "burst", "value": 0.4}
    )
    ItemScore.objects.create(
        item=ItemFactory(project=project),
        project=project,
        state="review",
        computed_at=timezone.now(),
    )

    body = client_for(owner).get(url(project)).json()

    assert (body["method"], body["method_requested"]) == ("ds", "auto")
    assert body["agreement"][0] == {
        "key": "fleiss",
        "name": "Fleiss' kappa",
        "value": 0.612,
        "low": 0.55,
        "high": 0.67,
    }
    assert body["agreement_over_time"] == DETAILS["over_time"]
    assert body["gold_trend"] == DETAILS["gold_trend"]
    assert body["confusion"] == DETAILS["confusion"]
    assert body["label_balance"] == DETAILS["label_distribution"]
    assert body["gold_pool"]["gold_needed"] == 4
    assert body["review_queue_count"] == 1
    (row,) = body["workers"]
    assert (row["gold_low"], row["gold_high"], row["reliability"]) == (0.49, 0.94, 0.83)
    assert row["class_recall"] == {"positive": 0.9}
    assert [(f["id"], f["kind"], f["signal"]) for f in row["flags"]] == [
        (action.pk, "flag", "burst")
    ]

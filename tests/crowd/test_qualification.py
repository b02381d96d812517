from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from crowd.models import Assignment, ProjectRequirement, QualificationAttempt, WorkerBlock
from crowd.qualification import (
    QualificationClosedError,
    qualification_answer,
    qualification_attempt_start,
    qualification_configure,
    qualification_required,
)
from crowd.services import assignment_claim_next
from tests.annotation.factories import ItemFactory

pytestmark = pytest.mark.django_db

SECRET_GOLD = "a gold answer nobody may see"


@pytest.fixture
def golds(project):
    return [
        ItemFactory(project=project, gold={"label": "positive", "note": SECRET_GOLD}),
        ItemFactory(project=project, gold={"label": "negative", "note": SECRET_GOLD}),
    ]


@pytest.fixture
def qualification(project, golds):
    ItemFactory.create_batch(3, project=project)
    return qualification_configure(
        project=project,
        item_ids=[item.pk for item in golds],
        pass_mark=1.0,
        attempts_allowed=2,
        cooldown_seconds=3600,
    )


def quiz_url(project):
    return reverse("external:qualification-test", args=[project.pk])


def answer_all(client, project, golds, labels):
    for item, label in zip(golds, labels, strict=True):
        response = client.post(quiz_url(project), {"item": item.pk, "label": label})
        assert response.status_code == 302


@pytest.fixture
def worker_client(client, worker):
    client.force_login(worker)
    return client


def test_label_page_sends_an_unqualified_worker_to_the_test(worker_client, project, qualification):
    response = worker_client.get(reverse("crowd:label", args=[project.pk]))

    assert response.status_code == 302
    assert response.url == quiz_url(project)


def test_submit_before_the_test_is_refused(worker_client, worker, project, qualification):
    # A reservation held from before the project got its test (claims now refuse: see below).
    ProjectRequirement.objects.filter(project=project).delete()
    held = assignment_claim_next(worker=worker, project=project)
    ProjectRequirement.objects.create(project=project, kind=ProjectRequirement.Kind.QUALIFICATION)

    response = worker_client.post(
        reverse("crowd:label-submit", args=[project.pk, held.pk]),
        {"label": "positive", "duration_ms": "10"},
    )

    held.refresh_from_db()
    assert response.status_code == 403
    assert "qualification test first" in response.content.decode()
    assert held.status == Assignment.Status.RESERVED


def test_test_page_never_shows_gold_answers(worker_client, project, golds, qualification):
    response = worker_client.get(quiz_url(project))

    html = response.content.decode()
    assert response.status_code == 200
    assert golds[0].text in html
    assert SECRET_GOLD not in html
    assert "positive" in html  # the label buttons are there
    assert '"label": "positive"' not in html
    assert "1 / 2" in html


def test_pass_lets_the_worker_label(worker_client, worker, project, golds, qualification):
    worker_client.get(quiz_url(project))

    answer_all(worker_client, project, golds, ["positive", "negative"])
    result = worker_client.get(quiz_url(project))
    label = worker_client.get(reverse("crowd:label", args=[project.pk]))

    attempt = QualificationAttempt.objects.get(worker=worker)
    assert (attempt.passed, attempt.correct) == (True, 2)
    assert attempt.answers == {str(golds[0].pk): "positive", str(golds[1].pk): "negative"}
    assert "You passed" in result.content.decode()
    assert label.status_code == 200
    assert not qualification_required(worker=worker, project=project)


def test_fail_shows_attempts_left_and_the_cooldown(
    worker_client, worker, project, golds, qualification
):
    worker_client.get(quiz_url(project))

    answer_all(worker_client, project, golds, ["negative", "negative"])
    page = worker_client.get(quiz_url(project))

    html = page.content.decode()
    assert "You did not pass" in html
    assert 'id="attempts-left">1<' in html
    assert 'id="retry-at"' in html
    assert not WorkerBlock.objects.filter(worker=worker).exists()
    with pytest.raises(QualificationClosedError, match="cool-down"):
        qualification_attempt_start(worker=worker, qualification=qualification)


def test_retake_after_the_cooldown_and_pass(worker_client, worker, project, golds, qualification):
    worker_client.get(quiz_url(project))
    answer_all(worker_client, project, golds, ["negative", "negative"])
    early = worker_client.post(reverse("external:qualification-retake", args=[project.pk]))
    assert QualificationAttempt.objects.filter(worker=worker).count() == 1

    with time_machine.travel(timezone.now() + timedelta(hours=1, seconds=1)):
        worker_client.post(reverse("external:qualification-retake", args=[project.pk]))
        answer_all(worker_client, project, golds, ["positive", "negative"])
        label = worker_client.get(reverse("crowd:label", args=[project.pk]))

    assert early.status_code == 302
    attempts = list(QualificationAttempt.objects.filter(worker=worker).order_by("id"))
    assert [attempt.passed for attempt in attempts] == [False, True]
    assert label.status_code == 200


def test_out_of_attempts_blocks_the_worker(worker_client, worker, project, golds, qualification):
    worker_client.get(quiz_url(project))
    answer_all(worker_client, project, golds, ["negative", "negative"])

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        worker_client.post(reverse("external:qualification-retake", args=[project.pk]))
        answer_all(worker_client, project, golds, ["negative", "positive"])
        page = worker_client.get(quiz_url(project))
        again = worker_client.post(reverse("external:qualification-retake", args=[project.pk]))

    block = WorkerBlock.objects.get(worker=worker, project=project, lifted_at__isnull=True)
    assert block.source == WorkerBlock.Source.QUALITY
    assert "2 attempt" in block.reason
    assert "no attempts left" in page.content.decode()
    assert again.status_code == 302
    assert QualificationAttempt.objects.filter(worker=worker).count() == 2


def test_answer_validation(worker, project, golds, qualification):
    attempt = qualification_attempt_start(worker=worker, qualification=qualification)
    other = ItemFactory(project=project)

    with pytest.raises(Exception, match="labels"):
        qualification_answer(attempt=attempt, worker=worker, item_id=golds[0].pk, label="nope")
    with pytest.raises(Exception, match="Not an item of this test"):
        qualification_answer(attempt=attempt, worker=worker, item_id=other.pk, label="positive")
    qualification_answer(attempt=attempt, worker=worker, item_id=golds[0].pk, label="positive")
    with pytest.raises(Exception, match="answered already"):
        qualification_answer(attempt=attempt, worker=worker, item_id=golds[0].pk, label="positive")


def test_invalid_answer_on_the_page_is_422(worker_client, project, golds, qualification):
    worker_client.get(quiz_url(project))

    response = worker_client.post(quiz_url(project), {"item": golds[0].pk, "label": "nope"})

    assert response.status_code == 422
    assert "Choose one of this project&#x27;s labels." in response.content.decode()


def test_external_worker_sees_masked_test_items(client, project):
    from crowd.external import study_create
    from crowd.models import ExternalStudy

    gold = ItemFactory(
        project=project,
        data={"text": "Mail me at jane.doe@example.com"},
        gold={"label": "positive"},
    )
    qualification_configure(
        project=project, item_ids=[gold.pk], pass_mark=1, attempts_allowed=1, cooldown_seconds=0
    )
    study = study_create(
        project=project, platform=ExternalStudy.Platform.PROLIFIC, quota=1, completion_code="Q"
    )
    client.get(
        reverse("external:study-entry", args=[study.slug]),
        {"PROLIFIC_PID": "p1", "STUDY_ID": "s", "SESSION_ID": "x"},
    )

    response = client.get(quiz_url(project))

    assert response.status_code == 200
    assert "jane.doe@example.com" not in response.content.decode()


def test_configure_only_gold_items(project, golds):
    regular = ItemFactory(project=project)

    with pytest.raises(Exception, match="gold items"):
        qualification_configure(
            project=project,
            item_ids=[regular.pk],
            pass_mark=0.5,
            attempts_allowed=1,
            cooldown_seconds=0,
        )


def test_settings_page_owner_configures_and_sees_attempts(client, owner, worker, project, golds):
    client.force_login(owner)
    url = reverse("external:qualification-settings", args=[project.pk])

    invalid = client.post(url, {"pass_mark": "2", "attempts_allowed": "0"})
    saved = client.post(
        url,
        {
            "items": [golds[0].pk, golds[1].pk],
            "pass_mark": "0.5",
            "attempts_allowed": "3",
            "cooldown_seconds": "60",
            "active": "on",
        },
    )
    qualification = project.qualification
    attempt = qualification_attempt_start(worker=worker, qualification=qualification)
    qualification_answer(attempt=attempt, worker=worker, item_id=golds[0].pk, label="positive")
    qualification_answer(attempt=attempt, worker=worker, item_id=golds[1].pk, label="positive")
    page = client.get(url)

    assert invalid.status_code == 422
    assert saved.status_code == 302
    assert (qualification.pass_mark, qualification.attempts_allowed) == (0.5, 3)
    assert set(qualification.items.values_list("pk", flat=True)) == {g.pk for g in golds}
    html = page.content.decode()
    assert "worker" in html
    assert "passed" in html
    assert "1 / 2" in html


@pytest.mark.parametrize("who", ["worker", "reviewer"])
def test_settings_are_for_owners_only(client, client_for, project, who, request, golds):
    user = request.getfixturevalue(who)
    client.force_login(user)

    page = client.get(reverse("external:qualification-settings", args=[project.pk]))
    api = client_for(user).put(
        reverse("api:project-qualification", args=[project.pk]),
        {"items": [golds[0].pk], "pass_mark": 1, "attempts_allowed": 1, "cooldown_seconds": 0},
        format="json",
    )

    assert page.status_code == 403
    assert api.status_code == 403


def test_qualification_api(client_for, owner, worker, project, golds):
    api = client_for(owner)
    url = reverse("api:project-qualification", args=[project.pk])

    missing = api.get(url)
    bad = api.put(url, {"items": [], "pass_mark": 3}, format="json")
    saved = api.put(
        url,
        {"items": [golds[1].pk], "pass_mark": 1, "attempts_allowed": 1, "cooldown_seconds": 0},
        format="json",
    )
    attempt = qualification_attempt_start(worker=worker, qualification=project.qualification)
    qualification_answer(attempt=attempt, worker=worker, item_id=golds[1].pk, label="negative")
    attempts = api.get(reverse("api:project-qualification-attempts", args=[project.pk]))

    assert missing.status_code == 404
    assert bad.status_code == 400
    assert {"items", "pass_mark"} <= set(bad.json()["fields"])
    assert saved.status_code == 200
    assert saved.json()["items"] == [golds[1].pk]
    assert [(row["worker"], row["passed"]) for row in attempts.json()] == [("worker", True)]


def test_the_api_refuses_work_until_the_test_is_passed(client_for, worker, project, golds):
    """An active test is a project requirement: the API's next call checks it too."""
    ItemFactory.create_batch(3, project=project)
    configured = qualification_configure(
        project=project,
        item_ids=[item.pk for item in golds],
        pass_mark=1.0,
        attempts_allowed=2,
        cooldown_seconds=3600,
    )
    api = client_for(worker)
    next_url = reverse("api:project-next", args=[project.pk])

    refused = api.post(next_url)
    QualificationAttempt.objects.create(
        qualification=configured, worker=worker, correct=2, passed=True, finished_at=timezone.now()
    )
    served = api.post(next_url)
    qualification_configure(
        project=project,
        item_ids=[item.pk for item in golds],
        pass_mark=1.0,
        attempts_allowed=2,
        cooldown_seconds=3600,
        active=False,
    )

    assert refused.status_code == 403
    assert refused.json()["code"] == "requirement"
    assert "qualification test" in refused.json()["detail"]
    assert served.status_code == 200
    assert not ProjectRequirement.objects.filter(project=project).exists()

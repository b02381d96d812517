from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotation.models import ProjectMember
from crowd.external import external_username, study_create
from crowd.models import Assignment, ExternalIdentity, ExternalStudy, Pool, PoolMember
from crowd.services import assignment_submit
from tests.annotation.factories import ItemFactory, UserFactory

pytestmark = pytest.mark.django_db

PROLIFIC = {"PROLIFIC_PID": "pid-aaa", "STUDY_ID": "study-1", "SESSION_ID": "sess-aaa"}
MTURK = {"workerId": "A1WORKER", "hitId": "HIT9", "assignmentId": "ASSIGN1"}
REFUSED = "does not match the session this worker started with"


@pytest.fixture
def study(project):
    ItemFactory.create_batch(5, project=project, target=1)
    return study_create(
        project=project,
        platform=ExternalStudy.Platform.PROLIFIC,
        quota=2,
        completion_code="C0DE42",
        return_url="https://app.prolific.com/submissions/complete?cc=C0DE42",
    )


def entry_url(study):
    return reverse("external:study-entry", args=[study.slug])


def enter(client, study, params):
    return client.get(entry_url(study), params)


def test_entry_creates_a_passwordless_worker_and_sends_them_to_label(client, study, project):
    response = enter(client, study, PROLIFIC)

    assert response.status_code == 302
    assert response.url == reverse("crowd:label", args=[project.pk])
    identity = ExternalIdentity.objects.get(study=study)
    user = identity.user
    assert identity.external_id == "pid-aaa"
    assert identity.session_ref == "sess-aaa"
    assert identity.study_ref == "study-1"
    assert user.username == external_username(study=study, external_id="pid-aaa")
    assert "pid-aaa" not in user.username
    assert not user.has_usable_password()
    assert PoolMember.objects.filter(pool=study.pool, user=user).exists()
    assert study.pool.kind == Pool.Kind.EXTERNAL_CROWD
    assert ProjectMember.objects.get(project=project, user=user).role == "annotator"
    assert int(client.session["_auth_user_id"]) == user.pk


def test_entry_resumes_the_same_worker_with_the_same_session(client, study):
    enter(client, study, PROLIFIC)
    client.logout()

    response = enter(client, study, PROLIFIC)

    assert response.status_code == 302
    assert ExternalIdentity.objects.filter(study=study).count() == 1
    identity = ExternalIdentity.objects.get(study=study)
    assert int(client.session["_auth_user_id"]) == identity.user_id


def test_entry_resumes_in_the_bound_browser_session_even_with_another_session_id(client, study):
    enter(client, study, PROLIFIC)

    response = enter(client, study, {**PROLIFIC, "SESSION_ID": "sess-new"})

    assert response.status_code == 302
    assert ExternalIdentity.objects.filter(study=study).count() == 1


def test_entry_second_pid_makes_a_second_worker(client, study):
    enter(client, study, PROLIFIC)

    enter(client, study, {**PROLIFIC, "PROLIFIC_PID": "pid-bbb", "SESSION_ID": "sess-bbb"})

    identities = list(ExternalIdentity.objects.filter(study=study).order_by("id"))
    assert [identity.external_id for identity in identities] == ["pid-aaa", "pid-bbb"]
    assert identities[0].user_id != identities[1].user_id
    assert int(client.session["_auth_user_id"]) == identities[1].user_id


def test_entry_editing_the_pid_to_another_workers_is_refused(client, study):
    victim = enter(client, study, PROLIFIC)
    assert victim.status_code == 302
    attacker = client_class_new()
    enter(attacker, study, {**PROLIFIC, "PROLIFIC_PID": "pid-eve", "SESSION_ID": "sess-eve"})

    response = enter(attacker, study, {**PROLIFIC, "SESSION_ID": "sess-eve"})
    guessed = enter(attacker, study, {**PROLIFIC, "SESSION_ID": ""})

    assert response.status_code == 403
    assert REFUSED in response.content.decode()
    assert guessed.status_code == 400
    eve = ExternalIdentity.objects.get(external_id="pid-eve")
    assert int(attacker.session["_auth_user_id"]) == eve.user_id


def client_class_new():
    from django.test import Client

    return Client()


def test_entry_mturk_parameters(client, project):
    ItemFactory(project=project)
    study = study_create(
        project=project, platform=ExternalStudy.Platform.MTURK, quota=1, completion_code="MT1"
    )

    preview = enter(client, study, {**MTURK, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    response = enter(client, study, MTURK)
    prolific_style = enter(client_class_new(), study, PROLIFIC)

    assert preview.status_code == 200
    assert "Accept the HIT" in preview.content.decode()
    assert response.status_code == 302
    identity = ExternalIdentity.objects.get(study=study)
    assert (identity.external_id, identity.study_ref, identity.session_ref) == (
        "A1WORKER",
        "HIT9",
        "ASSIGN1",
    )
    assert prolific_style.status_code == 400
    assert "workerId" in prolific_style.content.decode()


def test_entry_unknown_or_closed_study_is_404(client, study):
    study.active = False
    study.save(update_fields=["active"])

    assert enter(client, study, PROLIFIC).status_code == 404


def test_quota_done_shows_completion_code_and_return_url(client, study, project):
    enter(client, study, PROLIFIC)
    worker = ExternalIdentity.objects.get(study=study).user
    done_url = reverse("external:study-done", args=[study.slug])
    early = client.get(done_url)
    assert early.status_code == 302
    assert early.url == reverse("crowd:label", args=[project.pk])
    page = client.get(reverse("crowd:label", args=[project.pk]))
    held = Assignment.objects.filter(worker=worker, status=Assignment.Status.RESERVED)
    assert held.count() == 2  # the quota: 2 of the 5 open items

    for assignment in held:
        assignment_submit(
            assignment=assignment, worker=worker, value={"label": "positive"}, duration_ms=900
        )
    response = client.get(reverse("crowd:label", args=[project.pk]))
    done = client.get(done_url)

    assert page.status_code == 200
    assert 'id="completion-link"' in page.content.decode()
    assert response.status_code == 302
    assert response.url == done_url
    assert done.status_code == 200
    html = done.content.decode()
    assert "C0DE42" in html
    assert 'href="https://app.prolific.com/submissions/complete?cc=C0DE42"' in html
    assert ExternalIdentity.objects.get(study=study).completed_at is not None


def test_refill_stops_at_the_quota(client, study, project):
    enter(client, study, PROLIFIC)
    worker = ExternalIdentity.objects.get(study=study).user
    client.get(reverse("crowd:label", args=[project.pk]))
    first, second = Assignment.objects.filter(worker=worker).order_by("id")

    response = client.post(
        reverse("crowd:label-submit", args=[project.pk, first.pk]),
        {"label": "positive", "duration_ms": "900", "held": str(second.pk), "pending": ""},
    )

    assert response.status_code == 200
    assert "label-item" not in response.content.decode()
    assert Assignment.objects.filter(worker=worker).count() == 2


def test_no_work_left_gives_the_code(client, project):
    study = study_create(
        project=project, platform=ExternalStudy.Platform.PROLIFIC, quota=5, completion_code="EMPTY1"
    )
    enter(client, study, PROLIFIC)

    response = client.get(reverse("crowd:label", args=[project.pk]))
    done = client.get(response.url)

    assert response.url == reverse("external:study-done", args=[study.slug])
    assert "EMPTY1" in done.content.decode()


def test_done_page_needs_the_bound_session(client, study, worker):
    client.force_login(worker)

    response = client.get(reverse("external:study-done", args=[study.slug]))

    assert response.status_code == 404
    assert "C0DE42" not in response.content.decode()


def test_new_visit_after_completion_shows_the_code_again(client, study, project):
    enter(client, study, PROLIFIC)
    identity = ExternalIdentity.objects.get(study=study)
    identity.completed_at = identity.created_at
    identity.save(update_fields=["completed_at"])

    response = enter(client_class_new(), study, PROLIFIC)

    assert response.status_code == 302
    assert response.url == reverse("external:study-done", args=[study.slug])


# --- owners' configuration --------------------------------------------------------------------


def test_study_page_owner_creates_a_study(client, owner, project):
    client.force_login(owner)
    url = reverse("external:study-list", args=[project.pk])

    invalid = client.post(url, {"platform": "prolific", "quota": "0", "completion_code": ""})
    response = client.post(
        url,
        {
            "platform": "prolific",
            "quota": "3",
            "completion_code": "ABC123",
            "return_url": "https://app.prolific.com/submissions/complete?cc=ABC123",
        },
    )
    page = client.get(url)

    assert invalid.status_code == 422
    assert "errorlist" in invalid.content.decode()
    assert response.status_code == 302
    study = ExternalStudy.objects.get(project=project)
    assert (study.quota, study.completion_code) == (3, "ABC123")
    assert study.pool.kind == Pool.Kind.EXTERNAL_CROWD
    assert entry_url(study) in page.content.decode()


@pytest.mark.parametrize("who", ["worker", "reviewer", "outsider"])
def test_study_page_is_for_owners_only(client, project, who, request):
    user = request.getfixturevalue(who)
    client.force_login(user)

    response = client.get(reverse("external:study-list", args=[project.pk]))
    api = client.get(reverse("api:project-studies", args=[project.pk]))

    assert response.status_code == (404 if who == "outsider" else 403)
    assert api.status_code in {403, 404}


def test_study_api_create_and_list(client_for, owner, project):
    api = client_for(owner)
    url = reverse("api:project-studies", args=[project.pk])

    bad = api.post(url, {"platform": "myspace", "quota": 0, "completion_code": ""}, format="json")
    created = api.post(
        url, {"platform": "mturk", "quota": 4, "completion_code": "XYZ"}, format="json"
    )
    listed = api.get(url)

    assert bad.status_code == 400
    assert set(bad.json()["fields"]) >= {"platform", "quota", "completion_code"}
    assert created.status_code == 201
    assert created.json()["entry_url"] == f"/s/{created.json()['slug']}/"
    assert [row["completion_code"] for row in listed.json()] == ["XYZ"]


def test_study_api_refuses_a_pool_that_is_not_external(client_for, owner, project, worker):
    internal = PoolMember.objects.get(user=worker).pool

    response = client_for(owner).post(
        reverse("api:project-studies", args=[project.pk]),
        {"platform": "prolific", "quota": 2, "completion_code": "X", "pool": internal.pk},
        format="json",
    )

    assert response.status_code == 400
    assert "pool" in response.json()["fields"]


def test_external_username_is_stable_and_hides_the_id(study):
    other = UserFactory()

    name = external_username(study=study, external_id="pid-aaa")

    assert name == external_username(study=study, external_id="pid-aaa")
    assert name != external_username(study=study, external_id="pid-bbb")
    assert not get_user_model().objects.filter(username=name).exclude(pk=other.pk).exists()

"""Project requirements (skill, approved answers, pool, qualification), checked on every
next-item call through the service, the API and the labeling page, and what the check costs."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crowd.models import (
    Assignment,
    PayDecision,
    ProjectRequirement,
    Qualification,
    QualificationAttempt,
    WorkerSkill,
)
from crowd.pools import (
    RequirementNotMetError,
    pool_create,
    pool_member_add,
    project_pool_link,
    project_requirement_add,
    project_requirement_remove,
    requirements_check,
)
from crowd.services import assignment_claim_next, assignment_list_ready
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(project):
    return ItemFactory.create_batch(3, project=project)


def approved_answers(worker, count):
    for _ in range(count):
        annotation = AnnotationFactory(author=worker)
        PayDecision.objects.create(
            project_id=annotation.project_id,
            annotation=annotation,
            worker=worker,
            status=PayDecision.Status.APPROVED,
            source=PayDecision.Source.OWNER,
        )


def requirement_queries(captured):
    return [q for q in captured.captured_queries if "crowd_projectrequirement" in q["sql"]]


# --- each kind ------------------------------------------------------------------------------


def test_skill_requirement(project, worker, items):
    project_requirement_add(project=project, kind="skill", skill_name="sentiment", min_score=80)
    WorkerSkill.objects.create(worker=worker, name="sentiment", score=79.5)

    with pytest.raises(RequirementNotMetError) as error:
        assignment_claim_next(worker=worker, project=project)
    assert error.value.code == "requirement"
    assert error.value.status_code == 403
    assert "skill “sentiment” at 80 or above" in error.value.message
    assert not Assignment.objects.filter(worker=worker).exists()

    WorkerSkill.objects.filter(worker=worker).update(score=80)
    assert assignment_claim_next(worker=worker, project=project) is not None


def test_approved_requirement_counts_current_approvals_on_any_project(project, worker, items):
    project_requirement_add(project=project, kind="approved", min_count=3)
    approved_answers(worker, 2)
    superseded = AnnotationFactory(author=worker)
    PayDecision.objects.create(
        project_id=superseded.project_id,
        annotation=superseded,
        worker=worker,
        status="approved",
        source="owner",
        superseded_at=timezone.now(),
    )

    with pytest.raises(RequirementNotMetError) as error:
        assignment_claim_next(worker=worker, project=project)
    assert "at least 3 approved annotations" in error.value.message

    approved_answers(worker, 1)
    assert assignment_claim_next(worker=worker, project=project) is not None


def test_pool_requirement(project, owner, worker, items):
    vetted = pool_create(name="Vetted", kind="internal_crowd", created_by=owner)
    project_pool_link(project=project, pool=vetted, rule="review")
    project_requirement_add(project=project, kind="pool", pool=vetted)

    with pytest.raises(RequirementNotMetError) as error:
        assignment_claim_next(worker=worker, project=project)
    assert "members of the pool “Vetted”" in error.value.message

    pool_member_add(pool=vetted, username=worker.username)
    assert assignment_claim_next(worker=worker, project=project) is not None


def test_qualification_requirement(project, worker, items):
    project_requirement_add(project=project, kind="qualification")
    qualification = Qualification.objects.create(project=project)
    QualificationAttempt.objects.create(
        qualification=qualification, worker=worker, passed=False, finished_at=timezone.now()
    )

    with pytest.raises(RequirementNotMetError) as error:
        assignment_claim_next(worker=worker, project=project)
    assert "qualification test" in error.value.message

    QualificationAttempt.objects.create(
        qualification=qualification, worker=worker, passed=True, finished_at=timezone.now()
    )
    assert assignment_claim_next(worker=worker, project=project) is not None


def test_requirement_added_later_stops_live_reservations_from_being_served(project, worker, items):
    assert len(assignment_list_ready(worker=worker, project=project, held=())) == 2

    project_requirement_add(project=project, kind="approved", min_count=1)

    with pytest.raises(RequirementNotMetError):
        assignment_list_ready(worker=worker, project=project, held=())


def test_removing_the_requirement_opens_the_project_again(project, worker, items):
    requirement = project_requirement_add(project=project, kind="qualification")
    with pytest.raises(RequirementNotMetError):
        requirements_check(worker=worker, project=project)

    project_requirement_remove(project=project, requirement_id=requirement.pk)

    assert assignment_claim_next(worker=worker, project=project) is not None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "skill", "skill_name": "", "min_score": 50}, "skill_name"),
        ({"kind": "skill", "skill_name": "x", "min_score": 150}, "min_score"),
        ({"kind": "approved", "min_count": 0}, "min_count"),
        ({"kind": "pool"}, "pool"),
        ({"kind": "karma"}, "kind"),
    ],
)
def test_requirement_add_field_errors(project, fields, field):
    with pytest.raises(ValidationError) as error:
        project_requirement_add(project=project, **fields)

    assert field in error.value.message_dict
    assert not ProjectRequirement.objects.exists()


def test_pool_requirement_must_name_a_pool_of_the_project(project, owner):
    unrelated = pool_create(name="Elsewhere", kind="internal_crowd", created_by=owner)

    with pytest.raises(ValidationError) as error:
        project_requirement_add(project=project, kind="pool", pool=unrelated)

    assert "pool" in error.value.message_dict


# --- cost -----------------------------------------------------------------------------------


def test_project_without_requirements_costs_no_extra_query_on_next(project, worker, items):
    with CaptureQueriesContext(connection) as captured:
        assignment_claim_next(worker=worker, project=project)

    # Only the standing lookup mentions the table, as an EXISTS folded into it.
    [standing] = requirement_queries(captured)
    assert "crowd_workerstanding" in standing["sql"]


def test_requirement_added_in_between_calls_applies_at_once(project, worker, items):
    assert assignment_claim_next(worker=worker, project=project) is not None

    ProjectRequirement.objects.create(project=project, kind="qualification")

    with pytest.raises(RequirementNotMetError):
        assignment_claim_next(worker=worker, project=project)


def test_all_requirements_are_checked_in_one_query(project, owner, worker, items):
    WorkerSkill.objects.create(worker=worker, name="sentiment", score=90)
    approved_answers(worker, 1)
    pool = pool_create(name="Vetted", kind="internal_crowd", created_by=owner)
    project_pool_link(project=project, pool=pool, rule="label")
    pool_member_add(pool=pool, username=worker.username)
    qualification = Qualification.objects.create(project=project)
    QualificationAttempt.objects.create(
        qualification=qualification, worker=worker, passed=True, finished_at=timezone.now()
    )
    project_requirement_add(project=project, kind="skill", skill_name="sentiment", min_score=85)
    project_requirement_add(project=project, kind="approved", min_count=1)
    project_requirement_add(project=project, kind="pool", pool=pool)
    project_requirement_add(project=project, kind="qualification")

    with CaptureQueriesContext(connection) as captured:
        claimed = assignment_claim_next(worker=worker, project=project)

    assert claimed is not None
    # the standing lookup (with the EXISTS) and one query for all four requirements
    assert len(requirement_queries(captured)) == 2


# --- API and labeling page ------------------------------------------------------------------


def test_api_next_refuses_with_the_missing_requirement(client_for, project, worker, items):
    project_requirement_add(project=project, kind="skill", skill_name="sentiment", min_score=60)

    response = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 403
    assert response.json()["code"] == "requirement"
    assert "skill “sentiment” at 60 or above" in response.json()["detail"]
    assert not Assignment.objects.filter(worker=worker).exists()


def test_api_next_serves_a_worker_who_meets_the_requirements(client_for, project, worker, items):
    project_requirement_add(project=project, kind="approved", min_count=2)
    approved_answers(worker, 2)

    response = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 200


def test_api_next_for_someone_without_access_stays_404(client_for, project, items):
    project_requirement_add(project=project, kind="qualification")

    response = client_for(UserFactory()).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 404


def test_labeling_page_refuses_with_403_says_why_and_gives_nothing(client, project, worker, items):
    project_requirement_add(project=project, kind="skill", skill_name="sentiment", min_score=50)
    client.force_login(worker)

    response = client.get(reverse("crowd:label", args=[project.pk]))

    assert response.status_code == 403
    assert 'id="label-unmet"' in response.content.decode()
    assert "sentiment" in response.content.decode()
    assert not Assignment.objects.filter(worker=worker).exists()


def test_owner_adds_and_removes_requirements_on_the_pools_page(client, owner, project):
    client.force_login(owner)
    url = reverse("pools:requirement-add", args=[project.pk])

    bad = client.post(url, {"kind": "skill", "skill_name": "", "min_score": "50"})
    good = client.post(url, {"kind": "skill", "skill_name": "sentiment", "min_score": "70"})
    requirement = ProjectRequirement.objects.get(project=project)
    page = client.get(reverse("pools:project", args=[project.pk])).content.decode()
    removed = client.post(reverse("pools:requirement-remove", args=[project.pk, requirement.pk]))

    assert bad.status_code == 422
    assert "Name the skill" in bad.content.decode()
    assert good.status_code == 302
    assert "Skill “sentiment” ≥ 70" in page
    assert removed.status_code == 302
    assert not ProjectRequirement.objects.exists()


def test_api_requirements_owner_only(client_for, owner, project, worker):
    url = f"/api/v1/projects/{project.pk}/requirements/"

    created = client_for(owner).post(url, {"kind": "approved", "min_count": 5}, format="json")
    invalid = client_for(owner).post(url, {"kind": "approved"}, format="json")
    listed = client_for(owner).get(url).json()
    refused = client_for(worker).post(url, {"kind": "qualification"}, format="json")
    deleted = client_for(owner).delete(f"{url}{created.json()['id']}/")

    assert created.status_code == 201
    assert invalid.status_code == 400
    assert "min_count" in invalid.json()["fields"]
    assert [row["min_count"] for row in listed] == [5]
    assert refused.status_code == 403
    assert deleted.status_code == 204

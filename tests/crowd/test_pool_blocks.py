"""Blocking a member from a whole pool on the pool page, lifting it, and the audit trail that
pool-level changes (blocks, links, requirements) leave on every project the pool serves."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from core.models import AuditEvent
from crowd.models import WorkerBlock
from crowd.pools import (
    project_pool_link,
    project_pool_unlink,
    project_requirement_add,
    project_requirement_remove,
)
from crowd.services import (
    WorkerBlockedError,
    assignment_claim_next,
    worker_block,
    worker_is_blocked,
)
from crowd.services.blocks import pool_worker_block
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import join_pool, make_pool

pytestmark = pytest.mark.django_db

REASON = "Copied answers between accounts."


@pytest.fixture
def shared(owner):
    """A pool serving two projects of `owner`, with one member holding a reservation in each."""
    first, second = ProjectFactory(created_by=owner), ProjectFactory(created_by=owner)
    pool = make_pool(first, second, name="Shared crowd")
    worker = UserFactory(username="mallory")
    join_pool(pool, worker)
    for project in (first, second):
        ItemFactory.create_batch(2, project=project)
        assert assignment_claim_next(worker=worker, project=project) is not None
    return pool, worker, (first, second)


def test_the_pool_manager_blocks_a_member_from_every_project_on_the_pool_page(client, shared):
    pool, worker, projects = shared
    client.force_login(pool.created_by)

    response = client.post(
        reverse("pools:block", args=[pool.pk]), {"username": "mallory", "reason": REASON}
    )

    assert response.status_code == 302
    block = WorkerBlock.objects.get(pool=pool, worker=worker, lifted_at__isnull=True)
    assert block.created_by == pool.created_by
    for project in projects:
        assert worker_is_blocked(worker=worker, project=project)
        with pytest.raises(WorkerBlockedError):
            assignment_claim_next(worker=worker, project=project)
        event = AuditEvent.objects.get(project=project, action="worker.block")
        assert event.actor == pool.created_by
        assert event.target == "worker mallory in pool Shared crowd"
    page = client.get(reverse("pools:detail", args=[pool.pk])).content.decode()
    assert f'id="pool-block-{block.pk}"' in page
    assert REASON in page
    assert "Lift the block on mallory" in page


def test_lifting_on_the_pool_page_gives_work_back_and_is_audited(client, shared):
    pool, worker, projects = shared
    block = pool_worker_block(pool=pool, username="mallory", reason=REASON, created_by=None)
    client.force_login(pool.created_by)

    response = client.post(reverse("pools:unblock", args=[pool.pk, block.pk]))

    assert response.status_code == 302
    block.refresh_from_db()
    assert block.lifted_at is not None
    assert block.lifted_by == pool.created_by
    for project in projects:
        assert not worker_is_blocked(worker=worker, project=project)
        assert AuditEvent.objects.filter(project=project, action="worker.unblock").count() == 1
    page = client.get(reverse("pools:detail", args=[pool.pk])).content.decode()
    assert "Nobody is blocked." in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"username": "nobody", "reason": REASON}, "username", "No member &#x27;nobody&#x27;"),
        ({"username": "mallory", "reason": ""}, "reason", "This field is required."),
    ],
)
def test_a_bad_block_form_answers_422_naming_the_field_and_blocks_nobody(
    client, shared, form, field, message
):
    pool, _worker, _projects = shared
    client.force_login(pool.created_by)

    response = client.post(reverse("pools:block", args=[pool.pk]), form)

    assert response.status_code == 422
    body = response.content.decode()
    assert f'id="pool-block-{field}-errors"' in body
    assert message in body
    assert not WorkerBlock.objects.exists()


def test_the_manager_cannot_block_themselves(shared):
    pool, _worker, _projects = shared
    join_pool(pool, pool.created_by)
    with pytest.raises(ValidationError) as error:
        pool_worker_block(pool=pool, username="owner", reason=REASON, created_by=pool.created_by)
    assert "username" in error.value.message_dict


def test_only_the_pool_manager_may_block_or_lift(client, shared):
    pool, worker, _projects = shared
    block = pool_worker_block(pool=pool, username="mallory", reason=REASON, created_by=None)
    client.force_login(worker)

    blocked = client.post(
        reverse("pools:block", args=[pool.pk]), {"username": "mallory", "reason": "x"}
    )
    lifted = client.post(reverse("pools:unblock", args=[pool.pk, block.pk]))

    assert (blocked.status_code, lifted.status_code) == (404, 404)
    block.refresh_from_db()
    assert block.lifted_at is None


def test_a_project_block_cannot_be_lifted_through_a_pool_url(client, shared, owner):
    pool, worker, projects = shared
    project_block = worker_block(worker=worker, project=projects[0], reason=REASON)
    client.force_login(owner)

    response = client.post(reverse("pools:unblock", args=[pool.pk, project_block.pk]))

    assert response.status_code == 404
    project_block.refresh_from_db()
    assert project_block.lifted_at is None


def test_links_and_requirements_are_audited_with_who_and_what(owner, project):
    pool = make_pool(project, name="Linguists")
    project_pool_unlink(project=project, pool=pool, actor=owner)
    project_pool_link(project=project, pool=pool, rule="review", actor=owner)
    project_pool_link(project=project, pool=pool, rule="review", actor=owner)  # no change
    requirement = project_requirement_add(
        project=project, kind="approved", min_count=3, actor=owner
    )
    project_requirement_remove(project=project, requirement_id=requirement.pk, actor=owner)

    events = list(
        AuditEvent.objects.filter(project=project).order_by("id").values_list("action", "details")
    )

    assert [action for action, _ in events] == [
        "pool.unlink",
        "pool.link",
        "requirement.add",
        "requirement.remove",
    ]
    assert events[1][1]["rule"] == {"before": None, "after": "review"}
    assert events[2][1]["kind"] == "approved"
    assert AuditEvent.objects.filter(project=project, actor=owner).count() == 4

"""Blocking workers: the services, the claim rule, the owner's API and the members page."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation.models import Annotation, Item
from crowd.models import Assignment, WorkerBlock
from crowd.services import (
    WorkerBlockedError,
    assignment_claim_next,
    assignment_list_ready,
    assignment_submit,
    project_default_pool,
    worker_block,
    worker_is_blocked,
    worker_unblock,
)
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import join_pool, make_annotator, make_pool

pytestmark = pytest.mark.django_db

REASON = "Answers on gold questions were random."


def reserved(worker, project=None):
    rows = Assignment.objects.filter(worker=worker, status=Assignment.Status.RESERVED)
    return rows.filter(project=project) if project is not None else rows


# --- services --------------------------------------------------------------------------------


def test_block_releases_reservations_and_frees_their_slots(project, worker, owner):
    items = ItemFactory.create_batch(3, project=project)
    held = assignment_list_ready(worker=worker, project=project, held=())
    assert len(held) == 2

    block = worker_block(worker=worker, project=project, reason=REASON, created_by=owner)

    assert block.is_active
    assert block.source == WorkerBlock.Source.OWNER
    assert not reserved(worker).exists()
    statuses = set(Assignment.objects.filter(worker=worker).values_list("status", flat=True))
    assert statuses == {Assignment.Status.EXPIRED}
    assert [Item.objects.get(pk=i.pk).slots_taken for i in items] == [0, 0, 0]
    other = make_annotator(project, "other")
    taken = {assignment_claim_next(worker=other, project=project).item_id for _ in range(3)}
    assert taken == {i.pk for i in items}


def test_blocked_worker_gets_nothing_and_learns_the_reason(project, worker, item):
    worker_block(worker=worker, project=project, reason=REASON)

    with pytest.raises(WorkerBlockedError) as error:
        assignment_claim_next(worker=worker, project=project)

    assert error.value.status_code == 403
    assert REASON in error.value.message
    assert worker_is_blocked(worker=worker, project=project)
    assert Item.objects.get(pk=item.pk).slots_taken == 0


def test_the_block_is_part_of_the_claim_query_itself(project, worker, item, monkeypatch):
    worker_block(worker=worker, project=project, reason=REASON)
    # Without the after-the-fact explanation, the claim must still come back empty.
    monkeypatch.setattr("crowd.services.claims.worker_block_active", lambda **kwargs: None)

    assert assignment_claim_next(worker=worker, project=project) is None
    assert not Assignment.objects.exists()


def test_block_is_idempotent(project, worker, owner):
    first = worker_block(worker=worker, project=project, reason=REASON, created_by=owner)

    again = worker_block(
        worker=worker, project=project, reason="Another reason", source=WorkerBlock.Source.QUALITY
    )

    assert again.pk == first.pk
    assert again.reason == REASON
    assert WorkerBlock.objects.count() == 1


def test_unblock_restores_work_and_keeps_the_history(project, worker, owner, item):
    block = worker_block(worker=worker, project=project, reason=REASON)

    lifted = worker_unblock(block=block, lifted_by=owner)
    again = worker_unblock(block=block, lifted_by=None)

    assert lifted.lifted_at is not None
    assert lifted.lifted_by == owner
    assert again.lifted_at == lifted.lifted_at
    assert again.lifted_by == owner
    assert not worker_is_blocked(worker=worker, project=project)
    assert assignment_claim_next(worker=worker, project=project).item_id == item.pk
    reblocked = worker_block(worker=worker, project=project, reason="Again")
    assert reblocked.pk != block.pk
    assert WorkerBlock.objects.filter(worker=worker).count() == 2


def test_pool_block_covers_every_project_the_pool_serves(owner):
    first, second = ProjectFactory(created_by=owner), ProjectFactory(created_by=owner)
    pool = make_pool(first, second, name="External crowd")
    worker = UserFactory(username="external")
    join_pool(pool, worker)
    for project in (first, second):
        ItemFactory.create_batch(2, project=project)
        assert assignment_claim_next(worker=worker, project=project) is not None

    block = worker_block(worker=worker, pool=pool, reason=REASON, source="quality")

    assert block.pool_id == pool.pk
    assert block.project_id is None
    assert not reserved(worker).exists()
    assert set(Item.objects.values_list("slots_taken", flat=True)) == {0}
    for project in (first, second):
        assert worker_is_blocked(worker=worker, project=project)
        with pytest.raises(WorkerBlockedError):
            assignment_claim_next(worker=worker, project=project)


def test_pool_block_spares_a_worker_who_also_labels_through_another_pool(project, worker, item):
    extra = make_pool(project)
    join_pool(extra, worker)

    worker_block(worker=worker, pool=extra, reason=REASON)

    assert not worker_is_blocked(worker=worker, project=project)
    assert assignment_claim_next(worker=worker, project=project).item_id == item.pk
    worker_block(worker=worker, pool=project_default_pool(project=project), reason=REASON)
    assert worker_is_blocked(worker=worker, project=project)


def test_blocked_worker_cannot_submit_a_released_reservation(project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)
    worker_block(worker=worker, project=project, reason=REASON)

    with pytest.raises(WorkerBlockedError):
        assignment_submit(
            assignment=held, worker=worker, value={"label": "positive"}, duration_ms=5
        )

    assert not Annotation.objects.exists()
    assert Item.objects.get(pk=item.pk).slots_taken == 0


@pytest.mark.parametrize(
    ("scope", "reason", "field"),
    [("none", REASON, None), ("both", REASON, None), ("project", "   ", "reason")],
)
def test_block_needs_one_scope_and_a_reason(project, worker, scope, reason, field):
    kwargs = {
        "none": {},
        "both": {"project": project, "pool": project_default_pool(project=project)},
        "project": {"project": project},
    }[scope]

    with pytest.raises(ValidationError) as error:
        worker_block(worker=worker, reason=reason, **kwargs)

    if field:
        assert field in error.value.message_dict
    assert not WorkerBlock.objects.exists()


# --- API -------------------------------------------------------------------------------------


def blocks_url(project):
    return f"/api/v1/projects/{project.pk}/blocks/"


def lift_url(project, block):
    return f"/api/v1/projects/{project.pk}/blocks/{block.pk}/lift/"


def test_next_answers_403_with_the_reason_for_a_blocked_worker(project, worker, item, client_for):
    worker_block(worker=worker, project=project, reason=REASON)

    response = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 403
    assert response.json()["code"] == "blocked"
    assert REASON in response.json()["detail"]


def test_owner_blocks_lists_and_lifts_through_the_api(project, owner, worker, client_for):
    ItemFactory.create_batch(2, project=project)  # the one held when blocked is not offered again
    client = client_for(owner)
    assert client_for(worker).post(f"/api/v1/projects/{project.pk}/next/").status_code == 200

    created = client.post(blocks_url(project), {"username": "worker", "reason": REASON})
    listed = client.get(blocks_url(project))

    assert created.status_code == 201
    body = created.json()
    assert (body["worker"], body["username"], body["reason"]) == (worker.pk, "worker", REASON)
    assert (body["scope"], body["source"], body["active"]) == ("project", "owner", True)
    assert body["created_by"] == "owner"
    assert [b["id"] for b in listed.json()] == [body["id"]]
    assert not reserved(worker).exists()
    assert client_for(worker).post(f"/api/v1/projects/{project.pk}/next/").status_code == 403

    block = WorkerBlock.objects.get(pk=body["id"])
    lifted = client.post(lift_url(project, block))

    assert lifted.status_code == 200
    assert (lifted.json()["active"], lifted.json()["lifted_by"]) == (False, "owner")
    assert client.get(blocks_url(project)).json() == []
    assert [b["id"] for b in client.get(blocks_url(project) + "?all=1").json()] == [block.pk]
    assert client_for(worker).post(f"/api/v1/projects/{project.pk}/next/").status_code == 200


def test_block_api_names_the_worker_by_id_and_refuses_strangers_and_owners(
    project, owner, worker, client_for
):
    stranger = UserFactory(username="stranger")
    client = client_for(owner)

    by_id = client.post(blocks_url(project), {"worker": worker.pk, "reason": REASON})
    unknown = client.post(blocks_url(project), {"worker": stranger.pk, "reason": REASON})
    an_owner = client.post(blocks_url(project), {"username": "owner", "reason": REASON})
    both = client.post(blocks_url(project), {"worker": 1, "username": "x", "reason": REASON})
    no_reason = client.post(blocks_url(project), {"username": "worker"})

    assert by_id.status_code == 201
    assert by_id.json()["worker"] == worker.pk
    for response in (unknown, an_owner, both, no_reason):
        assert response.status_code == 400
    assert "worker" in unknown.json()["fields"]
    assert "worker" in an_owner.json()["fields"]
    assert "reason" in no_reason.json()["fields"]
    assert list(WorkerBlock.objects.values_list("worker_id", flat=True)) == [worker.pk]


def test_a_block_of_another_project_cannot_be_lifted_here(project, owner, client_for):
    other = ProjectFactory(created_by=owner)
    victim = make_annotator(other, "victim")
    block = worker_block(worker=victim, project=other, reason=REASON)

    response = client_for(owner).post(lift_url(project, block))

    assert response.status_code == 404
    assert WorkerBlock.objects.get(pk=block.pk).is_active


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 200), ("reviewer", 403), ("worker", 403), ("outsider", 404), (None, 401)],
)
def test_block_endpoints_are_for_owners_only(
    request, project, worker, owner, reviewer, outsider, client_for, who, expected
):
    block = worker_block(worker=make_annotator(project, "target"), project=project, reason=REASON)
    client = client_for(request.getfixturevalue(who) if who else None)

    listed = client.get(blocks_url(project))
    created = client.post(blocks_url(project), {"username": "worker", "reason": REASON})
    lifted = client.post(lift_url(project, block))

    assert listed.status_code == expected
    assert created.status_code == (201 if expected == 200 else expected)
    assert lifted.status_code == expected
    active = WorkerBlock.objects.filter(lifted_at__isnull=True)
    assert set(active.values_list("worker__username", flat=True)) == (
        {"worker"} if who == "owner" else {"target"}
    )


def test_block_list_query_count_is_bounded(
    project, owner, client_for, django_assert_max_num_queries
):
    for n in range(6):
        worker_block(worker=make_annotator(project, f"w{n}"), project=project, reason=REASON)
    pool = project_default_pool(project=project)
    worker_block(worker=make_annotator(project, "pooled"), pool=pool, reason=REASON)
    client = client_for(owner)

    with django_assert_max_num_queries(3):
        response = client.get(blocks_url(project))

    assert response.status_code == 200
    assert len(response.json()) == 7
    assert {b["scope"] for b in response.json()} == {"project", "pool"}


# --- HTML: the members page and the labeling page --------------------------------------------


def members_url(project):
    return reverse("crowd:members", args=[project.pk])


def test_members_page_lists_blocked_workers_with_an_unblock_button(
    client, owner, project, worker, django_assert_max_num_queries
):
    block = worker_block(worker=worker, project=project, reason=REASON, created_by=owner)
    client.force_login(owner)

    with django_assert_max_num_queries(9):
        response = client.get(members_url(project))

    html = response.content.decode()
    row = html.split(f'id="block-{block.pk}"', 1)[1].split("</tr>", 1)[0]
    assert REASON in row
    assert "Owner" in row
    assert "by owner" in row
    assert block.created_at.strftime("%Y-%m-%d") in row
    assert reverse("crowd:member-unblock", args=[project.pk, block.pk]) in row
    assert "Unblock" in row


def test_members_page_blocks_and_unblocks_a_worker(client, owner, project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)
    client.force_login(owner)

    blocked = client.post(
        reverse("crowd:member-block", args=[project.pk]), {"username": "worker", "reason": REASON}
    )

    assert blocked.status_code == 302
    block = WorkerBlock.objects.get(worker=worker)
    assert (block.reason, block.created_by) == (REASON, owner)
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED

    lifted = client.post(
        reverse("crowd:member-unblock", args=[project.pk, block.pk]), headers={"HX-Request": "true"}
    )

    assert lifted.status_code == 200
    assert lifted.headers["HX-Redirect"] == members_url(project)
    assert not worker_is_blocked(worker=worker, project=project)


def test_members_page_block_form_errors_come_back_as_a_422_partial(client, owner, project):
    client.force_login(owner)

    response = client.post(
        reverse("crowd:member-block", args=[project.pk]),
        {"username": "ghost", "reason": REASON},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="block-form"')
    assert "No worker &#x27;ghost&#x27; on this project." in html
    assert not WorkerBlock.objects.exists()


def test_only_owners_block_from_the_members_page(client, project, worker, reviewer):
    block = worker_block(worker=make_annotator(project, "target"), project=project, reason=REASON)
    for user, expected in ((worker, 403), (reviewer, 403), (UserFactory(username="x"), 404)):
        client.force_login(user)
        post = client.post(
            reverse("crowd:member-block", args=[project.pk]), {"username": "worker", "reason": "r"}
        )
        lift = client.post(reverse("crowd:member-unblock", args=[project.pk, block.pk]))
        assert (post.status_code, lift.status_code) == (expected, expected)

    assert list(WorkerBlock.objects.values_list("worker__username", "lifted_at")) == [
        ("target", None)
    ]


def test_labeling_page_shows_a_blocked_worker_the_reason(client, project, worker, item):
    worker_block(worker=worker, project=project, reason="Too fast on every item <b>.")
    client.force_login(worker)

    response = client.get(reverse("crowd:label", args=[project.pk]))

    assert response.status_code == 403
    html = response.content.decode()
    assert "You are blocked from labeling in this project" in html
    assert "Too fast on every item &lt;b&gt;." in html
    assert 'id="labeling"' not in html
    assert not Assignment.objects.exists()


def test_a_submit_after_the_block_is_refused_with_the_reason_and_no_new_item(
    client, project, worker
):
    ItemFactory.create_batch(4, project=project)
    client.force_login(worker)
    client.get(reverse("crowd:label", args=[project.pk]))
    current, buffered = reserved(worker).order_by("id")
    worker_block(worker=worker, project=project, reason=REASON)

    response = client.post(
        reverse("crowd:label-submit", args=[project.pk, current.pk]),
        {"label": "positive", "duration_ms": 50, "held": buffered.pk},
    )

    assert response.status_code == 403
    html = response.content.decode()
    assert 'class="label-refill"' in html
    assert REASON in html
    assert 'class="label-item"' not in html
    assert not Annotation.objects.exists()
    assert not reserved(worker).exists()

"""Removing project members (service, members page, API) and the audit trail of membership:
role changes, pool membership changes and pool-scoped blocks, seen from each project."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation.models import Annotation, Item, ProjectMember
from annotation.services import project_member_set
from core.models import AuditEvent
from crowd.models import Assignment, PoolMember
from crowd.pools import pool_invite_accept, pool_invite_create, pool_member_add, pool_member_remove
from crowd.services import (
    assignment_claim_next,
    assignment_list_ready,
    assignment_submit,
    project_default_pool,
    worker_block,
    worker_may_label,
)
from crowd.services.members import project_member_remove
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import join_pool, make_annotator, make_pool

pytestmark = pytest.mark.django_db


def audit(project, action):
    return list(AuditEvent.objects.filter(project=project, action=action).order_by("id"))


def role_of(project, user):
    return ProjectMember.objects.filter(project=project, user=user).values_list("role", flat=True)


# --- the service ------------------------------------------------------------------------------


def test_remove_releases_reservations_keeps_annotations_and_is_audited(project, owner, worker):
    items = ItemFactory.create_batch(3, project=project)
    first, held = assignment_list_ready(worker=worker, project=project, held=())
    answer = assignment_submit(
        assignment=first, worker=worker, value={"label": "positive"}, duration_ms=900
    )

    removed = project_member_remove(project=project, user_id=worker.pk, actor=owner)

    assert removed.role == ProjectMember.Role.ANNOTATOR
    assert not role_of(project, worker).exists()
    assert not worker_may_label(worker=worker, project=project)
    assert not PoolMember.objects.filter(pool=project_default_pool(project=project)).exists()
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED
    assert Item.objects.get(pk=held.item_id).slots_taken == 0  # back in the queue
    assert Annotation.objects.filter(pk=answer.pk, author=worker).exists()
    other = make_annotator(project, "other")
    taken = {assignment_claim_next(worker=other, project=project).item_id for _ in range(3)}
    assert taken == {item.pk for item in items}
    (event,) = audit(project, "member.remove")
    assert (event.actor, event.target) == (owner, "user worker")
    assert event.details["role"] == "annotator"
    assert event.details["reservations_released"] == 1


def test_remove_refuses_the_last_owner_but_not_one_of_two(project, owner):
    with pytest.raises(ValidationError, match="at least one owner"):
        project_member_remove(project=project, user_id=owner.pk, actor=owner)
    second = UserFactory(username="second")
    project_member_set(project=project, user=second, role=ProjectMember.Role.OWNER)

    project_member_remove(project=project, user_id=owner.pk, actor=second)

    assert not role_of(project, owner).exists()
    with pytest.raises(ValidationError, match="at least one owner"):
        project_member_remove(project=project, user_id=second.pk, actor=second)
    assert audit(project, "member.remove")[0].actor == second


def test_remove_refuses_non_members_and_members_of_a_shared_pool(project, owner, outsider):
    other = ProjectFactory(created_by=owner)
    shared = make_pool(project, other, name="Shared crowd")
    alice = UserFactory(username="alice")
    pool_member_add(pool=shared, username="alice", actor=owner)

    with pytest.raises(ValidationError, match="not a member"):
        project_member_remove(project=project, user_id=outsider.pk, actor=owner)
    with pytest.raises(ValidationError, match="Shared crowd"):
        project_member_remove(project=project, user_id=alice.pk, actor=owner)

    assert role_of(project, alice).get() == ProjectMember.Role.ANNOTATOR
    assert not audit(project, "member.remove")


def test_removed_reviewer_loses_access_and_the_role_change_is_audited(project, owner, reviewer):
    project_member_remove(project=project, user_id=reviewer.pk, actor=owner)

    assert not role_of(project, reviewer).exists()
    assert audit(project, "member.remove")[0].details["role"] == "reviewer"


# --- pools: membership changes reach every project the pool serves ----------------------------


def test_pool_membership_changes_are_audited_on_every_project_served(project, owner):
    other = ProjectFactory(created_by=owner)
    unrelated = ProjectFactory(created_by=owner)
    pool = make_pool(project, other, name="Shared")
    alice = UserFactory(username="alice")

    pool_member_add(pool=pool, username="alice", actor=owner)
    pool_member_add(pool=pool, username="alice", actor=owner)  # already in: nothing new
    pool_member_remove(pool=pool, user_id=alice.pk, actor=owner)

    for served in (project, other):
        (added,) = audit(served, "pool.member_add")
        assert (added.actor, added.target) == (owner, "pool Shared: user alice")
        assert added.details == {"pool": pool.pk, "user": alice.pk}
        (removed,) = audit(served, "pool.member_remove")
        assert (removed.actor, removed.target) == (owner, "pool Shared: user alice")
    assert not AuditEvent.objects.filter(project=unrelated).exists()


def test_joining_by_invite_is_audited_by_the_joining_user(project, owner):
    pool = make_pool(project, name="Open")
    invite = pool_invite_create(pool=pool, created_by=owner, expires_in_hours=1, max_uses=5)
    bob = UserFactory(username="bob")

    pool_invite_accept(token=invite.token, user=bob)

    (event,) = audit(project, "pool.member_add")
    assert (event.actor, event.target) == (bob, "pool Open: user bob")
    assert event.details["invite"] == invite.pk


def test_pool_views_and_api_record_the_acting_owner(client, client_for, project, owner):
    pool = make_pool(project, name="Shared")
    UserFactory(username="alice")
    carol = UserFactory(username="carol")
    join_pool(pool, carol)
    client.force_login(owner)

    added = client.post(reverse("pools:member-add", args=[pool.pk]), {"username": "alice"})
    removed = client_for(owner).delete(f"/api/v1/pools/{pool.pk}/members/{carol.pk}/")

    assert added.status_code == 302
    assert removed.status_code == 204
    assert [e.actor for e in audit(project, "pool.member_add")] == [owner]
    assert [e.actor for e in audit(project, "pool.member_remove")] == [owner]


# --- pool-scoped blocks on the project's pages ------------------------------------------------


def test_pool_blocks_show_read_only_on_the_members_page_and_in_the_api(
    client, client_for, project, owner
):
    pool = make_pool(project, ProjectFactory(created_by=owner), name="Shared")
    alice = UserFactory(username="alice")
    join_pool(pool, alice)
    block = worker_block(worker=alice, pool=pool, reason="Bots everywhere", created_by=owner)
    client.force_login(owner)

    html = client.get(reverse("crowd:members", args=[project.pk])).content.decode()
    listed = client_for(owner).get(f"/api/v1/projects/{project.pk}/blocks/").json()

    row = html.split(f'id="block-{block.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Bots everywhere" in row
    assert "Blocked from the pool “Shared”" in row
    assert reverse("crowd:member-unblock", args=[project.pk, block.pk]) not in row
    assert [(b["id"], b["scope"]) for b in listed] == [(block.pk, "pool")]
    lift = reverse("crowd:member-unblock", args=[project.pk, block.pk])
    assert client.post(lift).status_code == 404  # lifted only where the pool is managed


# --- the members page ---------------------------------------------------------------------------


def members_url(project):
    return reverse("crowd:members", args=[project.pk])


def remove_url(project, user):
    return reverse("crowd:member-remove", args=[project.pk, user.pk])


def test_members_page_has_a_keyboard_reachable_remove_button_with_confirm(
    client, project, owner, worker, django_assert_max_num_queries
):
    client.force_login(owner)

    with django_assert_max_num_queries(9):
        response = client.get(members_url(project))

    html = response.content.decode()
    member = ProjectMember.objects.get(project=project, user=worker)
    row = html.split(f'id="member-{member.pk}"', 1)[1].split("</tr>", 1)[0]
    assert f'action="{remove_url(project, worker)}"' in row
    assert f'hx-post="{remove_url(project, worker)}"' in row
    assert 'hx-confirm="Remove worker from this project?' in row
    assert '<button type="submit"' in row  # a real button: focusable, Enter/Space activate it
    assert 'aria-label="Remove worker"' in row


def test_members_page_removes_a_member_with_htmx(client, project, owner, worker):
    client.force_login(owner)

    response = client.post(remove_url(project, worker), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == members_url(project)
    assert not role_of(project, worker).exists()
    assert audit(project, "member.remove")[0].actor == owner
    assert "worker was removed" in client.get(members_url(project)).content.decode()


def test_members_page_refusal_comes_back_as_a_422_partial(client, project, owner):
    client.force_login(owner)

    response = client.post(remove_url(project, owner), headers={"HX-Request": "true"})

    assert response.status_code == 422
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="member-list"')
    assert "A project keeps at least one owner." in html
    assert role_of(project, owner).get() == ProjectMember.Role.OWNER


def test_members_page_remove_is_404_for_a_non_member(client, project, owner, outsider):
    client.force_login(owner)

    assert client.post(remove_url(project, outsider)).status_code == 404


def test_an_owner_who_removes_themselves_goes_to_the_project_list(client, project, owner):
    second = UserFactory(username="second")
    project_member_set(project=project, user=second, role=ProjectMember.Role.OWNER)
    client.force_login(owner)

    response = client.post(remove_url(project, owner))

    assert response.status_code == 302
    assert response.url == reverse("annotation:project-list")
    assert client.get(members_url(project)).status_code == 404


@pytest.mark.parametrize(("who", "status"), [("reviewer", 403), ("worker", 403), ("outsider", 404)])
def test_only_owners_remove_members_from_the_page(request, client, project, who, status):
    target = make_annotator(project, "target")
    client.force_login(request.getfixturevalue(who))

    assert client.post(remove_url(project, target)).status_code == status
    assert role_of(project, target).exists()


# --- the API --------------------------------------------------------------------------------


def api_url(project, user):
    return f"/api/v1/projects/{project.pk}/members/{user.pk}/"


def test_api_removes_a_member(client_for, project, owner, worker):
    response = client_for(owner).delete(api_url(project, worker))

    assert response.status_code == 204
    assert not role_of(project, worker).exists()
    assert audit(project, "member.remove")[0].actor == owner


def test_api_refuses_the_last_owner_and_unknown_members(client_for, project, owner, outsider):
    api = client_for(owner)

    last = api.delete(api_url(project, owner))
    unknown = api.delete(api_url(project, outsider))

    assert last.status_code == 400
    assert "at least one owner" in str(last.json())
    assert unknown.status_code == 404


@pytest.mark.parametrize(("who", "status"), [("reviewer", 403), ("worker", 403), ("outsider", 404)])
def test_only_owners_remove_members_through_the_api(request, client_for, project, who, status):
    target = make_annotator(project, "target")

    response = client_for(request.getfixturevalue(who)).delete(api_url(project, target))

    assert response.status_code == status
    assert role_of(project, target).exists()

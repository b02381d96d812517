"""Pools as data: creating pools, members, links with rules and the access table, invites,
and who may manage them (services, HTML pages and API)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from annotation.models import ProjectMember
from crowd.models import Pool, PoolInvite, PoolMember, ProjectPool
from crowd.pools import (
    InviteInvalidError,
    pool_create,
    pool_invite_accept,
    pool_invite_create,
    pool_invite_revoke,
    pool_member_add,
    pool_member_remove,
    project_pool_link,
    project_pool_unlink,
)
from crowd.selectors import project_list_for_worker
from crowd.services import worker_may_label
from tests.annotation.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def role_of(project, user):
    row = ProjectMember.objects.filter(project=project, user=user).first()
    return row.role if row else None


@pytest.fixture
def experts(owner):
    return pool_create(name="Experts", kind=Pool.Kind.INTERNAL_EXPERTS, created_by=owner)


@pytest.fixture
def crowd_pool(owner):
    return pool_create(name="Crowd", kind=Pool.Kind.EXTERNAL_CROWD, created_by=owner)


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


# --- services: pools, members, links --------------------------------------------------------


def test_pool_create_refuses_empty_name_and_unknown_kind(owner):
    with pytest.raises(ValidationError) as empty:
        pool_create(name="  ", kind=Pool.Kind.INTERNAL_CROWD, created_by=owner)
    with pytest.raises(ValidationError) as kind:
        pool_create(name="X", kind="martians", created_by=owner)

    assert "name" in empty.value.message_dict
    assert "kind" in kind.value.message_dict


def test_label_link_makes_pool_members_annotators_who_see_and_label_the_project(
    project, crowd_pool, alice
):
    pool_member_add(pool=crowd_pool, username="alice")
    assert role_of(project, alice) is None

    project_pool_link(project=project, pool=crowd_pool, rule=ProjectPool.Rule.LABEL)

    assert role_of(project, alice) == ProjectMember.Role.ANNOTATOR
    assert worker_may_label(worker=alice, project=project)
    assert list(project_list_for_worker(worker=alice)) == [project]


def test_review_link_makes_members_reviewers_who_do_not_label(project, experts, alice):
    project_pool_link(project=project, pool=experts, rule=ProjectPool.Rule.REVIEW)

    pool_member_add(pool=experts, username="alice")

    assert role_of(project, alice) == ProjectMember.Role.REVIEWER
    assert not worker_may_label(worker=alice, project=project)
    assert list(project_list_for_worker(worker=alice)) == []


def test_changing_the_rule_changes_the_role(project, experts, alice):
    pool_member_add(pool=experts, username="alice")
    project_pool_link(project=project, pool=experts, rule=ProjectPool.Rule.LABEL)

    project_pool_link(project=project, pool=experts, rule=ProjectPool.Rule.REVIEW)

    assert ProjectPool.objects.filter(project=project, pool=experts).count() == 1
    assert role_of(project, alice) == ProjectMember.Role.REVIEWER


def test_unlink_takes_the_role_away_unless_another_link_gives_it(
    project, experts, crowd_pool, alice
):
    bob = UserFactory(username="bob")
    for pool in (experts, crowd_pool):
        project_pool_link(project=project, pool=pool, rule=ProjectPool.Rule.LABEL)
    pool_member_add(pool=experts, username="alice")
    pool_member_add(pool=crowd_pool, username="alice")
    pool_member_add(pool=experts, username="bob")

    project_pool_unlink(project=project, pool=experts)

    assert role_of(project, alice) == ProjectMember.Role.ANNOTATOR  # still through the crowd
    assert role_of(project, bob) is None
    assert not worker_may_label(worker=bob, project=project)


def test_removing_a_member_takes_their_roles_away(project, crowd_pool, alice):
    project_pool_link(project=project, pool=crowd_pool, rule=ProjectPool.Rule.LABEL)
    pool_member_add(pool=crowd_pool, username="alice")

    pool_member_remove(pool=crowd_pool, user_id=alice.pk)

    assert role_of(project, alice) is None
    assert not PoolMember.objects.filter(pool=crowd_pool, user=alice).exists()
    with pytest.raises(ValidationError):
        pool_member_remove(pool=crowd_pool, user_id=alice.pk)


def test_pool_changes_never_demote_or_remove_an_owner(project, owner, experts):
    pool_member_add(pool=experts, username=owner.username)
    project_pool_link(project=project, pool=experts, rule=ProjectPool.Rule.REVIEW)
    assert role_of(project, owner) == ProjectMember.Role.OWNER

    project_pool_unlink(project=project, pool=experts)

    assert role_of(project, owner) == ProjectMember.Role.OWNER


def test_pool_member_add_refuses_unknown_user(crowd_pool):
    with pytest.raises(ValidationError) as error:
        pool_member_add(pool=crowd_pool, username="nobody")

    assert "username" in error.value.message_dict


# --- services: invites ------------------------------------------------------------------------


def test_invite_has_a_long_random_token_and_validates_its_numbers(owner, crowd_pool):
    invite = pool_invite_create(pool=crowd_pool, created_by=owner, expires_in_hours=2, max_uses=3)

    assert len(invite.token) >= 43
    with pytest.raises(ValidationError) as error:
        pool_invite_create(pool=crowd_pool, created_by=owner, expires_in_hours=0, max_uses=0)
    assert set(error.value.message_dict) == {"expires_in_hours", "max_uses"}


def test_invite_accept_joins_the_pool_and_its_projects_once(project, owner, crowd_pool, alice):
    project_pool_link(project=project, pool=crowd_pool, rule=ProjectPool.Rule.LABEL)
    invite = pool_invite_create(pool=crowd_pool, created_by=owner, expires_in_hours=2, max_uses=3)

    pool_invite_accept(token=invite.token, user=alice)
    pool_invite_accept(token=invite.token, user=alice)  # a second click uses nothing

    invite.refresh_from_db()
    assert invite.uses == 1
    assert role_of(project, alice) == ProjectMember.Role.ANNOTATOR


@pytest.mark.parametrize(
    ("state", "code"),
    [("expired", "invite_expired"), ("used_up", "invite_used_up"), ("revoked", "invite_revoked")],
)
def test_invite_accept_refuses_unusable_links_with_the_reason(owner, crowd_pool, state, code):
    invite = pool_invite_create(pool=crowd_pool, created_by=owner, expires_in_hours=1, max_uses=1)
    when = timezone.now()
    if state == "expired":
        when += timedelta(hours=2)
    elif state == "used_up":
        pool_invite_accept(token=invite.token, user=UserFactory())
    else:
        pool_invite_revoke(invite=invite)

    with time_machine.travel(when, tick=False), pytest.raises(InviteInvalidError) as error:
        pool_invite_accept(token=invite.token, user=UserFactory())

    assert error.value.code == code
    assert PoolMember.objects.filter(pool=crowd_pool).count() == (1 if state == "used_up" else 0)


def test_invite_accept_unknown_token(alice):
    with pytest.raises(InviteInvalidError) as error:
        pool_invite_accept(token="nope", user=alice)

    assert error.value.code == "invite_unknown"


# --- HTML pages -------------------------------------------------------------------------------


def test_owner_creates_a_pool_adds_a_member_and_links_it(client, owner, project, alice):
    client.force_login(owner)

    created = client.post(reverse("pools:list"), {"name": "Linguists", "kind": "internal_experts"})
    pool = Pool.objects.get(name="Linguists")
    added = client.post(reverse("pools:member-add", args=[pool.pk]), {"username": "alice"})
    linked = client.post(
        reverse("pools:project-link", args=[project.pk]), {"pool": pool.pk, "rule": "review"}
    )
    page = client.get(reverse("pools:project", args=[project.pk]))
    detail = client.get(reverse("pools:detail", args=[pool.pk]))

    assert created.status_code == added.status_code == linked.status_code == 302
    assert role_of(project, alice) == ProjectMember.Role.REVIEWER
    assert "Linguists" in page.content.decode()
    assert "Review items (experts)" in page.content.decode()
    assert "alice" in detail.content.decode()
    assert project.name in detail.content.decode()


def test_pool_forms_show_field_errors(client, owner, crowd_pool):
    client.force_login(owner)

    empty = client.post(reverse("pools:list"), {"name": "", "kind": "internal_crowd"})
    unknown = client.post(reverse("pools:member-add", args=[crowd_pool.pk]), {"username": "zed"})
    invite = client.post(
        reverse("pools:invite-create", args=[crowd_pool.pk]),
        {"expires_in_hours": "0", "max_uses": "5"},
    )

    assert empty.status_code == unknown.status_code == invite.status_code == 422
    assert "No user named" in unknown.content.decode()
    assert "greater than or equal to 1" in invite.content.decode()


def test_owner_creates_and_revokes_an_invite_link(client, owner, crowd_pool):
    client.force_login(owner)

    client.post(
        reverse("pools:invite-create", args=[crowd_pool.pk]),
        {"expires_in_hours": "48", "max_uses": "5"},
    )
    invite = PoolInvite.objects.get(pool=crowd_pool)
    page = client.get(reverse("pools:detail", args=[crowd_pool.pk])).content.decode()
    client.post(reverse("pools:invite-revoke", args=[crowd_pool.pk, invite.pk]))

    assert reverse("pools:join", args=[invite.token]) in page
    invite.refresh_from_db()
    assert invite.revoked_at is not None


def test_anonymous_invitee_logs_in_then_joins(client, owner, project, crowd_pool, alice):
    project_pool_link(project=project, pool=crowd_pool, rule=ProjectPool.Rule.LABEL)
    invite = pool_invite_create(pool=crowd_pool, created_by=owner, expires_in_hours=2, max_uses=2)
    url = reverse("pools:join", args=[invite.token])

    anonymous = client.get(url)
    client.force_login(alice)
    shown = client.get(url)
    joined = client.post(url)

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("login"))
    assert url in anonymous["Location"]
    assert "Join “Crowd”" in shown.content.decode()
    assert joined.status_code == 302
    assert role_of(project, alice) == ProjectMember.Role.ANNOTATOR


@pytest.mark.parametrize("state", ["expired", "used_up", "revoked"])
def test_join_page_says_why_a_link_cannot_be_used(client, owner, crowd_pool, alice, state):
    invite = pool_invite_create(pool=crowd_pool, created_by=owner, expires_in_hours=1, max_uses=1)
    if state == "used_up":
        pool_invite_accept(token=invite.token, user=UserFactory())
    elif state == "revoked":
        pool_invite_revoke(invite=invite)
    client.force_login(alice)
    when = timezone.now() + timedelta(hours=2 if state == "expired" else 0)

    with time_machine.travel(when, tick=False):
        response = client.post(reverse("pools:join", args=[invite.token]))

    expected = {"expired": "has expired", "used_up": "used as many times", "revoked": "revoked"}
    assert response.status_code == 410
    assert expected[state] in response.content.decode()
    assert not PoolMember.objects.filter(pool=crowd_pool, user=alice).exists()


def test_unknown_invite_link_is_a_clear_404(client, alice):
    client.force_login(alice)

    response = client.get(reverse("pools:join", args=["made-up"]))

    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_only_the_pool_manager_sees_or_changes_a_pool(client, crowd_pool, alice):
    client.force_login(alice)

    urls = [
        ("get", reverse("pools:detail", args=[crowd_pool.pk])),
        ("post", reverse("pools:member-add", args=[crowd_pool.pk])),
        ("post", reverse("pools:invite-create", args=[crowd_pool.pk])),
    ]
    statuses = [getattr(client, method)(url).status_code for method, url in urls]

    assert statuses == [404, 404, 404]
    assert crowd_pool.name not in client.get(reverse("pools:list")).content.decode()


def test_only_owners_manage_a_projects_pools(client, project, reviewer, worker, outsider):
    url = reverse("pools:project", args=[project.pk])
    statuses = {}
    for user in (reviewer, worker, outsider):
        client.force_login(user)
        statuses[user.username] = client.get(url).status_code

    assert statuses == {"reviewer": 403, "worker": 403, "outsider": 404}


def test_owner_cannot_link_someone_elses_pool(client, owner, project):
    other_pool = pool_create(name="Theirs", kind="internal_crowd", created_by=UserFactory())
    client.force_login(owner)

    response = client.post(
        reverse("pools:project-link", args=[project.pk]), {"pool": other_pool.pk, "rule": "label"}
    )

    assert response.status_code == 422
    assert not ProjectPool.objects.filter(pool=other_pool).exists()


def test_project_tabs_show_pools_to_owners(client, owner, project):
    client.force_login(owner)

    page = client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()

    assert reverse("pools:project", args=[project.pk]) in page


# --- API --------------------------------------------------------------------------------------


def test_api_pool_flow(client_for, owner, project, alice):
    api = client_for(owner)

    pool = api.post("/api/v1/pools/", {"name": "Crowd", "kind": "external_crowd"}, format="json")
    pool_id = pool.json()["id"]
    member = api.post(f"/api/v1/pools/{pool_id}/members/", {"username": "alice"}, format="json")
    link = api.post(
        f"/api/v1/projects/{project.pk}/pools/", {"pool": pool_id, "rule": "label"}, format="json"
    )
    listed = api.get(f"/api/v1/projects/{project.pk}/pools/").json()
    removed = api.delete(f"/api/v1/pools/{pool_id}/members/{alice.pk}/")

    assert (pool.status_code, member.status_code, link.status_code) == (201, 201, 200)
    assert any(row["pool_id"] == pool_id and row["rule"] == "label" for row in listed)
    assert removed.status_code == 204
    assert role_of(project, alice) is None


def test_api_invite_join_and_refusal(client_for, owner, crowd_pool, alice):
    created = client_for(owner).post(
        f"/api/v1/pools/{crowd_pool.pk}/invites/",
        {"expires_in_hours": 1, "max_uses": 1},
        format="json",
    )
    token = created.json()["token"]

    joined = client_for(alice).post(f"/api/v1/pools/join/{token}/")
    refused = client_for(UserFactory()).post(f"/api/v1/pools/join/{token}/")
    anonymous = client_for(None).post(f"/api/v1/pools/join/{token}/")

    assert joined.status_code == 200
    assert joined.json()["pool_id"] == crowd_pool.pk
    assert refused.status_code == 410
    assert refused.json()["code"] == "invite_used_up"
    assert anonymous.status_code in {401, 403}


def test_api_invite_field_errors(client_for, owner, crowd_pool):
    response = client_for(owner).post(
        f"/api/v1/pools/{crowd_pool.pk}/invites/",
        {"expires_in_hours": 0, "max_uses": "x"},
        format="json",
    )

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"expires_in_hours", "max_uses"}


def test_api_authorization(client_for, project, crowd_pool, reviewer, outsider):
    other = ProjectFactory()

    as_outsider = client_for(outsider)
    as_reviewer = client_for(reviewer)

    assert as_outsider.get(f"/api/v1/pools/{crowd_pool.pk}/members/").status_code == 404
    assert as_outsider.get("/api/v1/pools/").json() == []
    assert as_outsider.get(f"/api/v1/projects/{project.pk}/pools/").status_code == 404
    assert as_reviewer.get(f"/api/v1/projects/{project.pk}/pools/").status_code == 403
    assert as_reviewer.get(f"/api/v1/projects/{project.pk}/requirements/").status_code == 403
    assert as_reviewer.get(f"/api/v1/projects/{other.pk}/requirements/").status_code == 404
    assert client_for(None).get("/api/v1/pools/").status_code in {401, 403}


def test_api_pool_list_query_count(client_for, owner, django_assert_max_num_queries):
    for number in range(5):
        pool_create(name=f"Pool {number}", kind="internal_crowd", created_by=owner)
    api = client_for(owner)

    with django_assert_max_num_queries(3):
        response = api.get("/api/v1/pools/")

    assert len(response.json()) == 5

"""The audit log: each wired owner/reviewer action records who, when and what; only owners
read it, on the page (filtered, paginated) and through the API."""

from __future__ import annotations

from datetime import date
from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from annotation.models import ProjectMember
from annotation.services import project_member_set, project_update
from core.audit import audit_list, audit_record
from core.audit_views import PAGE_SIZE
from core.models import AuditEvent
from crowd.models import WorkerBlock
from crowd.pay import annotation_decide, bonus_grant
from crowd.pay.export import payout_export
from crowd.services import project_member_add
from crowd.services.blocks import project_worker_block, worker_block, worker_unblock
from quality.model import training
from quality.models import ItemScore
from quality.releases import release_build
from quality.releases.delivery import release_file_deliver
from quality.review import review_decide
from quality.rules.services import rule_create, rule_delete, rule_update
from quality.services import (
    quality_action_create,
    quality_action_undo,
    quality_config_get,
    quality_config_update,
)
from quality.services.actions import rules_apply
from quality.spam import Hit, Rule
from tests.annotation.factories import (
    AnnotationFactory,
    ItemFactory,
    ProjectFactory,
    UserFactory,
)
from tests.crowd.factories import join_pool, make_annotator, make_pool
from tests.quality.factories import make_release

pytestmark = pytest.mark.django_db


def events(project, action=None):
    found = AuditEvent.objects.filter(project=project).order_by("id")
    return list(found.filter(action=action) if action else found)


def only(project, action):
    found = events(project, action)
    assert len(found) == 1, [(e.action, e.target) for e in events(project)]
    return found[0]


@pytest.fixture
def reviewer(project):
    user = UserFactory(username="rita")
    project_member_set(project=project, user=user, role=ProjectMember.Role.REVIEWER)
    return user


# --- the service ------------------------------------------------------------------------------


def test_audit_record_stores_json_details_and_anonymous_as_system(project, owner):
    event = audit_record(
        actor=AnonymousUser(),
        project=project.pk,
        action="project.update",
        target="x" * 500,
        details={"when": date(2026, 1, 2), "who": owner, "tags": ("a", "b")},
    )

    event.refresh_from_db()
    assert event.actor_id is None
    assert event.project_id == project.pk
    assert len(event.target) == 200
    assert event.details == {"when": "2026-01-02", "who": owner.pk, "tags": ["a", "b"]}
    assert event.created_at is not None


def test_audit_record_refuses_an_empty_action(project, owner):
    with pytest.raises(ValidationError, match="action"):
        audit_record(actor=owner, project=project, action="")


def test_audit_rows_roll_back_with_the_action(project, owner):
    @transaction.atomic
    def rename_then_fail():
        project_update(project=project, actor=owner, name="Renamed")
        raise RuntimeError("the caller's transaction fails after the action")

    with pytest.raises(RuntimeError):
        rename_then_fail()

    assert events(project) == []


def test_audit_list_filters_by_family_code_and_actor(project, owner, reviewer):
    for action, actor in [
        ("pay.approve", owner),
        ("pay.reject", reviewer),
        ("worker.block", owner),
    ]:
        audit_record(actor=actor, project=project, action=action)
    audit_record(actor=owner, project=ProjectFactory(), action="pay.approve")  # another project

    assert [e.action for e in audit_list(project, {"action": "pay"})] == [
        "pay.reject",
        "pay.approve",
    ]
    assert [e.action for e in audit_list(project, {"action": "pay.reject"})] == ["pay.reject"]
    assert [e.action for e in audit_list(project, {"actor": str(owner.pk)})] == [
        "worker.block",
        "pay.approve",
    ]
    with pytest.raises(ValidationError, match="actor"):
        list(audit_list(project, {"actor": "alice"}))
    with pytest.raises(ValidationError, match="colour"):
        audit_list(project, {"colour": "red"})


# --- wired actions ----------------------------------------------------------------------------


def test_project_update_records_changed_fields_before_and_after(project, owner):
    project_update(project=project, actor=owner, name="Reviews 2", overlap=3, gold_ratio=0.1)
    project_update(project=project, actor=owner, name="Reviews 2")  # nothing changed

    event = only(project, "project.update")
    assert event.actor == owner
    assert event.details == {
        "gold_ratio": {"before": 0.0, "after": 0.1},
        "name": {"before": "Reviews", "after": "Reviews 2"},
    }


def test_label_change_with_answers_records_the_schema_change_by_the_owner(project, owner):
    AnnotationFactory(item=ItemFactory(project=project))
    labels = [*project.labels, {"value": "mixed", "hotkey": "3"}]

    project_update(project=project, actor=owner, labels=labels)

    schema = only(project, "schema.change")
    assert (schema.actor, schema.target) == (owner, "label schema v2")
    assert schema.details["operations"][0]["op"] == "add"
    update = only(project, "project.update")
    before = [label["value"] for label in update.details["labels"]["before"]]
    after = [label["value"] for label in update.details["labels"]["after"]]
    assert (before, after) == (["positive", "negative"], ["positive", "negative", "mixed"])


def test_member_add_records_the_addition_then_the_role_change(project, owner):
    UserFactory(username="alice")

    project_member_add(project=project, username="alice", role="annotator", actor=owner)
    project_member_add(project=project, username="alice", role="reviewer", actor=owner)
    project_member_add(project=project, username="alice", role="reviewer", actor=owner)

    added = only(project, "member.add")
    assert (added.actor, added.target) == (owner, "user alice")
    assert added.details == {"role": {"before": None, "after": "annotator"}}
    changed = only(project, "member.role")  # the same role again records nothing
    assert (changed.actor, changed.target) == (owner, "user alice")
    assert changed.details == {"role": {"before": "annotator", "after": "reviewer"}}


def test_block_and_unblock_record_once_each(project, owner):
    make_annotator(project, "alice")

    block = project_worker_block(
        project=project, reason="Copy-pasted answers", created_by=owner, username="alice"
    )
    project_worker_block(project=project, reason="Again", created_by=owner, username="alice")
    worker_unblock(block=block, lifted_by=owner)
    worker_unblock(block=block, lifted_by=owner)

    blocked = only(project, "worker.block")
    assert (blocked.actor, blocked.target) == (owner, "worker alice")
    assert blocked.details["reason"] == "Copy-pasted answers"
    assert blocked.details["source"] == WorkerBlock.Source.OWNER
    unblocked = only(project, "worker.unblock")
    assert (unblocked.actor, unblocked.target) == (owner, "worker alice")


def test_pool_block_and_unblock_record_on_every_project_the_pool_serves(project, owner):
    other = ProjectFactory(created_by=owner, name="Other")
    unrelated = ProjectFactory(created_by=owner, name="Unrelated")
    pool = make_pool(project, other, name="Shared")
    alice = UserFactory(username="alice")
    join_pool(pool, alice)

    block = worker_block(worker=alice, pool=pool, reason="Bots", created_by=owner)
    worker_unblock(block=block, lifted_by=owner)

    for served in (project, other):
        blocked = only(served, "worker.block")
        assert (blocked.actor, blocked.target) == (owner, "worker alice in pool Shared")
        assert blocked.details["pool"] == "Shared"
        assert only(served, "worker.unblock").actor == owner
    assert events(unrelated) == []
    assert not AuditEvent.objects.filter(project=None).exists()


def test_review_decision_records_the_consensus_it_overrode(project, owner, reviewer):
    project.labels = [{"value": "positive"}, {"value": "negative"}]
    project.save(update_fields=["labels"])
    item = ItemFactory(project=project)
    ItemScore.objects.create(
        item=item,
        project=project,
        majority_label="positive",
        label="positive",
        confidence=0.55,
        state=ItemScore.State.REVIEW,
        computed_at=timezone.now(),
    )

    with mock.patch("quality.review.quality_recompute_schedule"):
        review_decide(item=item, reviewer=reviewer, action="corrected", label="negative")
        review_decide(item=item, reviewer=owner, action="accepted")

    corrected, accepted = events(project, "review.decide")
    assert (corrected.actor, corrected.target) == (reviewer, f"item {item.pk}")
    assert corrected.details == {
        "item": item.pk,
        "action": "corrected",
        "label": "negative",
        "consensus": {"label": "positive", "confidence": 0.55},
        "previous_decision": None,
    }
    assert accepted.actor == owner
    assert accepted.details["consensus"] == {"label": "negative", "confidence": 1.0}
    assert accepted.details["previous_decision"] == "negative"


def test_owner_quality_actions_and_undo_are_recorded(project, owner):
    alice = make_annotator(project, "alice")

    with mock.patch("quality.services.actions.quality_recompute_schedule"):
        flag = quality_action_create(
            project=project, worker=alice, kind="flag", by=owner, reason="Odd answers"
        )
        block = quality_action_create(
            project=project, worker=alice, kind="block", by=owner, reason="Bot"
        )
        quality_action_undo(action=flag, by=owner)
        quality_action_undo(action=flag, by=owner)

    flagged, blocked = events(project, "quality.action")
    assert (flagged.actor, flagged.target) == (owner, "worker alice")
    assert flagged.details == {"kind": "flag", "source": "owner", "rule": "Odd answers"}
    assert blocked.details["kind"] == "block"
    assert blocked.details["block"] == block.block_id
    assert only(project, "worker.block").actor == owner
    undone = only(project, "quality.undo")
    assert (undone.actor, undone.target) == (owner, "worker alice")
    assert undone.details["kind"] == "flag"


def test_rule_actions_are_recorded_as_the_system(project):
    spammer = make_annotator(project, "spammy")
    config = quality_config_get(project=project)
    hit = Hit(
        worker=0,
        rule=Rule(signal="gold_accuracy", op="<", threshold=0.5, min_evidence=1, action="flag"),
        evidence={"rule": "gold accuracy < 0.5 → flag"},
    )
    votes = mock.Mock(worker_ids=[spammer.pk])

    with mock.patch("quality.services.actions.rules_evaluate", return_value=[hit]):
        rules_apply(project=project, config=config, votes=votes, signals=mock.Mock())

    event = only(project, "quality.action")
    assert (event.actor, event.target) == (None, "worker spammy")
    assert event.details["source"] == "rule"
    assert event.details["rule"] == "gold accuracy < 0.5 → flag"


def test_pay_decisions_and_bonus_record_who_and_what(project, owner, reviewer):
    alice = make_annotator(project, "alice")
    answer = AnnotationFactory(item=ItemFactory(project=project), author=alice)

    annotation_decide(annotation=answer, status="approved", decided_by=reviewer, source="reviewer")
    annotation_decide(annotation=answer, status="approved", decided_by=reviewer, source="reviewer")
    annotation_decide(
        annotation=answer, status="rejected", reason="Off topic", decided_by=owner, source="owner"
    )
    bonus_grant(project=project, worker=alice, amount_cents=150, note="Thanks", granted_by=owner)

    approved = only(project, "pay.approve")
    assert approved.actor == reviewer
    assert approved.target == f"annotation {answer.pk} (item {answer.item_id})"
    assert approved.details["status"] == {"before": None, "after": "approved"}
    rejected = only(project, "pay.reject")
    assert rejected.actor == owner
    assert rejected.details["status"] == {"before": "approved", "after": "rejected"}
    assert rejected.details["reason"] == "Off topic"
    bonus = only(project, "pay.bonus")
    assert (bonus.actor, bonus.target) == (owner, "worker alice")
    assert bonus.details == {"amount_cents": 150, "note": "Thanks"}


def test_payout_csv_export_is_recorded(project, owner):
    alice = make_annotator(project, "alice")
    AnnotationFactory(item=ItemFactory(project=project), author=alice)

    today = timezone.localdate()

    text = payout_export(project=project, start=today, end=today, identities=True, actor=owner)

    event = only(project, "export.payout_csv")
    assert (event.actor, event.target) == (owner, f"payouts {today} to {today}")
    assert "alice" in text
    assert event.details == {"identities": True, "workers": 1}


@pytest.mark.usefixtures("media_root")
def test_release_create_and_download_are_recorded(project, owner):
    for author in [UserFactory(), UserFactory()]:
        AnnotationFactory(item=ItemFactory(project=project), author=author)
    release = release_build(release=make_release(project, owner, name="First"))

    delivery = release_file_deliver(release=release, fmt="jsonl", actor=owner)
    delivery.file.close()

    created = only(project, "release.create")
    assert (created.actor, created.target) == (owner, "release v1")
    assert created.details["name"] == "First"
    downloaded = only(project, "release.download")
    assert (downloaded.actor, downloaded.target) == (owner, "release v1 jsonl")
    assert downloaded.details["sha256"] == delivery.sha256


def test_quality_settings_record_before_and_after(project, owner):
    with mock.patch("quality.services.actions.quality_recompute_schedule"):
        quality_config_update(project=project, actor=owner, method="mace", review_enabled=False)

    event = only(project, "quality.settings")
    assert event.actor == owner
    assert event.details["method"] == {"before": "auto", "after": "mace"}


def test_rule_create_update_delete_are_recorded(project, owner):
    rule = rule_create(
        project=project,
        user=owner,
        name="Great",
        kind="keywords",
        label="positive",
        config={"keywords": ["great"]},
    )
    rule_update(rule=rule, actor=owner, name="Great words")
    rule_delete(rule=rule, actor=owner)

    created, updated, deleted = events(project, "rules.change")
    assert [e.details["op"] for e in (created, updated, deleted)] == ["create", "update", "delete"]
    assert created.details["name"] == {"before": None, "after": "Great"}
    assert updated.details == {"op": "update", "name": {"before": "Great", "after": "Great words"}}
    assert (deleted.actor, deleted.target) == (owner, "rule Great words")


def test_model_training_request_is_recorded(project, owner):
    with mock.patch.object(training, "vetted_count", return_value=training.MIN_VETTED):
        training.model_train_request(project=project, actor=owner)

    event = only(project, "model.train")
    assert event.actor == owner
    assert event.details == {"vetted_labels": training.MIN_VETTED}


# --- the page -----------------------------------------------------------------------------------


def page_url(project, **query):
    url = reverse("audit:audit-list", args=[project.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def test_page_shows_who_did_what_to_owners(client, project, owner):
    project_update(project=project, actor=owner, name="Renamed reviews")
    audit_record(actor=None, project=project, action="worker.block", target="worker bob")
    client.force_login(owner)

    response = client.get(page_url(project))

    assert response.status_code == 200
    html = response.content.decode()
    assert "project.update" in html
    assert "name: Reviews → Renamed reviews" in html
    assert "owner" in html
    assert "worker bob" in html
    assert "system" in html


def test_page_filter_menu_offers_the_new_action_codes(client, project, owner):
    client.force_login(owner)

    html = client.get(page_url(project)).content.decode()

    for code in (
        "member.remove",
        "member.role",
        "pool.member_add",
        "pool.member_remove",
        "quality.action",
        "quality.undo",
        "review.decide",
    ):
        assert f'<option value="{code}"' in html
    for family in ("pool", "review"):
        assert f'<option value="{family}"' in html


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_page_is_for_owners_only(client, project, role):
    user = UserFactory(username="someone")
    project_member_set(project=project, user=user, role=role)
    client.force_login(user)

    assert client.get(page_url(project)).status_code == 403
    client.force_login(UserFactory(username="stranger"))
    assert client.get(page_url(project)).status_code == 404
    client.logout()
    assert client.get(page_url(project)).status_code == 302


def test_page_filters_by_action_and_paginates(client, project, owner):
    for n in range(PAGE_SIZE + 1):
        audit_record(actor=owner, project=project, action="pay.approve", target=f"answer {n}")
    audit_record(actor=owner, project=project, action="worker.block", target="worker bob")
    client.force_login(owner)

    blocks = client.get(page_url(project, action="worker")).content.decode()
    first = client.get(page_url(project, action="pay.approve")).content.decode()
    second = client.get(page_url(project, action="pay.approve", page=2)).content.decode()

    assert "worker bob" in blocks
    assert "answer 0<" not in blocks
    assert "worker bob" not in first
    assert f"answer {PAGE_SIZE}<" in first
    assert "answer 0<" not in first
    assert "Page 1 of 2" in first
    assert "action=pay.approve&amp;page=2" in first
    assert "answer 0<" in second


def test_page_query_count_does_not_grow_with_events(
    client, project, owner, django_assert_max_num_queries
):
    actors = [UserFactory(username=f"u{n}") for n in range(10)]
    for n in range(PAGE_SIZE):
        audit_record(actor=actors[n % 10], project=project, action="pay.approve", details={"n": n})
    client.force_login(owner)

    with django_assert_max_num_queries(8):
        response = client.get(page_url(project))

    assert response.status_code == 200


# --- the API ------------------------------------------------------------------------------------


def api_url(project):
    return reverse("api:audit-event-list", args=[project.pk])


def test_api_lists_events_for_owners(client_for, project, owner, reviewer):
    bonus = audit_record(actor=owner, project=project, action="pay.bonus", target="worker bob")
    audit_record(actor=reviewer, project=project, action="pay.reject")
    audit_record(actor=None, project=project, action="worker.block")

    response = client_for(owner).get(api_url(project), {"action": "pay"})

    assert response.status_code == 200
    results = response.json()["results"]
    assert [row["action"] for row in results] == ["pay.reject", "pay.bonus"]
    assert results[1] == {
        "id": bonus.pk,
        "created_at": results[1]["created_at"],
        "actor": "owner",
        "actor_id": owner.pk,
        "action": "pay.bonus",
        "target": "worker bob",
        "details": {},
    }
    mine = client_for(owner).get(api_url(project), {"actor": owner.pk}).json()["results"]
    assert [row["action"] for row in mine] == ["pay.bonus"]
    system = client_for(owner).get(api_url(project), {"action": "worker"}).json()["results"]
    assert system[0]["actor"] is None


def test_api_refuses_others_and_bad_filters(client_for, project, owner, reviewer):
    assert client_for(reviewer).get(api_url(project)).status_code == 403
    assert client_for(UserFactory(username="stranger")).get(api_url(project)).status_code == 404
    assert client_for(None).get(api_url(project)).status_code in (401, 403)
    bad = client_for(owner).get(api_url(project), {"actor": "alice"})
    assert bad.status_code == 400
    assert "actor" in bad.json()["fields"]


def test_api_query_count_does_not_grow_with_events(
    client_for, project, owner, django_assert_max_num_queries
):
    for n in range(40):
        audit_record(actor=UserFactory(), project=project, action="pay.approve", details={"n": n})
    client = client_for(owner)

    with django_assert_max_num_queries(6):
        response = client.get(api_url(project))

    assert len(response.json()["results"]) == 40


# --- pages and the API record who acted -----------------------------------------------------


def test_pages_and_api_record_the_acting_user(client_for):
    from tests.annotation.factories import ProjectFactory, UserFactory

    owner = UserFactory()
    project = ProjectFactory(created_by=owner)
    api = client_for(owner)

    patched = api.patch(f"/api/v1/projects/{project.pk}/", {"overlap": 4}, format="json")
    today = timezone.localdate().isoformat()
    exported = api.get(reverse("api:pay-payout", args=[project.pk]), {"from": today, "to": today})

    assert patched.status_code == 200
    assert exported.status_code == 200
    events = {event.action: event for event in AuditEvent.objects.filter(project=project)}
    assert events["project.update"].actor == owner
    assert events["project.update"].details["overlap"] == {"before": 3, "after": 4}
    assert events["export.payout_csv"].actor == owner

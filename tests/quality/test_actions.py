"""Spam rules acting on workers through the recompute, owners acting and undoing, the actions
page and API, and who may use them."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.cache import cache
from django.urls import reverse

from annotation.models import Item, ProjectMember
from annotation.services import project_member_set
from crowd.models import Assignment, WorkerBlock
from crowd.services import WorkerBlockedError, assignment_claim_next
from quality.models import ItemScore, QualityAction, WorkerScore
from quality.services import (
    quality_action_create,
    quality_action_undo,
    quality_config_get,
    quality_recompute,
)
from quality.tasks import quality_recompute_task
from tests.annotation.factories import ItemFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import vote


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


pytestmark = pytest.mark.django_db

GOLD_RULE = {
    "signal": "gold_accuracy",
    "op": "<",
    "threshold": 0.5,
    "min_evidence": 5,
    "action": "exclude",
}


@pytest.fixture(autouse=True)
def _no_tasks():
    """Undo and owner actions schedule a recompute: keep it off the broker."""
    cache.clear()
    with mock.patch.object(quality_recompute_task, "apply_async"):
        yield
    cache.clear()


def configure(project, **fields):
    config = quality_config_get(project=project)
    for name, value in fields.items():
        setattr(config, name, value)
    config.save()
    return config


@pytest.fixture
def spam(project):
    """Careful a and b, spammer s (wrong on all 6 gold items), and item `alone` only s labelled."""
    a, b = make_annotator(project, "ann"), make_annotator(project, "bob")
    s = make_annotator(project, "spammy")
    gold = [ItemFactory(project=project, gold={"label": "positive"}) for _ in range(6)]
    for item in gold:
        vote(item, a, "positive"), vote(item, b, "positive"), vote(item, s, "negative")
    shared = [ItemFactory(project=project) for _ in range(4)]
    for item in shared:
        vote(item, a, "positive"), vote(item, b, "positive"), vote(item, s, "negative")
    alone = ItemFactory(project=project)
    vote(alone, s, "negative")
    return {"good": (a, b), "spammer": s, "alone": alone, "gold": gold}


def test_rule_excludes_a_worker_with_evidence_and_undo_restores_the_labels(project, spam, owner):
    configure(project, method="mv", spam_rules=[GOLD_RULE])
    s, alone = spam["spammer"], spam["alone"]

    quality_recompute(project=project)

    (action,) = QualityAction.objects.filter(project=project)
    assert (action.worker_id, action.kind, action.source) == (s.pk, "exclude", "rule")
    assert action.rule == "gold accuracy < 0.5 (≥ 5 gold answers) → exclude labels"
    assert action.evidence["signal"] == "gold_accuracy"
    assert (action.evidence["value"], action.evidence["evidence"]) == (0.0, 6)
    score = ItemScore.objects.get(item=alone)
    assert (score.label, score.confidence, score.majority_label) == ("", 0.0, "negative")
    assert WorkerScore.objects.get(project=project, worker=s).excluded

    quality_action_undo(action=action, by=owner)
    quality_recompute(project=project)

    action.refresh_from_db()
    assert action.undone_at is not None
    assert action.undone_by == owner
    score = ItemScore.objects.get(item=alone)
    assert (score.label, score.confidence) == ("negative", 1.0)  # the labels count again
    assert not WorkerScore.objects.get(project=project, worker=s).excluded
    # An owner's undo is final: the rule does not fire on this worker again.
    assert QualityAction.objects.filter(project=project).count() == 1


def test_recomputes_do_not_duplicate_actions(project, spam):
    configure(project, method="mv", spam_rules=[GOLD_RULE, {**GOLD_RULE, "action": "flag"}])

    quality_recompute(project=project)
    quality_recompute(project=project)

    kinds = sorted(QualityAction.objects.values_list("worker__username", "kind"))
    assert kinds == [("spammy", "exclude"), ("spammy", "flag")]


def test_without_auto_actions_rules_only_flag(project, spam):
    configure(project, method="mv", spam_rules=[GOLD_RULE], auto_actions=False)

    quality_recompute(project=project)

    assert list(QualityAction.objects.values_list("kind", flat=True)) == ["flag"]
    assert ItemScore.objects.get(item=spam["alone"]).label == "negative"  # nothing excluded


def test_block_rule_blocks_and_releases_reservations_and_undo_lifts_it(project, spam, owner):
    configure(project, method="mv", spam_rules=[{**GOLD_RULE, "action": "block"}])
    s = spam["spammer"]
    ItemFactory(project=project)
    held = assignment_claim_next(worker=s, project=project)
    assert held is not None
    assert held.status == Assignment.Status.RESERVED

    quality_recompute(project=project)

    action = QualityAction.objects.get(project=project, worker=s, kind="block")
    assert action.block is not None
    assert action.block.source == WorkerBlock.Source.QUALITY
    assert action.block.is_active
    held.refresh_from_db()
    assert held.status != Assignment.Status.RESERVED
    assert Item.objects.get(pk=held.item_id).slots_taken == 0
    with pytest.raises(WorkerBlockedError):
        assignment_claim_next(worker=s, project=project)
    assert ItemScore.objects.get(item=spam["alone"]).label == ""  # a block also excludes

    quality_action_undo(action=action, by=owner)

    action.block.refresh_from_db()
    assert not action.block.is_active
    assert action.block.lifted_by == owner


def test_requeue_rule_asks_one_more_annotator_for_the_workers_items(project, spam):
    configure(project, method="mv", spam_rules=[{**GOLD_RULE, "action": "requeue"}], max_overlap=4)

    quality_recompute(project=project)
    quality_recompute(project=project)  # once per action, not per run

    action = QualityAction.objects.get(kind="requeue")
    assert action.evidence["requeued_items"] == 5  # 4 shared items and `alone`
    targets = set(
        Item.objects.filter(is_gold=False, annotations__author=spam["spammer"]).values_list(
            "target", flat=True
        )
    )
    assert targets == {4}


def test_default_rules_apply_when_the_project_has_none(project, spam):
    config = quality_config_get(project=project)
    assert config.spam_rules == []

    quality_recompute(project=project)

    # With 6 gold answers no default rule has enough evidence (gold kappa needs 20).
    assert not QualityAction.objects.exists()
    signals = WorkerScore.objects.get(worker=spam["spammer"]).signals
    assert signals["gold_accuracy"] == 0.0
    assert signals["gold_accuracy_n"] == 6


def test_owner_acts_by_hand_and_may_not_double_an_active_action(project, spam, owner):
    a = spam["good"][0]

    action = quality_action_create(
        project=project, worker=a, kind="exclude", by=owner, reason="Ignored instructions"
    )

    assert (action.source, action.created_by, action.rule) == (
        "owner",
        owner,
        "Ignored instructions",
    )
    with pytest.raises(Exception, match="already has an active"):
        quality_action_create(project=project, worker=a, kind="exclude", by=owner, reason="again")
    with pytest.raises(Exception, match="No such worker"):
        quality_action_create(
            project=project, worker=UserFactory(), kind="flag", by=owner, reason="who?"
        )


# --- pages and API ------------------------------------------------------------------------------


@pytest.fixture
def people(project, spam):
    reviewer = UserFactory(username="rev")
    project_member_set(project=project, user=reviewer, role=ProjectMember.Role.REVIEWER)
    return {
        "reviewer": reviewer,
        "annotator": spam["good"][0],
        "outsider": UserFactory(username="out"),
    }


def test_actions_page_lists_filters_and_undoes(client, project, spam, owner):
    configure(project, method="mv", spam_rules=[GOLD_RULE])
    quality_recompute(project=project)
    action = QualityAction.objects.get()
    client.force_login(owner)
    url = reverse("quality:actions", args=[project.pk])

    page = client.get(url)
    assert page.status_code == 200
    assert b"spammy" in page.content
    assert b"exclude labels" in page.content

    undo = reverse("quality:action-undo", args=[project.pk, action.pk])
    swapped = client.post(undo, HTTP_HX_REQUEST="true")
    assert swapped.status_code == 200
    assert f'id="action-{action.pk}"'.encode() in swapped.content
    assert b"Undone" in swapped.content
    row = f'id="action-{action.pk}"'.encode()
    assert row not in client.get(url).content  # the active filter
    assert row in client.get(url + "?status=undone").content


def test_actions_page_owner_form_and_gold_promotion(client, project, spam, owner):
    quality_recompute(project=project)
    client.force_login(owner)
    url = reverse("quality:actions", args=[project.pk])

    missing = client.post(url, {"worker": spam["good"][1].pk, "kind": "flag", "reason": ""})
    assert missing.status_code == 422
    done = client.post(url, {"worker": spam["good"][1].pk, "kind": "flag", "reason": "Check"})
    assert done.status_code == 302
    assert QualityAction.objects.get(source="owner").worker == spam["good"][1]

    candidate = ItemScore.objects.filter(item__is_gold=False, confidence__gte=0.95).first()
    assert f"#{candidate.item_id}".encode() in client.get(url).content
    promote = reverse("quality:gold-promote", args=[project.pk])
    client.post(promote, {"item": candidate.item_id, "label": "positive"})
    item = Item.objects.get(pk=candidate.item_id)
    assert item.is_gold
    assert item.gold == {"label": "positive"}


@pytest.mark.parametrize(
    ("who", "expected"), [("reviewer", 403), ("annotator", 403), ("outsider", 404)]
)
def test_only_owners_see_or_use_the_actions(client, project, people, who, expected):
    action = QualityAction.objects.create(project=project, worker=people["annotator"], kind="flag")
    client.force_login(people[who])

    assert client.get(reverse("quality:actions", args=[project.pk])).status_code == expected
    undo = reverse("quality:action-undo", args=[project.pk, action.pk])
    assert client.post(undo).status_code == expected
    promote = reverse("quality:gold-promote", args=[project.pk])
    assert client.post(promote, {"item": 1, "label": "positive"}).status_code == expected
    action.refresh_from_db()
    assert action.undone_at is None


def test_api_lists_creates_and_undoes_actions(api_client, project, spam, owner):
    api_client.force_authenticate(owner)
    url = reverse("api:project-quality-actions", args=[project.pk])
    worker = spam["spammer"]

    created = api_client.post(url, {"worker": worker.pk, "kind": "block", "reason": "Fraud"})

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["worker"], body["kind"], body["source"], body["active"]) == (
        "spammy",
        "block",
        "owner",
        True,
    )
    assert WorkerBlock.objects.get(pk=body["block"]).source == WorkerBlock.Source.OWNER
    assert [row["id"] for row in api_client.get(url + "?status=active").json()] == [body["id"]]

    undo = reverse("api:project-quality-action-undo", args=[project.pk, body["id"]])
    undone = api_client.post(undo)
    assert undone.status_code == 200
    assert undone.json()["active"] is False
    assert api_client.get(url + "?status=active").json() == []
    assert not WorkerBlock.objects.get(pk=body["block"]).is_active

    bad = api_client.post(url, {"worker": worker.pk, "kind": "nuke", "reason": "x"})
    assert bad.status_code == 400
    assert "kind" in bad.json()["fields"]


def test_api_promotes_an_item_to_gold(api_client, project, spam, owner):
    api_client.force_authenticate(owner)
    url = reverse("api:project-quality-gold-promote", args=[project.pk])
    item = ItemFactory(project=project)

    ok = api_client.post(url, {"item": item.pk, "label": "negative"}, format="json")
    again = api_client.post(url, {"item": item.pk, "label": "negative"}, format="json")
    bad_label = api_client.post(
        url, {"item": ItemFactory(project=project).pk, "label": "maybe"}, format="json"
    )

    assert ok.status_code == 200
    assert ok.json()["gold"] == {"label": "negative"}
    assert again.status_code == 400
    assert "item" in again.json()["fields"]
    assert bad_label.status_code == 400


@pytest.mark.parametrize(
    ("who", "expected"), [("reviewer", 403), ("annotator", 403), ("outsider", 404)]
)
def test_api_actions_are_for_owners_only(api_client, project, people, who, expected):
    action = QualityAction.objects.create(project=project, worker=people["annotator"], kind="flag")
    api_client.force_authenticate(people[who])
    url = reverse("api:project-quality-actions", args=[project.pk])
    undo = reverse("api:project-quality-action-undo", args=[project.pk, action.pk])
    promote = reverse("api:project-quality-gold-promote", args=[project.pk])

    assert api_client.get(url).status_code == expected
    payload = {"worker": people["annotator"].pk, "kind": "flag", "reason": "x"}
    assert api_client.post(url, payload).status_code == expected
    assert api_client.post(undo).status_code == expected
    assert api_client.post(promote, {"item": 1, "label": "positive"}).status_code == expected
    assert QualityAction.objects.count() == 1
    action.refresh_from_db()
    assert action.undone_at is None

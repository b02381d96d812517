"""Quality-linked approval: rules, reasons, idempotence, people's decisions, settings."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crowd.models import PayDecision
from crowd.pay import annotation_decide, ledger_get, pay_settings_update
from quality.models import ItemScore, QualityConfig, WorkerScore
from quality.services import (
    approval_decisions_apply,
    quality_config_get,
    quality_config_update,
    quality_recompute,
)
from quality.tasks import quality_recompute_task
from tests.annotation.factories import ItemFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import vote

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_tasks():
    cache.clear()
    with mock.patch.object(quality_recompute_task, "apply_async"):
        yield
    cache.clear()


def set_config(project, **fields) -> QualityConfig:
    config = quality_config_get(project=project)
    for name, value in fields.items():
        setattr(config, name, value)
    config.save()
    return config


def score_item(item, label: str, confidence: float) -> None:
    ItemScore.objects.update_or_create(
        item=item,
        defaults={
            "project": item.project,
            "label": label,
            "confidence": confidence,
            "computed_at": timezone.now(),
        },
    )


def score_worker(project, worker, *, seen: int, low: float, high: float) -> None:
    WorkerScore.objects.update_or_create(
        project=project,
        worker=worker,
        defaults={
            "gold_seen": seen,
            "gold_correct": seen,
            "gold_low": low,
            "gold_high": high,
            "computed_at": timezone.now(),
        },
    )


def current(annotation) -> PayDecision | None:
    return PayDecision.objects.filter(annotation=annotation, superseded_at__isnull=True).first()


@pytest.fixture
def paid(project):
    pay_settings_update(project=project, currency="EUR", reward_cents=12, gold_reward_cents=3)
    return project


@pytest.fixture
def alice(project):
    return make_annotator(project, "alice")


@pytest.fixture
def bob(project):
    return make_annotator(project, "bob")


def test_nothing_happens_while_no_rule_is_set(project, item, alice):
    score_item(item, "positive", 0.99)
    vote(item, alice, "positive")
    result = approval_decisions_apply(project=project, config=quality_config_get(project=project))
    assert result.changed == 0
    assert not PayDecision.objects.exists()


def test_consensus_rule_approves_agreeing_and_rejects_contradicting_answers(paid, alice, bob):
    confident, unsure = ItemFactory(project=paid), ItemFactory(project=paid)
    score_item(confident, "positive", 0.92)
    score_item(unsure, "positive", 0.6)
    agree, disagree = vote(confident, alice, "positive"), vote(confident, bob, "negative")
    pending = vote(unsure, alice, "positive")
    config = set_config(paid, approval_consensus=0.9, approval_reject=True)

    result = approval_decisions_apply(project=paid, config=config)

    assert (result.approved, result.rejected, result.overturned) == (1, 1, 0)
    approved = current(agree)
    assert (approved.status, approved.source, approved.amount_cents) == ("approved", "quality", 12)
    rejected = current(disagree)
    assert rejected.status == "rejected"
    assert rejected.reason == "Did not match the confident consensus (92%)"
    assert rejected.amount_cents == 0
    assert current(pending) is None  # consensus not confident enough: stays pending


def test_without_reject_contradicting_answers_stay_pending(project, item, alice, bob):
    score_item(item, "positive", 0.95)
    agree, disagree = vote(item, alice, "positive"), vote(item, bob, "negative")
    config = set_config(project, approval_consensus=0.9)
    approval_decisions_apply(project=project, config=config)
    assert current(agree).status == "approved"
    assert current(disagree) is None


def test_gold_item_answers_are_judged_by_the_known_answer(paid, gold_item, alice, bob):
    right, wrong = vote(gold_item, alice, "positive"), vote(gold_item, bob, "negative")
    config = set_config(paid, approval_consensus=0.9, approval_reject=True)
    approval_decisions_apply(project=paid, config=config)
    assert (current(right).status, current(right).amount_cents) == ("approved", 3)
    assert current(wrong).reason == "Did not match the known answer of this check question"


def test_gold_rule_uses_the_lower_bound_and_the_minimum_count(project, alice, bob):
    item = ItemFactory(project=project)
    carol = make_annotator(project, "carol")
    dave = make_annotator(project, "dave")
    score_worker(project, alice, seen=20, low=0.85, high=0.97)  # proven: approved
    score_worker(project, bob, seen=20, low=0.40, high=0.70)  # surely below: rejected
    score_worker(project, carol, seen=20, low=0.70, high=0.95)  # unsure: pending
    score_worker(project, dave, seen=5, low=0.90, high=1.0)  # too few gold answers: pending
    answers = {user: vote(item, user, "positive") for user in (alice, bob, carol, dave)}
    config = set_config(project, approval_gold_bar=0.8, approval_gold_min=10, approval_reject=True)

    approval_decisions_apply(project=project, config=config)

    assert current(answers[alice]).status == "approved"
    assert current(answers[bob]).status == "rejected"
    assert current(answers[bob]).reason == (
        "Accuracy on check questions too low (at most 70% with 95% confidence; 80% needed)"
    )
    assert current(answers[carol]) is None
    assert current(answers[dave]) is None


def test_either_rule_approves(project, item, alice):
    score_item(item, "positive", 0.95)
    score_worker(project, alice, seen=20, low=0.3, high=0.5)
    answer = vote(item, alice, "positive")
    config = set_config(
        project, approval_gold_bar=0.8, approval_consensus=0.9, approval_reject=True
    )
    approval_decisions_apply(project=project, config=config)
    assert current(answer).status == "approved"


def test_reruns_write_nothing_and_use_few_queries(project, alice, bob):
    items = ItemFactory.create_batch(30, project=project)
    for item in items:
        score_item(item, "positive", 0.95)
        vote(item, alice, "positive")
        vote(item, bob, "negative")
    config = set_config(project, approval_consensus=0.9, approval_reject=True)
    with CaptureQueriesContext(connection) as first:
        result = approval_decisions_apply(project=project, config=config)
    assert (result.approved, result.rejected) == (30, 30)
    # Read, pay settings, lock, re-read, one bulk insert: not one query per answer.
    assert len(first.captured_queries) <= 6
    with CaptureQueriesContext(connection) as again:
        assert approval_decisions_apply(project=project, config=config).changed == 0
    assert len(again.captured_queries) == 1
    assert PayDecision.objects.count() == 60


def test_the_engine_turns_its_own_decision_around_when_the_consensus_moves(project, item, alice):
    score_item(item, "negative", 0.95)
    answer = vote(item, alice, "positive")
    config = set_config(project, approval_consensus=0.9, approval_reject=True)
    approval_decisions_apply(project=project, config=config)
    assert current(answer).status == "rejected"

    score_item(item, "positive", 0.97)
    result = approval_decisions_apply(project=project, config=config)

    assert result.overturned == 1
    assert current(answer).status == "approved"
    assert PayDecision.objects.filter(annotation=answer).count() == 2  # history kept


def test_a_persons_decision_is_never_overturned(project, item, owner, alice, bob):
    score_item(item, "positive", 0.95)
    kept_rejected, kept_approved = vote(item, alice, "positive"), vote(item, bob, "negative")
    annotation_decide(
        annotation=kept_rejected, status="rejected", reason="Sloppy", decided_by=owner
    )
    annotation_decide(annotation=kept_approved, status="approved", decided_by=owner)
    config = set_config(project, approval_consensus=0.9, approval_reject=True)

    assert approval_decisions_apply(project=project, config=config).changed == 0

    assert (current(kept_rejected).status, current(kept_rejected).source) == ("rejected", "owner")
    assert (current(kept_approved).status, current(kept_approved).source) == ("approved", "owner")


def test_an_owner_overturns_an_automatic_decision_and_the_ledger_follows(paid, owner, alice):
    item = ItemFactory(project=paid)
    score_item(item, "negative", 0.95)
    answer = vote(item, alice, "positive")
    config = set_config(paid, approval_consensus=0.9, approval_reject=True)
    approval_decisions_apply(project=paid, config=config)
    assert ledger_get(project=paid, worker=alice).rows[0].earned_cents == 0

    annotation_decide(annotation=answer, status="approved", decided_by=owner)
    approval_decisions_apply(project=paid, config=config)

    assert (current(answer).status, current(answer).source) == ("approved", "owner")
    assert ledger_get(project=paid, worker=alice).rows[0].earned_cents == 12


def test_recompute_applies_the_rules(project, alice, bob):
    carol = make_annotator(project, "carol")
    items = ItemFactory.create_batch(4, project=project)
    answers = []
    for item in items:
        answers += [vote(item, alice, "positive"), vote(item, bob, "positive")]
        answers.append(vote(item, carol, "negative"))
    set_config(project, method="mv", approval_consensus=0.5, approval_reject=True)

    quality_recompute(project=project)
    decided = {
        decision.annotation_id: decision.status
        for decision in PayDecision.objects.filter(superseded_at__isnull=True)
    }
    assert decided == {
        answer.pk: ("rejected" if answer.author_id == carol.pk else "approved")
        for answer in answers
    }
    quality_recompute(project=project)
    assert PayDecision.objects.count() == len(answers)


# --- settings ----------------------------------------------------------------------------------


def test_service_validates_the_settings_with_field_errors(project):
    with pytest.raises(ValidationError) as error:
        quality_config_update(
            project=project, approval_gold_bar=1.5, approval_consensus=0, approval_gold_min=0
        )
    assert set(error.value.message_dict) == {
        "approval_gold_bar",
        "approval_consensus",
        "approval_gold_min",
    }
    with pytest.raises(ValidationError) as error:
        quality_config_update(project=project, approval_reject=True)
    assert "approval_reject" in error.value.message_dict
    config = quality_config_update(project=project, approval_consensus=0.9, approval_reject=True)
    assert (config.approval_consensus, config.approval_reject) == (0.9, True)


def test_settings_page_saves_and_shows_errors(client, project, owner):
    client.force_login(owner)
    url = reverse("quality:settings", args=[project.pk])
    page = client.get(url)
    assert "Automatic approval" in page.content.decode()
    base = {
        "method": "mv",
        "confidence_threshold": "0.7",
        "max_overlap": "5",
        "gold_rate_onboarding": "0.5",
        "gold_rate_floor": "0.05",
        "gold_onboarding_count": "8",
        "gold_accuracy_bar": "0.8",
        "gold_retire_after": "50",
        "reliable_bar": "0.85",
    }
    bad = client.post(url, {**base, "approval_gold_bar": "2", "approval_gold_min": "0"})
    assert bad.status_code == 422
    form = bad.context["form"]
    assert form.errors["approval_gold_bar"]
    assert form.errors["approval_gold_min"]
    ok = client.post(
        url, {**base, "approval_gold_bar": "0.8", "approval_gold_min": "", "approval_reject": "on"}
    )
    assert ok.status_code == 302
    config = QualityConfig.objects.get(project=project)
    assert (config.approval_gold_bar, config.approval_gold_min, config.approval_reject) == (
        0.8,
        10,
        True,
    )


def test_api_reads_and_validates_the_settings(project, owner):
    client = APIClient()
    client.force_authenticate(owner)
    url = reverse("api:project-quality-config", args=[project.pk])
    bad = client.put(url, {"approval_consensus": 1.2}, format="json")
    assert bad.status_code == 400
    assert bad.json()["fields"]["approval_consensus"] == [
        "Above 0 and at most 1, or empty to turn the rule off."
    ]
    good = client.put(url, {"approval_consensus": 0.9, "approval_reject": True}, format="json")
    assert good.status_code == 200
    body = client.get(url).json()
    assert (body["approval_consensus"], body["approval_reject"], body["approval_gold_bar"]) == (
        0.9,
        True,
        None,
    )
    off = client.put(url, {"approval_consensus": None, "approval_reject": False}, format="json")
    assert off.status_code == 200
    assert off.json()["approval_consensus"] is None

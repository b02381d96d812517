"""The quality engine's recompute end to end: consensus, states, adaptive overlap, reviews,
standings and skills, gold retirement, light vs full runs, and the periodic full recompute."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone

from annotation.models import Item
from crowd.models import WorkerSkill, WorkerStanding
from quality.models import ItemScore, ProjectScore, QualityConfig, ReviewDecision, WorkerScore
from quality.services import (
    quality_config_get,
    quality_recompute,
    quality_recompute_scheduled,
)
from quality.tasks import quality_recompute_all_task, quality_recompute_task
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.quality.factories import vote

pytestmark = pytest.mark.django_db

State = ItemScore.State


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def configure(project, **fields) -> QualityConfig:
    config = quality_config_get(project=project)
    for name, value in fields.items():
        setattr(config, name, value)
    config.save()
    return config


@pytest.fixture
def crowd(project):
    """Three careful workers (a, b, c) on 12 regular items and 6 gold items (answer positive).

    Items 0-5: all say positive. Items 6-8: a, b positive, c negative (2:1).
    Items 9-11: all negative.
    """
    a, b, c = (UserFactory(username=name) for name in ("ann", "bob", "cy"))
    regular = [ItemFactory(project=project) for _ in range(12)]
    gold = [ItemFactory(project=project, gold={"label": "positive"}) for _ in range(6)]
    for n, item in enumerate(regular):
        answers = ["positive"] * 3 if n < 6 else ["positive", "positive", "negative"]
        if n >= 9:
            answers = ["negative"] * 3
        for worker, label in zip((a, b, c), answers, strict=True):
            vote(item, worker, label)
    for item in gold:
        for worker in (a, b, c):
            vote(item, worker, "positive")
    return {"workers": (a, b, c), "regular": regular, "gold": gold}


def test_recompute_writes_posteriors_labels_confidence_and_method(project, crowd):
    quality_recompute(project=project)

    scores = {s.item_id: s for s in ItemScore.objects.filter(project=project)}
    assert len(scores) == 18
    details = ProjectScore.objects.get(project=project).details
    for n, item in enumerate(crowd["regular"]):
        score = scores[item.pk]
        assert set(score.posterior) == {"positive", "negative"}
        assert sum(score.posterior.values()) == pytest.approx(1.0, abs=1e-3)
        assert score.label == max(score.posterior, key=score.posterior.get)
        assert score.confidence == pytest.approx(score.posterior[score.label])
        assert score.label == ("negative" if n >= 9 else "positive")
        assert score.method == details["method"]
    for item in crowd["gold"]:  # gold answers are fixed truths
        assert (scores[item.pk].label, scores[item.pk].confidence) == ("positive", 1.0)
        assert scores[item.pk].state == State.CONFIDENT
    assert details["method_requested"] == "auto"


def test_adaptive_overlap_raises_targets_then_sends_items_to_review(project, crowd):
    configure(project, method="mv", confidence_threshold=0.7, max_overlap=4)
    split = crowd["regular"][6:9]

    quality_recompute(project=project)

    for item in split:  # 2:1 is 0.67 < 0.7 at its target of 3: one more annotator, first
        item.refresh_from_db()
        assert (item.target, item.priority) == (4, 1)
        assert ItemScore.objects.get(item=item).state == State.DOUBTFUL
    unanimous = crowd["regular"][0]
    unanimous.refresh_from_db()
    assert (unanimous.target, unanimous.priority) == (3, 0)
    assert ItemScore.objects.get(item=unanimous).state == State.CONFIDENT

    # A fourth annotator agrees on the first item (3:1 = 0.75) and disagrees on the second
    # (2:2); the second reached the maximum overlap in doubt, so it goes to review.
    dee = UserFactory(username="dee")
    vote(split[0], dee, "positive")
    vote(split[1], dee, "negative")
    quality_recompute(project=project)

    states = {s.item_id: s.state for s in ItemScore.objects.filter(item__in=split)}
    assert states == {
        split[0].pk: State.CONFIDENT,
        split[1].pk: State.REVIEW,
        split[2].pk: State.DOUBTFUL,
    }
    targets = dict(Item.objects.filter(pk__in=[i.pk for i in split]).values_list("pk", "target"))
    assert targets == {split[0].pk: 4, split[1].pk: 4, split[2].pk: 4}  # never above max
    priorities = set(Item.objects.filter(priority__gt=0).values_list("pk", flat=True))
    assert priorities == {split[2].pk}  # only the one still waiting for an annotator


def test_review_decision_overrides_consensus(project, crowd, owner):
    configure(project, method="mv")
    item = crowd["regular"][6]  # consensus positive 2:1
    ReviewDecision.objects.create(
        project=project,
        item=item,
        reviewer=owner,
        value={"label": "positive"},
        action=ReviewDecision.Action.ACCEPTED,
    )
    ReviewDecision.objects.create(  # the latest decision wins
        project=project,
        item=item,
        reviewer=owner,
        value={"label": "negative"},
        action=ReviewDecision.Action.CORRECTED,
    )

    quality_recompute(project=project)

    score = ItemScore.objects.get(item=item)
    assert (score.label, score.confidence, score.state) == ("negative", 1.0, State.REVIEWED)
    assert score.posterior == {"positive": 0.0, "negative": 1.0}
    assert score.majority_label == "positive"  # the plain vote stays
    item.refresh_from_db()
    assert item.target == 3  # a decided item never asks for more annotators


def test_recompute_twice_gives_the_same_rows(project, crowd):
    configure(project, confidence_threshold=0.99, max_overlap=5)

    def snapshot():
        items = list(ItemScore.objects.order_by("item_id").values())
        workers = list(WorkerScore.objects.order_by("worker_id").values())
        routing = list(Item.objects.order_by("pk").values_list("pk", "target", "priority"))
        standings = list(
            WorkerStanding.objects.order_by("worker_id").values_list(
                "worker_id", "gold_rate", "reliable", "updated_at"
            )
        )
        return items, workers, routing, standings

    quality_recompute(project=project)
    first = snapshot()
    quality_recompute(project=project)

    assert snapshot() == first


def test_standings_and_skills_follow_gold_answers(project, crowd):
    a, b, c = crowd["workers"]
    sloppy = UserFactory(username="sloppy")
    for item in crowd["gold"]:
        vote(item, sloppy, "negative")
    vote(crowd["regular"][0], sloppy, "negative")
    configure(project, skill_name="sentiment", reliable_bar=0.8)

    quality_recompute(project=project)

    skills = dict(
        WorkerSkill.objects.filter(name="sentiment").values_list("worker__username", "score")
    )
    assert skills["ann"] == pytest.approx(100 * 7 / 8)  # Beta(1, 1) posterior mean of 6/6
    assert skills["sloppy"] == pytest.approx(100 * 1 / 8)
    evidence = WorkerSkill.objects.get(name="sentiment", worker=a).evidence
    assert evidence == 6
    standings = {s.worker_id: s for s in WorkerStanding.objects.filter(project=project)}
    assert set(standings) == {a.pk, b.pk, c.pk, sloppy.pk}
    # Six gold answers are fewer than the onboarding count (8): everyone at the onboarding rate.
    assert {round(s.gold_rate, 6) for s in standings.values()} == {0.5}
    assert standings[a.pk].reliable
    assert standings[b.pk].reliable
    assert not standings[sloppy.pk].reliable  # reliability far below the bar, 7 labels
    score = WorkerScore.objects.get(project=project, worker=sloppy)
    assert (score.gold_seen, score.gold_correct, score.gold_low) == (6, 0, 0.0)
    assert score.gold_high == pytest.approx(0.390, abs=1e-3)  # Wilson 95% of 0/6
    assert score.class_recall == {"positive": 0.0}
    assert WorkerScore.objects.get(project=project, worker=a).class_recall == {"positive": 1.0}


def test_gold_seen_by_enough_workers_is_retired(project, crowd):
    configure(project, gold_retire_after=4)
    first, *others = crowd["gold"]
    vote(first, UserFactory(username="dee"), "positive")

    quality_recompute(project=project)

    retired = set(Item.objects.filter(gold_retired=True).values_list("pk", flat=True))
    assert retired == {first.pk}
    pool = ProjectScore.objects.get(project=project).details["gold_pool"]
    assert (pool["active_gold"], pool["retired_gold"]) == (5, 1)


def test_full_run_writes_details_and_light_run_keeps_them(project, crowd):
    a, b, c = crowd["workers"]
    full = quality_recompute(project=project, full=True)
    details = full.details
    assert {
        "full_at",
        "method",
        "method_requested",
        "method_reason",
        "agreement",
        "over_time",
        "gold_trend",
        "confusion",
        "label_distribution",
        "gold_pool",
    } <= set(details)
    assert details["confusion"] == {"labels": ["positive", "negative"], "matrix": [[18, 0], [0, 0]]}
    distribution = {row["label"]: row["count"] for row in details["label_distribution"]}
    assert distribution == {"positive": 9, "negative": 3}
    assert {row["label"] for row in details["agreement"]["per_label"]} == {"positive", "negative"}
    assert details["agreement"]["fleiss"]["value"] == pytest.approx(full.fleiss_kappa)

    vote(crowd["regular"][0], UserFactory(username="dee"), "negative")
    light = quality_recompute(project=project, full=False)

    assert light.annotations_scored == full.annotations_scored + 1
    assert light.details["full_at"] == details["full_at"]
    assert light.details["agreement"] == details["agreement"]


def test_post_submit_run_is_full_on_small_projects_and_light_on_large_ones(project, crowd):
    quality_recompute(project=project, full=True)
    stamp = ProjectScore.objects.get(project=project).details["full_at"]

    with mock.patch("quality.services.recompute.quality_recompute", wraps=quality_recompute) as run:
        quality_recompute_scheduled(project_id=project.pk)
        assert run.call_args.kwargs["full"] is True  # small project: statistics every run
        with mock.patch("quality.services.recompute.FULL_EVERY_RUN_BELOW", 10):
            quality_recompute_scheduled(project_id=project.pk)
            assert run.call_args.kwargs["full"] is False  # large: light while details are fresh
            score = ProjectScore.objects.get(project=project)
            score.details["full_at"] = (timezone.now() - timedelta(minutes=11)).isoformat()
            score.save(update_fields=["details"])
            quality_recompute_scheduled(project_id=project.pk)
            assert run.call_args.kwargs["full"] is True
    assert ProjectScore.objects.get(project=project).details["full_at"] > stamp


def test_beat_enqueues_a_full_recompute_only_for_stale_projects(
    project, crowd, owner, django_capture_on_commit_callbacks
):
    quality_recompute(project=project, full=True)  # up to date
    newer = ProjectFactory(created_by=owner)
    vote(ItemFactory(project=newer), UserFactory(), "positive")
    quality_recompute(project=newer, full=True)
    vote(ItemFactory(project=newer), UserFactory(), "negative")  # after its full run
    never = ProjectFactory(created_by=owner)
    vote(ItemFactory(project=never), UserFactory(), "positive")
    quality_recompute(project=never, full=False)  # light runs do not count
    ProjectFactory(created_by=owner)  # nothing to score

    with (
        mock.patch.object(quality_recompute_task, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert quality_recompute_all_task() == 2

    calls = sorted((c.kwargs["args"], c.kwargs["kwargs"]) for c in apply_async.call_args_list)
    assert calls == [((newer.pk,), {"full": True}), ((never.pk,), {"full": True})]


def test_beat_schedule_and_task_queue():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["quality-recompute-all"]
    assert entry["task"] == "quality.tasks.quality_recompute_all_task"
    assert entry["schedule"] == 15 * 60
    assert quality_recompute_all_task.queue == "quality"
    assert quality_recompute_task.queue == "quality"


def test_items_are_rekeyed_before_the_model_sees_them(project, crowd):
    """Items are re-keyed by a seeded permutation before fitting (ids can leak the class)."""
    from quality.services import engine

    seen = {}
    real = engine._infer

    def spy(method, items, *args, **kwargs):
        seen["items"] = np.asarray(items)
        return real(method, items, *args, **kwargs)

    with mock.patch.object(engine, "_infer", side_effect=spy):
        quality_recompute(project=project)

    first_per_item = seen["items"][::3]  # three votes per item, in annotation order
    assert not np.array_equal(first_per_item, np.sort(first_per_item))


def test_recent_gold_accuracy_shows_a_worker_getting_worse(project, crowd):
    """30 early gold answers right, the latest 20 wrong: overall 60%, recent 0%."""
    drifting = UserFactory(username="drifting")
    start = timezone.now() - timedelta(days=2)
    gold = [ItemFactory(project=project, gold={"label": "positive"}) for _ in range(50)]
    for n, item in enumerate(gold):
        annotation = vote(item, drifting, "positive" if n < 30 else "negative")
        type(annotation).objects.filter(pk=annotation.pk).update(
            created_at=start + timedelta(minutes=n)
        )

    quality_recompute(project=project)

    score = WorkerScore.objects.get(project=project, worker=drifting)
    assert (score.gold_seen, score.gold_correct) == (50, 30)
    assert score.gold_recent == 0.0
    careful = WorkerScore.objects.get(project=project, worker=crowd["workers"][0])
    assert careful.gold_recent == 1.0

from __future__ import annotations

import threading
import time
from unittest import mock

import numpy as np
import pytest
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from kombu.exceptions import OperationalError as BrokerError

from annotation.models import Annotation
from crowd.services import assignment_claim_next, assignment_submit
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal
from quality.models import ItemScore, ProjectScore, WorkerScore
from quality.services import (
    RECOMPUTE_DELAY_SECONDS,
    RECOMPUTE_LOCK_NAMESPACE,
    quality_recompute,
    quality_recompute_schedule,
    quality_recompute_scheduled,
)
from quality.tasks import quality_recompute_task
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import vote

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def labeled(project):
    """Three workers on four regular items and one gold item (gold answer: positive).

    a: pos pos neg -> positive 2/3      b: neg neg neg -> negative 3/3
    c: pos neg     -> tie, positive 1/2 (label-set order)      d: neg -> negative 1/1
    gold: w1 pos (right), w2 neg (wrong)
    """
    w1, w2, w3 = (UserFactory(username=name) for name in ("ann", "bob", "cy"))
    a, b, c, d = (ItemFactory(project=project) for _ in range(4))
    gold = ItemFactory(project=project, gold={"label": "positive"})
    vote(a, w1, "positive", 1000), vote(a, w2, "positive", 500), vote(a, w3, "negative", 100)
    vote(b, w1, "negative", 2000), vote(b, w2, "negative", 1500), vote(b, w3, "negative", 200)
    vote(c, w1, "positive", 3000), vote(c, w2, "negative", 2500)
    vote(d, w3, "negative", 900)
    vote(gold, w1, "positive", 4000), vote(gold, w2, "negative", 10)
    return {"workers": (w1, w2, w3), "items": (a, b, c, d, gold)}


def test_recompute_writes_majority_labels_and_agreement_shares(project, labeled):
    a, b, c, d, gold = labeled["items"]

    quality_recompute(project=project)

    scores = {s.item_id: s for s in ItemScore.objects.filter(project=project)}
    assert set(scores) == {a.pk, b.pk, c.pk, d.pk, gold.pk}
    got = {pk: (s.majority_label, s.agreement, s.annotation_count) for pk, s in scores.items()}
    assert got[a.pk] == ("positive", pytest.approx(2 / 3), 3)
    assert got[b.pk] == ("negative", 1.0, 3)
    assert got[c.pk] == ("positive", 0.5, 2)  # tie: first label of the label set wins
    assert got[d.pk] == ("negative", 1.0, 1)
    assert got[gold.pk] == ("positive", 0.5, 2)


def test_recompute_scores_workers_on_gold_majority_and_speed(project, labeled):
    w1, w2, w3 = labeled["workers"]

    quality_recompute(project=project)

    rows = {s.worker_id: s for s in WorkerScore.objects.filter(project=project)}
    assert set(rows) == {w1.pk, w2.pk, w3.pk}
    # (annotations, gold seen, gold correct, agreement with majority, median ms).
    # Majority agreement counts regular items with >= 2 votes only (a, b, c; not d, not gold).
    assert (rows[w1.pk].annotation_count, rows[w1.pk].gold_seen, rows[w1.pk].gold_correct) == (
        4,
        1,
        1,
    )
    assert rows[w1.pk].majority_agreement == pytest.approx(3 / 3)
    assert rows[w1.pk].median_duration_ms == 2500  # 1000 2000 3000 4000
    assert (rows[w2.pk].annotation_count, rows[w2.pk].gold_seen, rows[w2.pk].gold_correct) == (
        4,
        1,
        0,
    )
    assert rows[w2.pk].majority_agreement == pytest.approx(2 / 3)  # wrong on the c tie
    assert rows[w2.pk].median_duration_ms == 1000  # 10 500 1500 2500
    assert (rows[w3.pk].annotation_count, rows[w3.pk].gold_seen, rows[w3.pk].gold_correct) == (
        3,
        0,
        0,
    )
    assert rows[w3.pk].majority_agreement == pytest.approx(1 / 2)
    assert rows[w3.pk].gold_accuracy is None
    assert rows[w3.pk].median_duration_ms == 200  # 100 200 900


def test_recompute_writes_project_coefficients_over_regular_items(project, labeled):
    score = quality_recompute(project=project)

    # Regular items a, b, c (d has one vote): observed agreement (1/3 + 1 + 0) / 3 = 4/9,
    # chance agreement (3/8)^2 + (5/8)^2 = 17/32, so kappa = (4/9 - 17/32) / (15/32) = -5/27.
    assert score.fleiss_kappa == pytest.approx(-5 / 27)
    regular = np.array([[2, 1], [0, 3], [1, 1], [0, 1]])
    assert score.fleiss_kappa == pytest.approx(fleiss_kappa(regular), abs=1e-12)
    assert score.krippendorff_alpha == pytest.approx(krippendorff_alpha_nominal(regular), abs=1e-12)
    assert (score.items_scored, score.annotations_scored) == (5, 11)
    assert ProjectScore.objects.get(project=project).computed_at == score.computed_at


def item_rows():
    return list(
        ItemScore.objects.order_by("id").values_list(
            "id", "item_id", "majority_label", "agreement", "annotation_count", "computed_at"
        )
    )


def worker_rows():
    return list(
        WorkerScore.objects.order_by("id").values_list(
            "id", "worker_id", "annotation_count", "gold_correct", "majority_agreement"
        )
    )


def test_recompute_is_idempotent(project, labeled):
    first = quality_recompute(project=project)
    items_before, workers_before = item_rows(), worker_rows()

    second = quality_recompute(project=project)

    assert item_rows() == items_before  # unchanged items are not even rewritten
    assert worker_rows() == workers_before
    assert ProjectScore.objects.filter(project=project).count() == 1
    assert (second.pk, second.fleiss_kappa) == (first.pk, first.fleiss_kappa)
    assert second.computed_at >= first.computed_at


def test_recompute_updates_changed_items_and_drops_scores_without_annotations(project, labeled):
    w1, w2, w3 = labeled["workers"]
    a, b, c, d, gold = labeled["items"]
    quality_recompute(project=project)

    vote(c, w3, "negative")  # c: pos neg neg -> negative 2/3
    Annotation.objects.filter(item=d).delete()
    quality_recompute(project=project)

    scores = {s.item_id: s for s in ItemScore.objects.filter(project=project)}
    assert d.pk not in scores
    assert (scores[c.pk].majority_label, scores[c.pk].annotation_count) == ("negative", 3)
    assert scores[c.pk].agreement == pytest.approx(2 / 3)


def test_recompute_counts_only_an_authors_latest_label_on_an_item(project, labeled):
    w1, w2, w3 = labeled["workers"]
    a = labeled["items"][0]

    vote(a, w3, "positive")  # w3 corrects a: neg -> pos
    quality_recompute(project=project)

    score = ItemScore.objects.get(item=a)
    assert (score.majority_label, score.agreement, score.annotation_count) == ("positive", 1.0, 3)
    assert WorkerScore.objects.get(worker=w3).annotation_count == 3


def test_recompute_of_a_project_without_annotations_writes_empty_scores(project, item):
    score = quality_recompute(project=project)

    assert (score.fleiss_kappa, score.krippendorff_alpha) == (None, None)
    assert (score.items_scored, score.annotations_scored) == (0, 0)
    assert not ItemScore.objects.exists()
    assert not WorkerScore.objects.exists()


def test_recompute_leaves_other_projects_alone(project, labeled, owner):
    other = ProjectFactory(created_by=owner)
    vote(ItemFactory(project=other), UserFactory(), "negative")
    quality_recompute(project=other)

    quality_recompute(project=project)

    assert ItemScore.objects.filter(project=other).count() == 1
    assert WorkerScore.objects.filter(project=other).count() == 1


def test_failed_recompute_keeps_the_previous_results(project, labeled):
    quality_recompute(project=project)
    before = list(ItemScore.objects.order_by("id").values_list("item_id", "majority_label"))
    vote(labeled["items"][2], labeled["workers"][2], "negative")

    with (
        mock.patch.object(WorkerScore.objects, "bulk_create", side_effect=OperationalError),
        pytest.raises(OperationalError),
    ):
        quality_recompute(project=project)

    after = list(ItemScore.objects.order_by("id").values_list("item_id", "majority_label"))
    assert after == before


def test_schedule_sends_nothing_before_the_commit(project):
    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        with transaction.atomic():
            quality_recompute_schedule(project_id=project.pk)

        assert apply_async.call_count == 0  # the test's outer transaction never commits
    assert cache.get(f"quality:recompute-pending:{project.pk}") is None


def test_schedule_runs_after_commit_and_debounces(project, django_capture_on_commit_callbacks):
    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            for _ in range(5):
                quality_recompute_schedule(project_id=project.pk)

        assert len(callbacks) == 5
        apply_async.assert_called_once_with(args=(project.pk,), countdown=RECOMPUTE_DELAY_SECONDS)


def test_schedule_again_once_the_task_has_started(project, django_capture_on_commit_callbacks):
    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)
        quality_recompute_scheduled(project_id=project.pk)  # what the task runs
        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)
            quality_recompute_schedule(project_id=project.pk)

    assert apply_async.call_count == 2


def test_schedule_debounces_each_project_separately(
    project, owner, django_capture_on_commit_callbacks
):
    other = ProjectFactory(created_by=owner)

    with (
        mock.patch.object(quality_recompute_task, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        for _ in range(3):
            quality_recompute_schedule(project_id=project.pk)
            quality_recompute_schedule(project_id=other.pk)

    assert sorted(call.kwargs["args"] for call in apply_async.call_args_list) == sorted(
        [(project.pk,), (other.pk,)]
    )


def test_rolled_back_schedule_neither_enqueues_nor_blocks_later_ones(
    project, django_capture_on_commit_callbacks
):
    def schedule_then_fail():
        with transaction.atomic():
            quality_recompute_schedule(project_id=project.pk)
            raise RuntimeError("roll back")

    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
            schedule_then_fail()
        assert apply_async.call_count == 0

        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)

    assert apply_async.call_count == 1


def test_schedule_that_cannot_reach_the_broker_logs_and_can_retry(
    project, django_capture_on_commit_callbacks, caplog
):
    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        apply_async.side_effect = BrokerError("broker down")
        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)
        assert "Could not schedule a quality recompute" in caplog.text
        apply_async.side_effect = None

        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)

    assert apply_async.call_count == 2


def test_submissions_through_the_crowd_enqueue_one_recompute(
    project, django_capture_on_commit_callbacks
):
    ItemFactory.create_batch(2, project=project)
    workers = [make_annotator(project) for _ in range(3)]

    with (
        mock.patch.object(quality_recompute_task, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        for worker in workers:
            held = assignment_claim_next(worker=worker, project=project)
            assignment_submit(
                assignment=held, worker=worker, value={"label": "positive"}, duration_ms=700
            )

    apply_async.assert_called_once_with(args=(project.pk,), countdown=RECOMPUTE_DELAY_SECONDS)


def test_task_recomputes_and_reopens_the_debounce_window(
    project, labeled, django_capture_on_commit_callbacks
):
    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)
        (call,) = apply_async.call_args_list

        quality_recompute_task(*call.kwargs["args"])

        with django_capture_on_commit_callbacks(execute=True):
            quality_recompute_schedule(project_id=project.pk)
    assert ProjectScore.objects.get(project=project).annotations_scored == 11
    assert apply_async.call_count == 2


def test_task_for_a_deleted_project_does_nothing(project):
    project_id = project.pk
    project.delete()

    quality_recompute_task(project_id)

    assert not ProjectScore.objects.exists()


def test_task_retries_only_database_errors_a_bounded_number_of_times():
    assert quality_recompute_task.queue == "quality"
    assert quality_recompute_task.autoretry_for == (OperationalError,)
    assert quality_recompute_task.retry_backoff is True
    assert 0 < quality_recompute_task.max_retries <= 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_recompute_waits_while_another_recompute_holds_the_project_lock(project, labeled):
    held, release = threading.Event(), threading.Event()
    finished = threading.Event()

    def hold_lock():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [RECOMPUTE_LOCK_NAMESPACE, project.pk]
                )
                held.set()
                release.wait(10)
        finally:
            connection.close()

    def recompute():
        try:
            quality_recompute(project=project)
            finished.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert held.wait(10)
    runner = threading.Thread(target=recompute)
    runner.start()

    time.sleep(0.5)
    blocked = not finished.is_set()
    release.set()
    runner.join(15)
    holder.join(15)

    assert blocked
    assert finished.is_set()
    assert ProjectScore.objects.get(project=project).annotations_scored == 11

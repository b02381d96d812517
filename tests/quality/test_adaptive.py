from __future__ import annotations

import json

import numpy as np
import pytest

from quality.adaptive import (
    GoldPolicy,
    fixed_overlap_mask,
    gold_pool_status,
    gold_rates,
    label_positions,
    overlap_accuracy,
    overlap_decisions,
    reliable_workers,
    replay_adaptive_overlap,
    wilson_interval,
)
from quality.inference import dawid_skene
from tests.quality.test_inference import load, need_crowd_data

POLICY = GoldPolicy(onboarding_rate=0.5, floor=0.05, onboarding_count=8, accuracy_bar=0.8)


def test_wilson_interval_matches_the_closed_form():
    low, high = wilson_interval(np.array([8, 0]), np.array([10, 0]))

    # 8/10 at 95%: the textbook Wilson interval is (0.4902, 0.9433).
    assert low[0] == pytest.approx(0.4902, abs=1e-4)
    assert high[0] == pytest.approx(0.9433, abs=1e-4)
    assert (low[1], high[1]) == (0.0, 1.0)


def test_gold_rates_start_high_fall_with_evidence_and_rise_on_errors():
    seen = np.array([0, 5, 8, 20, 100, 400, 100, 100])
    correct = np.array([0, 5, 8, 20, 100, 400, 70, 85])

    rates = gold_rates(gold_seen=seen, gold_correct=correct, policy=POLICY)

    assert rates[:3] == pytest.approx([0.5, 0.5, 0.5])  # onboarding, even when all right
    assert rates[2] > rates[3] > rates[4] > rates[5] >= POLICY.floor  # more evidence, less gold
    assert rates[5] == pytest.approx(0.05 + 0.45 * 8 / 400)
    assert rates[6] == pytest.approx(0.5)  # 70% < bar: back to onboarding
    # 85% on 100: above the bar but its lower bound (0.767) is not: slower decay.
    assert rates[4] < rates[7] < rates[6]


def test_gold_rates_rise_again_when_a_reliable_worker_slips():
    before = gold_rates(gold_seen=np.array([50]), gold_correct=np.array([50]), policy=POLICY)

    after = gold_rates(gold_seen=np.array([50]), gold_correct=np.array([35]), policy=POLICY)

    assert before[0] < 0.2
    assert after[0] == pytest.approx(POLICY.onboarding_rate)


def test_gold_rates_reject_inconsistent_counts():
    with pytest.raises(ValueError, match="between 0 and gold_seen"):
        gold_rates(gold_seen=np.array([3]), gold_correct=np.array([4]), policy=POLICY)
    with pytest.raises(ValueError, match="floor"):
        GoldPolicy(floor=0.6, onboarding_rate=0.5)


def test_overlap_decisions_raise_target_then_send_to_review():
    confidence = np.array([0.95, 0.6, 0.6, 0.6, np.nan, 0.6])
    count = np.array([3, 3, 5, 2, 3, 4])
    target = np.array([3, 3, 5, 3, 3, 4])

    new_target, doubtful, review = overlap_decisions(
        confidence=confidence, annotation_count=count, target=target, threshold=0.8, max_overlap=5
    )

    assert new_target.tolist() == [3, 4, 5, 3, 3, 5]
    assert doubtful.tolist() == [False, True, False, False, False, True]
    # Item 2 is at the maximum and still doubtful; item 3 is still collecting; item 4 unscored.
    assert review.tolist() == [False, False, True, False, False, False]


def test_overlap_decisions_without_review():
    _, doubtful, review = overlap_decisions(
        confidence=np.array([0.5]),
        annotation_count=np.array([5]),
        target=np.array([5]),
        threshold=0.8,
        max_overlap=5,
        review_enabled=False,
    )

    assert not doubtful.any()
    assert not review.any()


def test_reliable_workers_need_both_reliability_and_evidence():
    reliable = reliable_workers(
        reliability=np.array([0.95, 0.95, 0.7, np.nan]),
        evidence=np.array([50, 3, 50, 50]),
        bar=0.9,
    )

    assert reliable.tolist() == [True, False, False, False]


def test_gold_pool_status_counts_short_workers_and_largest_shortfall():
    status = gold_pool_status(
        unseen_gold_per_worker=np.array([10, 2, 0, 5]),
        gold_rate=np.array([0.5, 0.5, 0.1, 0.5]),
        open_items_per_worker=np.array([4, 12, 9, 0]),
    )

    # Needs: 4, 12, 1 gold; the last worker has no work left and is not active.
    assert status == {"active_workers": 3, "workers_short": 2, "gold_needed": 10, "short": True}
    assert json.loads(json.dumps(status)) == status


def test_gold_pool_status_not_short():
    status = gold_pool_status(
        unseen_gold_per_worker=np.array([100]),
        gold_rate=np.array([0.05]),
        open_items_per_worker=np.array([50]),
    )

    assert status == {"active_workers": 1, "workers_short": 0, "gold_needed": 0, "short": False}


def test_label_positions_follow_the_given_order():
    items = np.array([2, 0, 2, 1, 0, 2])

    assert label_positions(items, n_items=3).tolist() == [0, 0, 1, 0, 1, 2]
    assert fixed_overlap_mask(items, n_items=3, overlap=2).tolist() == [1, 1, 1, 1, 1, 0]


def test_replay_adds_labels_only_to_doubtful_items():
    # Item 0: three workers agree. Item 1: they split, then two more break the tie.
    items = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 0])
    workers = np.array([0, 1, 2, 0, 1, 2, 3, 4, 3, 4])
    labels = np.array([1, 1, 1, 0, 1, 0, 1, 1, 1, 1])

    replay = replay_adaptive_overlap(
        items,
        workers,
        labels,
        n_items=2,
        n_workers=5,
        n_classes=2,
        start_overlap=2,
        threshold=0.7,
        max_overlap=5,
        method="mv",
    )

    # Item 0 stops at 2 (unanimous); item 1 grows to 5 (1/2, 2/3, 2/4, 3/5 < 0.7 up to the cap).
    assert replay["labels_per_item"].tolist() == [2, 5]
    assert replay["labels_used"] == 7
    assert replay["predictions"].tolist() == [1, 1]


@pytest.mark.parametrize(("name", "fixed_k"), [("rte", 8), ("dog", 5)])
def test_adaptive_overlap_matches_fixed_overlap_with_fewer_labels(name, fixed_k):
    need_crowd_data()
    data = load(name)  # items keyed in first-seen order, never by their ids
    sizes = data["sizes"]
    mask = fixed_overlap_mask(data["items"], n_items=sizes["n_items"], overlap=fixed_k)
    fixed = dawid_skene(data["items"][mask], data["workers"][mask], data["labels"][mask], **sizes)
    fixed_accuracy = overlap_accuracy(fixed.labels, data["gold_items"], data["gold_labels"])

    replay = replay_adaptive_overlap(
        data["items"],
        data["workers"],
        data["labels"],
        **sizes,
        start_overlap=3,
        threshold=0.999,
        max_overlap=10,
        method="ds",
    )

    accuracy = overlap_accuracy(replay["predictions"], data["gold_items"], data["gold_labels"])
    assert accuracy >= fixed_accuracy
    assert replay["labels_used"] < 0.97 * mask.sum()
    assert replay["labels_per_item"].min() == 3
    assert replay["labels_per_item"].max() == 10

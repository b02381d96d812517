from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from sklearn.metrics import recall_score
from statsmodels.stats.proportion import proportion_confint

from quality.gold import (
    accuracy_trend,
    class_recall,
    confusion_matrix,
    wilson_interval,
    worker_recent_accuracy,
)
from tests.quality.crowd_data import need_crowd_data, read_rows


@functools.cache
def gold_answers(name: str) -> dict:
    """One row per answer on a gold item: worker (first-seen index), answer and gold class."""
    rows, gold_rows = read_rows(name)
    gold = dict(gold_rows)
    classes = {c: i for i, c in enumerate(sorted({r[2] for r in rows} | set(gold.values())))}
    workers: dict[str, int] = {}
    kept = [r for r in rows if r[0] in gold]
    return {
        "workers": np.array([workers.setdefault(r[1], len(workers)) for r in kept]),
        "answers": np.array([classes[r[2]] for r in kept]),
        "gold": np.array([classes[gold[r[0]]] for r in kept]),
        "n_workers": len(workers),
        "n_classes": len(classes),
    }


# ------------------------------------------------------------------ Wilson


@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
def test_wilson_interval_matches_statsmodels(level):
    rng = np.random.default_rng(1)
    total = rng.integers(1, 400, 200)
    correct = rng.binomial(total, rng.random(200))
    correct[:3], total[:3] = [0, 5, 7], [4, 5, 7]  # all wrong, all right

    low, high = wilson_interval(correct, total, level=level)

    ref_low, ref_high = proportion_confint(correct, total, alpha=1 - level, method="wilson")
    np.testing.assert_allclose(low, ref_low, atol=1e-9, rtol=0)
    np.testing.assert_allclose(high, ref_high, atol=1e-9, rtol=0)
    assert np.all((low <= correct / total) & (correct / total <= high))


def test_wilson_interval_is_nan_without_answers_and_takes_scalars():
    low, high = wilson_interval(np.array([0, 3]), np.array([0, 4]))

    assert np.isnan(low[0])
    assert np.isnan(high[0])
    assert low[1] == pytest.approx(proportion_confint(3, 4, method="wilson")[0], abs=1e-12)
    scalar_low, scalar_high = wilson_interval(9, 10)
    assert float(scalar_low) == pytest.approx(proportion_confint(9, 10, method="wilson")[0])
    assert float(scalar_high) == pytest.approx(proportion_confint(9, 10, method="wilson")[1])


# ------------------------------------------------------------------ confusion and recall


@pytest.mark.parametrize("name", ["dog", "web", "ms"])
def test_confusion_matrix_matches_sklearn_on_real_gold(name):
    need_crowd_data()
    d = gold_answers(name)

    ours = confusion_matrix(d["answers"], d["gold"], n_classes=d["n_classes"])

    expected = sklearn_confusion_matrix(d["gold"], d["answers"], labels=range(d["n_classes"]))
    np.testing.assert_array_equal(ours, expected)
    assert ours.sum() == d["gold"].size


def test_confusion_matrix_rows_are_gold_and_columns_answers():
    matrix = confusion_matrix([2, 2, 0], [0, 0, 1], n_classes=3)

    assert matrix.tolist() == [[0, 0, 2], [1, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize("name", ["dog", "web"])
def test_class_recall_matches_sklearn_per_worker_on_real_gold(name):
    need_crowd_data()
    d = gold_answers(name)
    k = d["n_classes"]

    recall = class_recall(
        d["workers"], d["answers"], d["gold"], n_workers=d["n_workers"], n_classes=k
    )

    assert recall.shape == (d["n_workers"], k)
    for worker in range(d["n_workers"]):
        mine = d["workers"] == worker
        seen = np.bincount(d["gold"][mine], minlength=k) > 0
        expected = recall_score(
            d["gold"][mine], d["answers"][mine], labels=range(k), average=None, zero_division=0
        )
        np.testing.assert_allclose(recall[worker][seen], expected[seen], atol=1e-12)
        assert np.isnan(recall[worker][~seen]).all()


def test_class_recall_is_nan_for_unseen_classes_and_workers():
    recall = class_recall([0, 0, 0, 1], [1, 0, 1, 2], [1, 1, 0, 2], n_workers=3, n_classes=3)

    assert recall[0, 0] == 0.0
    assert recall[0, 1] == 0.5
    assert np.isnan(recall[0, 2])
    assert recall[1, 2] == 1.0
    assert np.isnan(recall[2]).all()


def test_gold_functions_reject_out_of_range_indices():
    with pytest.raises(ValueError, match="worker"):
        class_recall([0, 3], [0, 0], [0, 0], n_workers=3, n_classes=2)
    with pytest.raises(ValueError, match="label"):
        confusion_matrix([0, 2], [0, 1], n_classes=2)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], n_classes=2)


# ------------------------------------------------------------------ trend


def test_accuracy_trend_buckets_by_time_with_wilson_intervals():
    rng = np.random.default_rng(2)
    stamps = 1_700_000_000 + rng.permutation(1_000) * 3_600.0  # shuffled: sorted by the function
    correct = rng.random(1_000) < np.where(stamps < stamps.min() + 500 * 3_600, 0.9, 0.6)

    trend = accuracy_trend(correct, stamps, buckets=4)

    assert [t["n"] for t in trend] == [250] * 4
    for t in trend:
        part = (stamps >= t["start"]) & (stamps <= t["end"])
        assert part.sum() == t["n"]
        assert t["accuracy"] == pytest.approx(correct[part].mean())
        low, high = proportion_confint(correct[part].sum(), t["n"], method="wilson")
        assert (t["low"], t["high"]) == pytest.approx((low, high), abs=1e-12)
    assert trend[1]["low"] > trend[2]["high"]  # the drop at the half-way point shows


def test_accuracy_trend_with_few_answers_or_datetimes():
    stamps = np.array(["2026-03-01T12:00", "2026-03-01T11:00"], dtype="datetime64[m]")

    trend = accuracy_trend([True, False], stamps, buckets=12)

    assert [(t["n"], t["accuracy"]) for t in trend] == [(1, 0.0), (1, 1.0)]
    assert trend[0]["start"] == pytest.approx(1772362800.0)
    assert accuracy_trend([], [], buckets=5) == []


# ------------------------------------------------------------------ recent accuracy


def recent_reference(workers, correct, order, n_workers, window):
    out = np.full(n_workers, np.nan)
    for worker in range(n_workers):
        rows = [i for i in range(len(workers)) if workers[i] == worker]
        rows.sort(key=lambda i: (order[i], i))  # ties: the later row is the more recent
        last = rows[-window:]
        if last:
            out[worker] = np.mean([correct[i] for i in last])
    return out


@pytest.mark.parametrize("window", [1, 5, 20, 1_000])
def test_worker_recent_accuracy_matches_a_direct_loop(window):
    rng = np.random.default_rng(window)
    workers = rng.integers(0, 12, 600)
    correct = rng.random(600) < 0.7
    order = rng.integers(0, 100, 600)  # many ties

    ours = worker_recent_accuracy(workers, correct, order, n_workers=14, window=window)

    expected = recent_reference(workers, correct, order, 14, window)
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    assert np.isnan(ours[12:]).all()


def test_worker_recent_accuracy_sees_a_worker_who_got_worse():
    # Worker 0 was right 30 times and then wrong 10 times; worker 1 the other way round.
    workers = np.array([0] * 40 + [1] * 40)
    correct = np.array([1] * 30 + [0] * 10 + [0] * 10 + [1] * 30)
    order = np.concatenate([np.arange(40), np.arange(40)])
    shuffled = np.random.default_rng(0).permutation(80)  # input order must not matter

    recent = worker_recent_accuracy(
        workers[shuffled], correct[shuffled], order[shuffled], n_workers=2, window=20
    )

    assert recent.tolist() == [0.5, 1.0]
    assert correct[:40].mean() == 0.75


def test_worker_recent_accuracy_on_real_gold_is_bounded_by_overall_counts():
    need_crowd_data()
    d = gold_answers("web")
    sequence = np.arange(d["workers"].size)  # the file's order stands in for time
    correct = d["answers"] == d["gold"]

    recent = worker_recent_accuracy(d["workers"], correct, sequence, n_workers=d["n_workers"])

    expected = recent_reference(d["workers"], correct, sequence, d["n_workers"], 20)
    np.testing.assert_allclose(recent, expected, atol=1e-12)
    overall = np.bincount(d["workers"], correct) / np.bincount(d["workers"])
    few = np.bincount(d["workers"]) <= 20
    np.testing.assert_allclose(recent[few], overall[few])

"""Weighted MV, GLAD, MACE, the adaptive default and the `infer` dispatcher on constructed data."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command

from quality.inference import (
    DEFAULT_METHOD,
    DENSE_LABELS_PER_CELL,
    METHODS,
    glad,
    infer,
    iterated_vote,
    labels_per_cell,
    mace,
    weighted_majority_vote,
)
from quality.models import Method


def crowd(*, n_items, n_classes, accuracy, per_item, seed=0):
    """One-coin synthetic crowd: worker w is right with accuracy[w], else a random wrong class."""
    rng = np.random.default_rng(seed)
    accuracy = np.asarray(accuracy, dtype=float)
    truth = rng.integers(0, n_classes, n_items)
    items = np.repeat(np.arange(n_items), per_item)
    workers = np.concatenate(
        [rng.choice(accuracy.size, per_item, replace=False) for _ in range(n_items)]
    )
    right = rng.random(items.size) < accuracy[workers]
    wrong = (truth[items] + rng.integers(1, n_classes, items.size)) % n_classes
    labels = np.where(right, truth[items], wrong)
    sizes = {"n_items": n_items, "n_workers": accuracy.size, "n_classes": n_classes}
    return items, workers, labels, truth, sizes


def test_methods_match_the_model_choices_and_default():
    assert list(METHODS) == [choice.value for choice in Method]
    assert DEFAULT_METHOD in METHODS


def test_infer_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="unknown inference method 'best'"):
        infer("best", [0], [0], [0], n_items=1, n_workers=1, n_classes=2)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize(
    ("items", "workers", "labels", "sizes"),
    [
        ([0], [0], [0], (1, 1, 1)),  # one item, one worker, one label, one class
        ([0], [0], [0], (1, 1, 4)),  # three classes never seen
        ([0, 1, 2], [0, 0, 0], [1, 1, 1], (5, 3, 3)),  # one worker; unlabelled items and workers
        ([0, 0, 1], [0, 1, 1], [0, 1, 1], (2, 3, 2)),  # a worker with one label
        ([], [], [], (2, 2, 2)),  # no labels at all
    ],
)
def test_every_method_survives_degenerate_input(method, items, workers, labels, sizes):
    # Given a degenerate input
    n_items, n_workers, n_classes = sizes
    # When
    result = infer(
        method, items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes
    )
    # Then posteriors are finite and normalised, and reliability is a probability per worker,
    # NaN exactly for the workers without labels
    assert result.method == method
    assert result.posteriors.shape == (n_items, n_classes)
    assert np.isfinite(result.posteriors).all()
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0)
    assert result.worker_reliability.shape == (n_workers,)
    has_labels = np.bincount(np.asarray(workers, dtype=int), minlength=n_workers) > 0
    assert np.isnan(result.worker_reliability[~has_labels]).all()
    assert (
        (result.worker_reliability[has_labels] >= 0) & (result.worker_reliability[has_labels] <= 1)
    ).all()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_keeps_gold_answers_fixed(method):
    # Given three workers voting class 0 on item 0, against gold class 1
    items, workers, labels = [0, 0, 0, 1, 1], [0, 1, 2, 0, 1], [0, 0, 0, 1, 1]
    sizes = {"n_items": 2, "n_workers": 3, "n_classes": 2}
    # When
    by_dict = infer(method, items, workers, labels, **sizes, gold={0: 1})
    by_arrays = infer(method, items, workers, labels, **sizes, gold=(np.array([0]), np.array([1])))
    # Then
    np.testing.assert_allclose(by_dict.posteriors[0], [0, 1])
    np.testing.assert_allclose(by_dict.posteriors, by_arrays.posteriors)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_beats_majority_vote_and_ranks_workers(method):
    # Given 600 items, 5 labels each from 12 workers: 3 spammers at chance, the rest 0.65-0.95
    accuracy = [0.25, 0.25, 0.25, 0.65, 0.7, 0.75, 0.8, 0.8, 0.85, 0.9, 0.9, 0.95]
    items, workers, labels, truth, sizes = crowd(
        n_items=600, n_classes=4, accuracy=accuracy, per_item=5, seed=1
    )
    # When
    result = infer(method, items, workers, labels, **sizes)
    majority = infer("mv", items, workers, labels, **sizes)
    # Then it is at least as accurate as majority vote (model-based ones clearly better)
    ours = (result.labels == truth).mean()
    baseline = (majority.labels == truth).mean()
    assert ours >= baseline - (0.0 if method == "mv" else 0.005), (ours, baseline)
    if method in {"wmv", "ds", "onecoin", "glad", "mace", "auto"}:
        assert ours > baseline + 0.01, (ours, baseline)
    # and its worker reliability ranks workers like their true accuracy
    rank = np.corrcoef(np.argsort(np.argsort(result.worker_reliability)), np.arange(12))[0, 1]
    assert rank > 0.8, rank
    assert result.worker_reliability[:3].max() < result.worker_reliability[-3:].min()


def test_weighted_majority_vote_trusts_workers_right_on_gold():
    # Given worker 0 right on 10 gold items and workers 1, 2 wrong on all of them,
    # then disagreeing on item 10: worker 0 says 1, workers 1 and 2 say 0
    gold_items = np.arange(10)
    items = np.concatenate([np.repeat(gold_items, 3), [10, 10, 10]])
    workers = np.concatenate([np.tile([0, 1, 2], 10), [0, 1, 2]])
    truth = np.arange(10) % 2
    labels = np.concatenate([np.stack([truth, 1 - truth, 1 - truth], axis=1).ravel(), [1, 0, 0]])
    sizes = {"n_items": 11, "n_workers": 3, "n_classes": 2}
    # When
    plain = weighted_majority_vote(items, workers, labels, **sizes)
    weighted = weighted_majority_vote(items, workers, labels, **sizes, gold=(gold_items, truth))
    # Then without gold the colluding pair wins; with gold worker 0 does, confidently
    assert plain.labels[10] == 0
    assert weighted.labels[10] == 1
    assert weighted.confidence[10] > 0.9
    assert weighted.worker_reliability[0] > 0.8 > 0.2 > weighted.worker_reliability[1]


def test_mace_marks_a_constant_answerer_as_spammer():
    # Given three good workers and a fourth who always answers class 0
    items, workers, labels, truth, sizes = crowd(
        n_items=300, n_classes=3, accuracy=[0.85, 0.85, 0.85, 0.5], per_item=4, seed=2
    )
    labels = np.where(workers == 3, 0, labels)
    # When
    result = mace(items, workers, labels, **sizes)
    # Then the constant worker rarely "knows" and spams class 0; the truth is recovered
    theta, spam = result.worker_accuracy, result.details["spam_distribution"]
    assert theta[3] < 0.3 < 0.7 < theta[:3].min()
    assert spam[3, 0] > 0.9
    assert (result.labels == truth).mean() > 0.9


def test_glad_gives_an_adversarial_worker_negative_ability():
    # Given two good workers and one who answers the opposite of the truth 90% of the time
    items, workers, labels, truth, sizes = crowd(
        n_items=200, n_classes=2, accuracy=[0.9, 0.85, 0.1], per_item=3, seed=3
    )
    # When
    result = glad(items, workers, labels, **sizes)
    # Then
    ability = result.details["ability"]
    assert ability[2] < 0 < ability[1] < ability[0] + 1.0
    assert result.worker_reliability[2] < 0.25
    assert (result.labels == truth).mean() > 0.9
    assert (result.details["easiness"] > 0).all()


def test_auto_uses_dawid_skene_for_dense_workers_and_blends_a_vote_for_sparse_ones():
    # Given the same kind of crowd (accuracy 0.5-0.95) labelling 400 items 3 times: first few
    # busy workers, then many occasional ones (4 labels each)
    accuracy = np.random.default_rng(4).uniform(0.5, 0.95, 300)
    dense = crowd(n_items=400, n_classes=3, accuracy=accuracy[:8], per_item=3, seed=4)
    sparse = crowd(n_items=400, n_classes=3, accuracy=accuracy, per_item=3, seed=4)
    # When
    on_dense = infer("auto", *dense[:3], **dense[4])
    on_sparse = infer("auto", *sparse[:3], **sparse[4])
    # Then the density decides, and is reported; with 4 labels per worker no worker model can
    # beat a plain vote by much, but the blend must not fall more than 2 points below it
    assert labels_per_cell(dense[1], n_workers=8, n_classes=3) >= DENSE_LABELS_PER_CELL
    assert on_dense.details["chosen"] == "ds"
    assert on_sparse.details["chosen"] == "ds+vote"
    assert on_sparse.details["labels_per_cell"] < DENSE_LABELS_PER_CELL
    for result, data in ((on_dense, dense), (on_sparse, sparse)):
        majority = infer("mv", *data[:3], **data[4])
        assert (result.labels == data[3]).mean() >= (majority.labels == data[3]).mean() - 0.02


def test_iterated_vote_discounts_a_worker_who_disagrees_with_everyone():
    # Given four workers agreeing on 30 items and a fifth answering at random
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, 30)
    items = np.repeat(np.arange(30), 5)
    workers = np.tile(np.arange(5), 30)
    labels = np.where(workers == 4, rng.integers(0, 3, items.size), truth[items])
    # When
    result = iterated_vote(items, workers, labels, n_items=30, n_workers=5, n_classes=3)
    # Then
    assert np.array_equal(result.labels, truth)
    np.testing.assert_allclose(result.worker_reliability[:4], 1.0)
    assert result.worker_reliability[4] < 0.7


@pytest.mark.parametrize("method", list(METHODS))
def test_consensus_command_accepts_every_method(tmp_path, method):
    # Given a tiny labels file
    labels = tmp_path / "labels.csv"
    labels.write_text("item,worker,label\na,w1,x\na,w2,x\na,w3,x\nb,w1,y\nb,w2,y\nb,w3,y\n")
    stdout = io.StringIO()
    # When
    call_command("consensus", str(labels), method=method, stdout=stdout)
    # Then it writes one row per item
    rows = stdout.getvalue().strip().splitlines()
    assert rows[0] == "item,label,confidence"
    assert [row.split(",")[:2] for row in rows[1:]] == [["a", "x"], ["b", "y"]]

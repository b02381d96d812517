from __future__ import annotations

import csv
import functools
import io
import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from quality.inference import (
    dawid_skene,
    expected_accuracy,
    majority_vote,
    one_coin_dawid_skene,
)
from tests.quality.crowd_data import CROWD, DATASETS, need_crowd_data, read_rows


@functools.cache
def load(name: str) -> dict:
    """Dataset as dense index arrays (items/workers in first-seen order, classes sorted)."""
    rows, gold = read_rows(name)
    items: dict[str, int] = {}
    workers: dict[str, int] = {}
    classes = {c: i for i, c in enumerate(sorted({r[2] for r in rows} | {g[1] for g in gold}))}
    return {
        "items": np.array([items.setdefault(r[0], len(items)) for r in rows]),
        "workers": np.array([workers.setdefault(r[1], len(workers)) for r in rows]),
        "labels": np.array([classes[r[2]] for r in rows]),
        "gold_items": np.array([items[g[0]] for g in gold]),
        "gold_labels": np.array([classes[g[1]] for g in gold]),
        "sizes": {"n_items": len(items), "n_workers": len(workers), "n_classes": len(classes)},
    }


@functools.cache
def readme_accuracy() -> dict[str, dict[str, float]]:
    """The crowd-kit reference accuracy table of the datasets README, parsed (not copied)."""
    text = (CROWD / "README.md").read_text()
    section = text[text.index("### Reference results") :]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, float]] = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header) or not re.fullmatch(r"[0-9.]+", cells[2]):
            break  # the timing table starts here
        table[cells[0]] = {
            h: float(c) for h, c in zip(header[2:], cells[2:], strict=True) if c[:1].isdigit()
        }
    return table


def run(method, data: dict, **kwargs):
    return method(data["items"], data["workers"], data["labels"], **data["sizes"], **kwargs)


def naive_dawid_skene(items, workers, labels, n_items, n_workers, k, alpha, iterations):
    """Loop-per-label reference implementation of the same EM (MV init, M step then E step)."""
    post = np.full((n_items, k), 1.0 / k)
    counts = np.zeros((n_items, k))
    for i, label in zip(items, labels, strict=True):
        counts[i, label] += 1
    for i in range(n_items):
        if counts[i].sum():
            post[i] = counts[i] / counts[i].sum()
    for _ in range(iterations):
        priors = (post.sum(axis=0) + alpha) / (post.sum() + k * alpha)
        conf = np.full((n_workers, k, k), alpha)
        for i, w, label in zip(items, workers, labels, strict=True):
            for t in range(k):
                conf[w, t, label] += post[i, t]
        conf /= conf.sum(axis=2, keepdims=True)
        joint = np.tile(priors, (n_items, 1))
        for i, w, label in zip(items, workers, labels, strict=True):
            for t in range(k):
                joint[i, t] *= conf[w, t, label]
        post = joint / joint.sum(axis=1, keepdims=True)
    return post


# --- constructed cases -------------------------------------------------------------------------


def test_majority_vote_posteriors_are_vote_shares_and_counts_duplicates():
    # Given item 0 with labels 0,0,1 (worker 0 answering twice) and item 1 with one label 2
    items, workers, labels = [0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 2]
    # When
    result = majority_vote(items, workers, labels, n_items=3, n_workers=2, n_classes=3)
    # Then shares are as given, the label-less item is uniform
    np.testing.assert_allclose(result.posteriors[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(result.posteriors[1], [0, 0, 1])
    np.testing.assert_allclose(result.posteriors[2], [1 / 3, 1 / 3, 1 / 3])
    assert result.labels[:2].tolist() == [0, 2]
    np.testing.assert_allclose(result.confidence[:2], [2 / 3, 1])


def test_majority_vote_breaks_ties_uniformly_and_expected_accuracy_gives_fractional_credit():
    # Given 2,000 items each with a tie between classes 0 and 1 (class 2 has no vote)
    n = 2000
    items = np.repeat(np.arange(n), 2)
    labels = np.tile([0, 1], n)
    # When
    result = majority_vote(items, items * 0, labels, n_items=n, n_workers=1, n_classes=3, seed=7)
    again = majority_vote(items, items * 0, labels, n_items=n, n_workers=1, n_classes=3, seed=7)
    # Then both tied classes are picked about half the time, never the unvoted one, reproducibly
    assert set(result.labels.tolist()) == {0, 1}
    assert abs(result.labels.mean() - 0.5) < 0.05
    assert np.array_equal(result.labels, again.labels)
    # and a truth inside a two-way tie scores 1/2, a truth outside it 0
    assert expected_accuracy(result.posteriors, [0, 1], [1, 2]) == pytest.approx(0.25)


@pytest.mark.parametrize("iterations", [1, 3])
def test_dawid_skene_posteriors_match_a_loop_reference(iterations):
    # Given a small random case with duplicates, a one-label worker and an unlabelled item
    rng = np.random.default_rng(3)
    items = rng.integers(0, 6, 40)
    workers = rng.integers(0, 4, 40)
    labels = rng.integers(0, 3, 40)
    items, workers, labels = (np.append(a, v) for a, v in ((items, 7), (workers, 4), (labels, 1)))
    # When
    result = dawid_skene(
        items, workers, labels, n_items=8, n_workers=5, n_classes=3, alpha=0.5, max_iter=iterations
    )
    # Then
    expected = naive_dawid_skene(items, workers, labels, 8, 5, 3, 0.5, iterations)
    np.testing.assert_allclose(result.posteriors, expected, rtol=1e-10, atol=1e-12)
    assert result.iterations == iterations
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0)


def test_dawid_skene_down_weights_a_worker_who_contradicts_the_rest():
    # Given two reliable workers agreeing on 20 items and a third always answering the opposite
    truth = np.arange(20) % 2
    items = np.tile(np.arange(20), 3)
    workers = np.repeat([0, 1, 2], 20)
    labels = np.concatenate([truth, truth, 1 - truth])
    # When
    result = dawid_skene(items, workers, labels, n_items=20, n_workers=3, n_classes=2)
    onecoin = one_coin_dawid_skene(items, workers, labels, n_items=20, n_workers=3, n_classes=2)
    # Then the truth is recovered confidently and worker 2's confusion is anti-diagonal
    assert np.array_equal(result.labels, truth)
    assert result.confidence.min() > 0.99
    assert result.confusion[2, 0, 1] > 0.9
    assert result.confusion[2, 1, 0] > 0.9
    assert np.array_equal(onecoin.labels, truth)
    assert onecoin.worker_accuracy[2] < 0.1 < 0.9 < onecoin.worker_accuracy[0]


@pytest.mark.parametrize("method", [majority_vote, dawid_skene, one_coin_dawid_skene])
@pytest.mark.parametrize(
    ("items", "workers", "labels", "sizes"),
    [
        ([0], [0], [0], (1, 1, 1)),  # one item, one worker, one label, one class
        ([0], [0], [0], (1, 1, 4)),  # three classes never seen
        ([0, 1, 2], [0, 0, 0], [1, 1, 1], (5, 3, 3)),  # one worker; unlabelled items and workers
        ([], [], [], (2, 2, 2)),  # no labels at all
    ],
)
def test_edge_cases_give_finite_normalised_posteriors(method, items, workers, labels, sizes):
    # Given a degenerate input
    n_items, n_workers, n_classes = sizes
    # When
    result = method(
        items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes
    )
    # Then
    assert result.posteriors.shape == (n_items, n_classes)
    assert np.isfinite(result.posteriors).all()
    assert np.isfinite(result.confidence).all()
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0)
    for matrix in (result.confusion, result.worker_accuracy):
        assert matrix is None or np.isfinite(matrix).all()


@pytest.mark.parametrize("method", [majority_vote, dawid_skene, one_coin_dawid_skene])
def test_gold_fixes_truths_and_accepts_dict_or_arrays(method):
    # Given three workers voting class 0 on item 0, against gold class 1
    items, workers, labels = [0, 0, 0, 1, 1], [0, 1, 2, 0, 1], [0, 0, 0, 1, 1]
    sizes = {"n_items": 2, "n_workers": 3, "n_classes": 2}
    # When
    by_dict = method(items, workers, labels, **sizes, gold={0: 1})
    by_arrays = method(items, workers, labels, **sizes, gold=(np.array([0]), np.array([1])))
    # Then
    np.testing.assert_allclose(by_dict.posteriors[0], [0, 1])
    np.testing.assert_allclose(by_dict.posteriors, by_arrays.posteriors)


def test_out_of_range_indices_are_rejected():
    with pytest.raises(ValueError, match="label index out of range"):
        dawid_skene([0], [0], [2], n_items=1, n_workers=1, n_classes=2)
    with pytest.raises(ValueError, match="equal length"):
        majority_vote([0, 1], [0], [0], n_items=2, n_workers=1, n_classes=2)


# --- real datasets -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_accuracy_on_shared_datasets_matches_crowdkit(name):
    need_crowd_data()
    # Given the dataset and crowd-kit's reference accuracies from the README
    data = load(name)
    reference = readme_accuracy()[name]
    gold_items, gold_labels = data["gold_items"], data["gold_labels"]
    # When
    mv = run(majority_vote, data)
    ds = run(dawid_skene, data)
    # Then majority vote's tie-averaged accuracy equals the "MV rand-tie" column
    assert expected_accuracy(mv.posteriors, gold_items, gold_labels) == pytest.approx(
        reference["MV rand-tie"], abs=0.001
    )
    # and DS is within 0.005 of crowd-kit's DS or DS-100, whichever is closer: crowd-kit's DS
    # stops early on its ELBO (2 iterations on bluebirds and adult) while ours runs to
    # convergence (or 100 iterations), so either column is a fair reference.
    accuracy = float((ds.labels[gold_items] == gold_labels).mean())
    closest = min(abs(accuracy - reference["DS"]), abs(accuracy - reference["DS-100"]))
    assert closest <= 0.005, (name, accuracy, reference["DS"], reference["DS-100"])


@pytest.mark.parametrize("name", DATASETS)
def test_given_gold_does_not_hurt_dawid_skene(name):
    need_crowd_data()
    # Given 10% of the gold items as fixed truths (fixed seed)
    data = load(name)
    rng = np.random.default_rng(2024)
    n_gold = data["gold_items"].size
    given = rng.permutation(n_gold)[: max(1, n_gold // 10)]
    rest = np.setdiff1d(np.arange(n_gold), given)
    gold = (data["gold_items"][given], data["gold_labels"][given])
    # When
    unsupervised = run(dawid_skene, data)
    supervised = run(dawid_skene, data, gold=gold)
    # Then on the remaining gold items it is not worse by more than 0.01
    rest_items, rest_labels = data["gold_items"][rest], data["gold_labels"][rest]
    acc_unsupervised = (unsupervised.labels[rest_items] == rest_labels).mean()
    acc_supervised = (supervised.labels[rest_items] == rest_labels).mean()
    assert acc_supervised >= acc_unsupervised - 0.01
    assert (supervised.labels[gold[0]] == gold[1]).all()


# --- management command ------------------------------------------------------------------------


def test_consensus_command_writes_labels_and_prints_gold_accuracy(tmp_path):
    need_crowd_data()
    # Given the dog dataset
    out = tmp_path / "consensus.csv"
    stdout = io.StringIO()
    # When
    call_command(
        "consensus",
        str(CROWD / "dog" / "labels.csv"),
        gold=str(CROWD / "dog" / "gold.csv"),
        method="ds",
        out=str(out),
        stdout=stdout,
    )
    # Then one row per item with a known label and a confidence in (0, 1]
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (CROWD / "dog" / "labels.csv").open(newline="") as handle:
        item_ids = list(dict.fromkeys(r["item"] for r in csv.DictReader(handle)))
    assert [r["item"] for r in rows] == item_ids
    assert all(0 < float(r["confidence"]) <= 1 for r in rows)
    # and the printed accuracy is the accuracy of the written file on the gold items
    with (CROWD / "dog" / "gold.csv").open(newline="") as handle:
        gold = {r["item"]: r["label"] for r in csv.DictReader(handle)}
    written = {r["item"]: r["label"] for r in rows}
    accuracy = sum(written[i] == label for i, label in gold.items()) / len(gold)
    match = re.search(r"accuracy on (\d+) gold items: ([0-9.]+)", stdout.getvalue())
    assert match, stdout.getvalue()
    assert int(match.group(1)) == len(gold)
    assert float(match.group(2)) == pytest.approx(accuracy, abs=1e-4)
    assert accuracy == pytest.approx(readme_accuracy()["dog"]["DS"], abs=0.005)


def test_consensus_command_names_missing_file_and_column(tmp_path):
    # Given a labels file without a worker column
    bad = tmp_path / "bad.csv"
    bad.write_text("item,label\na,1\n")
    # Then
    with pytest.raises(CommandError, match=r"missing\.csv: file not found"):
        call_command("consensus", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match=r"bad\.csv: missing column 'worker'"):
        call_command("consensus", str(bad))

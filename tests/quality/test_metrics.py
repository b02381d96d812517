from __future__ import annotations

import csv
import os
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from quality.metrics import (
    agreement_reading_alpha,
    agreement_reading_kappa,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    vote_shares,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DOG_LABELS = SHARED / "datasets" / "crowd" / "dog" / "labels.csv"
IN_CI = os.environ.get("CI", "").lower() == "true"


def counts_from_reliability(data: np.ndarray, n_labels: int) -> np.ndarray:
    """raters × units matrix of label indices (NaN = missing) → units × labels vote counts."""
    counts = np.zeros((data.shape[1], n_labels))
    for unit in range(data.shape[1]):
        for value in data[:, unit]:
            if not np.isnan(value):
                counts[unit, int(value)] += 1
    return counts


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_fleiss_kappa_matches_statsmodels_with_equal_raters(seed):
    rng = np.random.default_rng(seed)
    raters, n_items, n_labels = int(rng.integers(2, 8)), int(rng.integers(5, 60)), 4
    # Skewed label probabilities per item so agreement is neither zero nor perfect.
    probabilities = rng.dirichlet(np.ones(n_labels) * 0.7, size=n_items)
    table = np.array([rng.multinomial(raters, p) for p in probabilities])

    ours = fleiss_kappa(table)

    assert ours == pytest.approx(statsmodels_fleiss_kappa(table, method="fleiss"), abs=1e-9)


@pytest.mark.parametrize("seed", [10, 11, 12, 13, 14, 15])
def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing_values(seed):
    rng = np.random.default_rng(seed)
    raters, units, n_labels = int(rng.integers(2, 7)), int(rng.integers(10, 80)), 3
    truth = rng.integers(0, n_labels, units)
    noisy = rng.random((raters, units)) < 0.3
    data = np.where(noisy, rng.integers(0, n_labels, (raters, units)), truth).astype(float)
    data[rng.random((raters, units)) < 0.35] = np.nan  # missing ratings, some units unpairable

    ours = krippendorff_alpha_nominal(counts_from_reliability(data, n_labels))

    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert ours == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_from_value_counts_matches_the_package():
    rng = np.random.default_rng(99)
    counts = rng.integers(0, 4, (40, 5))

    ours = krippendorff_alpha_nominal(counts)

    expected = krippendorff.alpha(value_counts=counts, level_of_measurement="nominal")
    assert ours == pytest.approx(expected, abs=1e-9)


def test_coefficients_are_none_without_pairable_items():
    single_votes = np.array([[1, 0], [0, 1], [1, 0]])

    assert fleiss_kappa(single_votes) is None
    assert krippendorff_alpha_nominal(single_votes) is None
    assert fleiss_kappa(np.zeros((0, 3))) is None
    assert krippendorff_alpha_nominal(np.zeros((0, 3))) is None


def test_coefficients_are_one_for_perfect_agreement_on_several_labels():
    counts = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 2], [2, 0, 0]])

    assert fleiss_kappa(counts) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal(counts) == pytest.approx(1.0)


def test_coefficients_are_none_when_a_single_label_is_used():
    counts = np.array([[3, 0], [2, 0], [4, 0]])

    assert fleiss_kappa(counts) is None
    assert krippendorff_alpha_nominal(counts) is None


def test_items_with_one_vote_do_not_change_the_coefficients():
    pairable = np.array([[2, 1], [0, 3], [1, 1]])
    with_single = np.vstack([pairable, [[0, 1], [1, 0]]])

    assert fleiss_kappa(with_single) == pytest.approx(fleiss_kappa(pairable), abs=1e-12)
    assert krippendorff_alpha_nominal(with_single) == pytest.approx(
        krippendorff_alpha_nominal(pairable), abs=1e-12
    )


def test_vote_shares_break_ties_by_label_order_and_handle_empty_rows():
    counts = np.array([[1, 1, 0], [0, 2, 2], [0, 0, 3], [0, 0, 0]])

    winners, shares = vote_shares(counts)

    assert winners.tolist()[:3] == [0, 1, 2]
    assert shares.tolist() == pytest.approx([0.5, 0.5, 1.0, 0.0])


@pytest.mark.parametrize(
    ("kappa", "reading"),
    [
        (None, "not enough overlapping labels yet"),
        (-0.1, "less than chance agreement"),
        (0.0, "slight agreement"),
        (0.2, "slight agreement"),
        (0.35, "fair agreement"),
        (0.5, "moderate agreement"),
        (0.61, "substantial agreement"),
        (0.95, "almost perfect agreement"),
    ],
)
def test_agreement_reading_kappa_uses_landis_koch_bands(kappa, reading):
    assert agreement_reading_kappa(kappa) == reading


@pytest.mark.parametrize(
    ("alpha", "reading"),
    [
        (None, "not enough overlapping labels yet"),
        (0.5, "too low to rely on"),
        (0.7, "good enough for tentative conclusions only"),
        (0.8, "reliable"),
    ],
)
def test_agreement_reading_alpha_uses_krippendorffs_thresholds(alpha, reading):
    assert agreement_reading_alpha(alpha) == reading


@pytest.fixture
def dog_labels():
    if not DOG_LABELS.exists():
        reason = f"shared dataset missing: {DOG_LABELS}"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    with DOG_LABELS.open(newline="") as handle:
        return [(row["item"], row["worker"], row["label"]) for row in csv.DictReader(handle)]


def test_krippendorff_alpha_matches_the_package_on_the_dog_dataset(dog_labels):
    items = sorted({item for item, _, _ in dog_labels})
    workers = sorted({worker for _, worker, _ in dog_labels})
    labels = sorted({label for _, _, label in dog_labels})
    data = np.full((len(workers), len(items)), np.nan)
    item_pos = {item: n for n, item in enumerate(items)}
    worker_pos = {worker: n for n, worker in enumerate(workers)}
    for item, worker, label in dog_labels:
        data[worker_pos[worker], item_pos[item]] = labels.index(label)

    ours = krippendorff_alpha_nominal(counts_from_reliability(data, len(labels)))

    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert ours == pytest.approx(expected, abs=1e-9)
    assert 0.0 < ours < 1.0


def test_fleiss_kappa_matches_statsmodels_on_the_dog_dataset(dog_labels):
    items = sorted({item for item, _, _ in dog_labels})
    labels = sorted({label for _, _, label in dog_labels})
    table = np.zeros((len(items), len(labels)))
    item_pos = {item: n for n, item in enumerate(items)}
    for item, _, label in dog_labels:
        table[item_pos[item], labels.index(label)] += 1
    assert len(set(table.sum(axis=1))) == 1  # every dog item has the same number of raters

    ours = fleiss_kappa(table)

    assert ours == pytest.approx(statsmodels_fleiss_kappa(table, method="fleiss"), abs=1e-9)

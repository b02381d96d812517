"""Krippendorff's alpha and Fleiss' kappa shared by the task types and the quality engine."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

import quality.agreement
from annotation.task_types import _reliability
from annotation.task_types._reliability import (
    alpha_from_coincidences,
    fleiss_kappa,
    krippendorff_alpha,
    units_build,
)


def random_votes(seed: int, *, raters=5, units=40, n_classes=4, missing=0.3):
    """Reliability data (raters × units, NaN = missing) and the same votes as sparse arrays."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, units)
    data = np.where(
        rng.random((raters, units)) < 0.4, rng.integers(0, n_classes, (raters, units)), truth
    ).astype(float)
    data[rng.random((raters, units)) < missing] = np.nan
    workers, items = np.nonzero(~np.isnan(data))
    return data, items, workers, data[workers, items]


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [0, 1])
def test_krippendorff_alpha_matches_the_package(level, seed):
    data, items, workers, values = random_votes(seed)

    ours = krippendorff_alpha(items, workers, values, level=level)

    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert ours == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_nominal_on_a_hand_computed_case():
    # Units [a, a], [a, b], [b, b]: D_o = 2/6, D_e = 18/30, alpha = 1 - 5·2/18 = 4/9.
    items, workers, values = [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [0, 0, 0, 1, 1, 1]

    alpha = krippendorff_alpha(items, workers, values, level="nominal")

    assert alpha == pytest.approx(4 / 9, abs=1e-12)


def test_krippendorff_alpha_interval_on_a_hand_computed_case():
    # Units [1, 2], [4, 5]: observed Σδ² = 4, all ordered pairs Σδ² = 80, alpha = 1 - 3·4/80.
    alpha = krippendorff_alpha([0, 0, 1, 1], [0, 1, 0, 1], [1, 2, 4, 5], level="interval")

    assert alpha == pytest.approx(0.85, abs=1e-12)


def test_fleiss_kappa_on_hand_computed_cases_with_equal_and_unequal_raters():
    # Equal: P = mean(1, 0, 1) = 2/3, P_e = 1/2, kappa = 1/3.
    equal = fleiss_kappa([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [0, 0, 0, 1, 1, 1])
    # Unequal [a, a, a], [a, b]: P = mean(1, 0) = 1/2, P_e = (4/5)² + (1/5)² = 0.68.
    unequal = fleiss_kappa([0, 0, 0, 1, 1], [0, 1, 2, 0, 1], [0, 0, 0, 0, 1])

    assert equal == pytest.approx(1 / 3, abs=1e-12)
    assert unequal == pytest.approx((0.5 - 0.68) / (1 - 0.68), abs=1e-12)


def test_fleiss_kappa_matches_statsmodels_with_equal_raters():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=(30, 4))  # 30 items, 4 raters each
    items = np.repeat(np.arange(30), 4)
    workers = np.tile(np.arange(4), 30)
    counts = np.stack([(labels == k).sum(axis=1) for k in range(3)], axis=1)

    ours = fleiss_kappa(items, workers, labels.ravel())

    assert ours == pytest.approx(statsmodels_fleiss_kappa(counts, method="fleiss"), abs=1e-12)


def test_coefficients_are_none_without_pairable_items_or_variation():
    single_answers = ([0, 1, 2], [0, 0, 0], [0, 1, 2])
    one_class = ([0, 0, 1, 1], [0, 1, 0, 1], [2, 2, 2, 2])

    assert fleiss_kappa(*single_answers) is None
    assert fleiss_kappa(*one_class) is None
    assert fleiss_kappa([], [], []) is None
    assert krippendorff_alpha(*single_answers) is None
    assert krippendorff_alpha(*one_class) is None


def test_units_build_drops_items_with_one_vote():
    units = units_build(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 0, 1, 1, 1]), 2)

    coincidences, agreement, weight = units.point()

    assert units.n_units == 2
    assert coincidences.sum() == pytest.approx(5.0)  # pairable votes only
    assert agreement[0] == pytest.approx(0.0 + 1.0)  # P_u of [a, b] and [b, b, b]
    assert weight[0] == 2
    assert alpha_from_coincidences(coincidences, "nominal")[0] == pytest.approx(
        krippendorff_alpha([0, 0, 2, 2, 2], [0, 1, 0, 1, 2], [0, 1, 1, 1, 1])
    )


def test_quality_agreement_uses_the_shared_implementation():
    assert quality.agreement.krippendorff_alpha is _reliability.krippendorff_alpha
    assert quality.agreement.LEVELS == ("nominal", "ordinal", "interval")
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([0, 0], [0, 1], [0, 1], level="ratio")

"""Rating: scale options, answers, ordinal and interval agreement, weighted median consensus."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from django.core.exceptions import ValidationError

from annotation.task_types import TaskConfig, Vote, task_type_get

TYPE = task_type_get("rating")


def config(**options) -> TaskConfig:
    return TaskConfig(task_type="rating", options=options)


def votes(*ratings: int, weights: tuple[float, ...] = ()) -> list[Vote]:
    weights = weights or (1.0,) * len(ratings)
    return [
        Vote(worker_id=w, value={"rating": rating}, weight=weight)
        for w, (rating, weight) in enumerate(zip(ratings, weights, strict=True))
    ]


def error_keys(call) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return list(caught.value.message_dict)


def test_options_clean_fills_defaults_and_keeps_a_valid_scale():
    assert TYPE.options_clean({}, labels=[]) == {"scale_min": 1, "scale_max": 5}
    assert TYPE.options_clean({"scale_min": 0, "scale_max": 9}, labels=[]) == {
        "scale_min": 0,
        "scale_max": 9,
    }
    assert TYPE.options_clean({"scale_min": -1, "scale_max": 0}, labels=[]) == {
        "scale_min": -1,
        "scale_max": 0,
    }


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"scale_min": True}, "options.scale_min"),
        ({"scale_min": 1.5}, "options.scale_min"),
        ({"scale_max": "7"}, "options.scale_max"),
        ({"scale_min": 5, "scale_max": 5}, "options.scale_max"),
        ({"scale_min": 6, "scale_max": 2}, "options.scale_max"),
        ({"scale_min": 0, "scale_max": 10}, "options.scale_max"),  # 11 points
        ({"steps": 5}, "options.steps"),
    ],
)
def test_options_clean_names_the_bad_option(options, key):
    assert error_keys(lambda: TYPE.options_clean(options, labels=[])) == [key]


def test_value_clean_accepts_whole_numbers_on_the_scale_and_form_text():
    assert TYPE.value_clean({"rating": 5}, config=config()) == {"rating": 5}
    assert TYPE.value_clean({"rating": " 3"}, config=config()) == {"rating": 3}
    assert TYPE.value_clean({"rating": -2}, config=config(scale_min=-2, scale_max=2)) == {
        "rating": -2
    }


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"rating": 6}, "value.rating"),
        ({"rating": 0}, "value.rating"),
        ({"rating": 2.5}, "value.rating"),
        ({"rating": True}, "value.rating"),
        ({"rating": "three"}, "value.rating"),
        ({}, "value.rating"),
        (3, "value"),
    ],
)
def test_value_clean_names_the_bad_field(value, key):
    assert error_keys(lambda: TYPE.value_clean(value, config=config())) == [key]


def test_categories_are_the_scale_points_as_text():
    assert TYPE.category_values(config=config(scale_min=0, scale_max=3)) == ["0", "1", "2", "3"]
    assert TYPE.categories({"rating": 4}, config=config()) == ["4"]
    assert TYPE.summary({"rating": 4}) == "4"


def test_agreement_interval_on_a_hand_computed_case():
    # Items [1, 2], [4, 5]: observed Σδ² = 4, expected over all ordered pairs Σδ² = 80.
    figures = TYPE.agreement({1: votes(1, 2), 2: votes(4, 5)}, config=config())

    assert figures["alpha_interval"] == pytest.approx(1 - 3 * 4 / 80, abs=1e-12)


def test_agreement_matches_the_krippendorff_package_at_both_levels():
    rng = np.random.default_rng(2)
    truth = rng.integers(1, 6, size=30)
    data = np.clip(truth + rng.integers(-1, 2, size=(5, 30)), 1, 5).astype(float)
    data[rng.random(data.shape) < 0.3] = np.nan
    answers = {
        item: [
            Vote(worker_id=worker, value={"rating": int(data[worker, item])})
            for worker in range(5)
            if not np.isnan(data[worker, item])
        ]
        for item in range(30)
    }

    figures = TYPE.agreement(answers, config=config())

    for level in ("ordinal", "interval"):
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert figures[f"alpha_{level}"] == pytest.approx(expected, abs=1e-9), level


def test_agreement_is_undefined_without_pairs():
    figures = TYPE.agreement({1: votes(3), 2: votes(4)}, config=config())

    assert figures == {"alpha_ordinal": None, "alpha_interval": None}


def test_consensus_is_the_weighted_median():
    odd = TYPE.consensus(votes(1, 5, 2), config=config())
    weighted = TYPE.consensus(votes(1, 5, 2, weights=(1, 3, 1)), config=config())

    assert (odd.value, odd.support) == ({"rating": 2}, pytest.approx(1 / 3))
    assert (weighted.value, weighted.support) == ({"rating": 5}, pytest.approx(3 / 5))


def test_consensus_takes_the_lower_median_on_an_exact_tie():
    even = TYPE.consensus(votes(4, 2), config=config())
    split = TYPE.consensus(votes(2, 2, 4, 5), config=config())

    assert (even.value, even.support) == ({"rating": 2}, 0.5)
    assert (split.value, split.support) == ({"rating": 2}, 0.5)


def test_consensus_single_annotator_and_no_weight():
    single = TYPE.consensus(votes(3), config=config())

    assert (single.value, single.support) == ({"rating": 3}, 1.0)
    assert TYPE.consensus(votes(3, 4, weights=(0, 0)), config=config()) is None
    assert TYPE.consensus([], config=config()) is None

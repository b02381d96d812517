"""Multi-label: options, answers, per-label agreement, Jaccard and per-label consensus."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from django.core.exceptions import ValidationError

from annotation.task_types import TaskConfig, Vote, task_type_get

TYPE = task_type_get("multi_label")
LABELS = tuple({"value": v, "hotkey": str(i + 1)} for i, v in enumerate(["a", "b", "c", "d"]))


def config(**options) -> TaskConfig:
    return TaskConfig(task_type="multi_label", labels=LABELS, options=options)


def votes(*answers: list[str], weights: tuple[float, ...] = ()) -> list[Vote]:
    weights = weights or (1.0,) * len(answers)
    return [
        Vote(worker_id=w, value={"labels": labels}, weight=weight)
        for w, (labels, weight) in enumerate(zip(answers, weights, strict=True))
    ]


def error_keys(call) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return list(caught.value.message_dict)


# ------------------------------------------------------------------ options and answers


def test_options_clean_fills_the_default_and_refuses_bad_options():
    assert TYPE.options_clean(None, labels=LABELS) == {"allow_none": False}
    assert TYPE.options_clean({"allow_none": True}, labels=LABELS) == {"allow_none": True}
    assert error_keys(lambda: TYPE.options_clean({"allow_none": "yes"}, labels=LABELS)) == [
        "options.allow_none"
    ]
    assert error_keys(lambda: TYPE.options_clean({"colour": 1}, labels=LABELS)) == [
        "options.colour"
    ]
    assert error_keys(lambda: TYPE.options_clean([1], labels=LABELS)) == ["options"]


def test_value_clean_returns_the_labels_in_label_set_order():
    cleaned = TYPE.value_clean({"labels": ["c", "a"]}, config=config())

    assert cleaned == {"labels": ["a", "c"]}


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"labels": ["a", "zebra"]}, "value.labels[1]"),
        ({"labels": ["a", "b", "a"]}, "value.labels[2]"),
        ({"labels": [3]}, "value.labels[0]"),
        ({"labels": "a"}, "value.labels"),
        ({}, "value.labels"),
        (["a"], "value"),
    ],
)
def test_value_clean_names_the_bad_field(value, key):
    assert error_keys(lambda: TYPE.value_clean(value, config=config())) == [key]


def test_value_clean_allows_no_label_only_when_the_project_does():
    assert error_keys(lambda: TYPE.value_clean({"labels": []}, config=config())) == ["value.labels"]
    assert TYPE.value_clean({"labels": []}, config=config(allow_none=True)) == {"labels": []}


def test_categories_and_summary():
    assert TYPE.categories({"labels": ["a", "c"]}, config=config()) == ["a", "c"]
    assert TYPE.summary({"labels": ["a", "c"]}) == "a, c"
    assert TYPE.summary({"labels": []}) == "(none)"


# ------------------------------------------------------------------ agreement


def test_agreement_per_label_alpha_matches_the_package_on_presence():
    # Three annotators on three items; the third item has two answers.
    answers = {
        1: votes(["a", "b"], ["a"], ["a", "b"]),
        2: votes(["b"], ["b", "c"], []),
        3: votes(["c"], ["a", "c"]),
    }
    chosen = [[set(v.value["labels"]) for v in item] for item in answers.values()]

    figures = TYPE.agreement(answers, config=config())

    for label in "abc":
        data = np.full((3, 3), np.nan)  # annotators × items
        for item, sets in enumerate(chosen):
            for worker, labels in enumerate(sets):
                data[worker, item] = float(label in labels)
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        assert figures["per_label_alpha"][label] == pytest.approx(expected, abs=1e-9), label
    assert figures["per_label_alpha"]["d"] is None  # never used: undefined


def test_agreement_per_label_alpha_on_a_hand_computed_case():
    # Label a present/absent: [1, 1], [1, 0], [0, 0] -> nominal alpha 4/9.
    answers = {1: votes(["a"], ["a"]), 2: votes(["a"], ["b"]), 3: votes(["b"], ["b"])}

    figures = TYPE.agreement(answers, config=config())

    assert figures["per_label_alpha"]["a"] == pytest.approx(4 / 9, abs=1e-12)
    assert figures["per_label_alpha"]["b"] == pytest.approx(4 / 9, abs=1e-12)


def test_agreement_mean_jaccard_counts_two_empty_answers_as_agreeing():
    answers = {
        1: votes(["a", "b"], ["a"]),  # 1/2
        2: votes([], []),  # 1.0
        3: votes(["a"], ["b"], ["a"]),  # pairs 0, 1, 0 -> 1/3
        4: votes(["c"]),  # one annotator: left out
    }

    figures = TYPE.agreement(answers, config=config(allow_none=True))

    assert figures["mean_jaccard"] == pytest.approx((0.5 + 1.0 + 1 / 3) / 3, abs=1e-12)


def test_agreement_is_undefined_without_two_answers_on_an_item():
    figures = TYPE.agreement({1: votes(["a"]), 2: votes(["b"])}, config=config())

    assert figures["mean_jaccard"] is None
    assert set(figures["per_label_alpha"].values()) == {None}


# ------------------------------------------------------------------ consensus


def test_consensus_keeps_labels_with_more_than_half_the_weight():
    result = TYPE.consensus(votes(["a", "b"], ["a"], ["b", "c"]), config=config())

    assert result.value == {"labels": ["a", "b"]}
    # Winning side per label: a 2/3, b 2/3, c 2/3 (absent), d 1 (absent).
    assert result.support == pytest.approx((2 / 3 * 3 + 1) / 4)


def test_consensus_weights_change_the_outcome():
    result = TYPE.consensus(
        votes(["a", "b"], ["a"], ["b", "c"], weights=(1, 1, 3)), config=config()
    )

    assert result.value == {"labels": ["b", "c"]}
    assert result.support == pytest.approx((3 / 5 + 4 / 5 + 3 / 5 + 1) / 4)


def test_consensus_exactly_half_is_not_kept_and_empty_is_valid_only_when_allowed():
    split = votes(["a"], ["b"])

    allowed = TYPE.consensus(split, config=config(allow_none=True))

    assert allowed.value == {"labels": []}
    assert allowed.support == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert TYPE.consensus(split, config=config()) is None  # a and b tie for most weight


def test_consensus_falls_back_to_the_heaviest_label_when_an_answer_is_required():
    result = TYPE.consensus(votes(["a"], ["b"], ["c"], weights=(1.5, 1, 1)), config=config())

    assert result.value == {"labels": ["a"]}
    assert result.support == pytest.approx((1.5 / 3.5 + 2.5 / 3.5 + 2.5 / 3.5 + 1) / 4)


def test_consensus_of_empty_answers():
    empties = votes([], [])

    assert TYPE.consensus(empties, config=config()) is None  # no label has any weight
    allowed = TYPE.consensus(empties, config=config(allow_none=True))
    assert (allowed.value, allowed.support) == ({"labels": []}, 1.0)


def test_consensus_single_annotator_and_no_weight():
    single = TYPE.consensus(votes(["d", "a"]), config=config())

    assert (single.value, single.support) == ({"labels": ["a", "d"]}, 1.0)
    assert TYPE.consensus(votes(["a"], weights=(0.0,)), config=config()) is None
    assert TYPE.consensus([], config=config()) is None

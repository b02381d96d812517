"""Pairwise comparison: options, pair items, choices, agreement and consensus."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotation.task_types import TaskConfig, Vote, task_type_get

TYPE = task_type_get("pairwise")


def config(**options) -> TaskConfig:
    return TaskConfig(task_type="pairwise", options=options)


def votes(*choices: str, weights: tuple[float, ...] = ()) -> list[Vote]:
    weights = weights or (1.0,) * len(choices)
    return [
        Vote(worker_id=w, value={"choice": choice}, weight=weight)
        for w, (choice, weight) in enumerate(zip(choices, weights, strict=True))
    ]


def error_keys(call) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return list(caught.value.message_dict)


def test_options_clean_fills_defaults_and_names_bad_options():
    assert TYPE.options_clean(None, labels=[]) == {"mode": "preference", "allow_tie": True}
    assert TYPE.options_clean({"mode": "duplicate"}, labels=[]) == {
        "mode": "duplicate",
        "allow_tie": True,
    }
    assert error_keys(lambda: TYPE.options_clean({"mode": "best"}, labels=[])) == ["options.mode"]
    assert error_keys(lambda: TYPE.options_clean({"allow_tie": 1}, labels=[])) == [
        "options.allow_tie"
    ]
    assert error_keys(lambda: TYPE.options_clean({"ties": True}, labels=[])) == ["options.ties"]


def test_item_data_clean_accepts_text_and_image_pairs_with_a_prompt():
    texts = {"a": "first answer", "b": "second answer", "prompt": "Which is kinder?"}
    images = {"image_a": "imports/1/a.png", "image_b": "https://example.org/b.png"}

    assert TYPE.item_data_clean(texts, config=config()) == texts
    assert TYPE.item_data_clean(images, config=config()) == images


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"a": "one"}, "data.b"),
        ({"a": " ", "b": "two"}, "data.a"),
        ({"a": "one", "b": 2}, "data.b"),
        ({"image_a": "x.png"}, "data.image_b"),
        ({"a": "one", "b": "two", "image_a": "x.png"}, "data"),
        ({"text": "one"}, "data"),
        ({"a": "one", "b": "two", "prompt": 3}, "data.prompt"),
        ("one and two", "data"),
    ],
)
def test_item_data_clean_names_the_bad_field(data, key):
    assert error_keys(lambda: TYPE.item_data_clean(data, config=config())) == [key]


def test_value_clean_allows_the_choices_of_the_mode():
    for choice in ("A", "B", "tie"):
        assert TYPE.value_clean({"choice": choice}, config=config()) == {"choice": choice}
    duplicate = config(mode="duplicate", allow_tie=True)
    assert TYPE.value_clean({"choice": "not_duplicate"}, config=duplicate) == {
        "choice": "not_duplicate"
    }


@pytest.mark.parametrize(
    ("value", "options", "key"),
    [
        ({"choice": "tie"}, {"allow_tie": False}, "value.choice"),
        ({"choice": "A"}, {"mode": "duplicate"}, "value.choice"),
        ({"choice": "a"}, {}, "value.choice"),
        ({}, {}, "value.choice"),
        ("A", {}, "value"),
    ],
)
def test_value_clean_refuses_other_choices(value, options, key):
    assert error_keys(lambda: TYPE.value_clean(value, config=config(**options))) == [key]


def test_categories_follow_the_mode():
    assert TYPE.category_values(config=config()) == ["A", "B", "tie"]
    assert TYPE.category_values(config=config(allow_tie=False)) == ["A", "B"]
    assert TYPE.category_values(config=config(mode="duplicate")) == ["duplicate", "not_duplicate"]
    assert TYPE.categories({"choice": "B"}, config=config()) == ["B"]
    assert TYPE.summary({"choice": "tie"}) == "tie"


def test_agreement_alpha_nominal_on_a_hand_computed_case():
    answers = {1: votes("A", "A"), 2: votes("A", "B"), 3: votes("B", "B"), 4: votes("tie")}

    figures = TYPE.agreement(answers, config=config())

    assert figures == {"alpha_nominal": pytest.approx(4 / 9, abs=1e-12)}


def test_agreement_is_undefined_when_everyone_agrees_on_one_choice():
    figures = TYPE.agreement({1: votes("A", "A"), 2: votes("A", "A")}, config=config())

    assert figures == {"alpha_nominal": None}


def test_consensus_weighted_majority_ties_and_single_annotator():
    plain = TYPE.consensus(votes("A", "B", "B"), config=config())
    weighted = TYPE.consensus(votes("A", "B", "B", weights=(2.5, 1, 1)), config=config())
    single = TYPE.consensus(votes("tie"), config=config())

    assert (plain.value, plain.support) == ({"choice": "B"}, pytest.approx(2 / 3))
    assert (weighted.value, weighted.support) == ({"choice": "A"}, pytest.approx(2.5 / 4.5))
    assert (single.value, single.support) == ({"choice": "tie"}, 1.0)
    assert TYPE.consensus(votes("A", "B", weights=(2, 2)), config=config()) is None
    assert TYPE.consensus([], config=config()) is None

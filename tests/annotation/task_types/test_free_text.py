"""Free text: options, answers, normalisation, agreement and consensus."""

from __future__ import annotations

import random

import pytest
from django.core.exceptions import ValidationError

from annotation.task_types import TaskConfig, Vote, task_type_get
from annotation.task_types.free_text import char_similarity, levenshtein, text_normalised

TYPE = task_type_get("free_text")


def config(**options) -> TaskConfig:
    return TaskConfig(task_type="free_text", options=options)


def votes(*texts: str, weights: tuple[float, ...] = ()) -> list[Vote]:
    weights = weights or (1.0,) * len(texts)
    return [
        Vote(worker_id=w, value={"text": text}, weight=weight)
        for w, (text, weight) in enumerate(zip(texts, weights, strict=True))
    ]


def error_keys(call) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return list(caught.value.message_dict)


def test_options_clean_fills_defaults():
    assert TYPE.options_clean(None, labels=[]) == {
        "max_length": 1000,
        "allow_empty": False,
        "case_sensitive": False,
    }
    assert TYPE.options_clean({"max_length": 10000, "case_sensitive": True}, labels=[]) == {
        "max_length": 10000,
        "allow_empty": False,
        "case_sensitive": True,
    }


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_length": 0}, "options.max_length"),
        ({"max_length": 10001}, "options.max_length"),
        ({"max_length": True}, "options.max_length"),
        ({"allow_empty": "no"}, "options.allow_empty"),
        ({"case_sensitive": 0}, "options.case_sensitive"),
        ({"min_length": 3}, "options.min_length"),
    ],
)
def test_options_clean_names_the_bad_option(options, key):
    assert error_keys(lambda: TYPE.options_clean(options, labels=[])) == [key]


def test_value_clean_strips_the_answer():
    assert TYPE.value_clean({"text": "  a  cat \n"}, config=config()) == {"text": "a  cat"}


@pytest.mark.parametrize(
    ("value", "options", "key"),
    [
        ({"text": "abcdef"}, {"max_length": 5}, "value.text"),
        ({"text": "   "}, {}, "value.text"),
        ({"text": 3}, {}, "value.text"),
        ({}, {}, "value.text"),
        ("an answer", {}, "value"),
    ],
)
def test_value_clean_names_the_bad_field(value, options, key):
    assert error_keys(lambda: TYPE.value_clean(value, config=config(**options))) == [key]


def test_value_clean_allows_an_empty_answer_when_the_project_does():
    assert TYPE.value_clean({"text": " "}, config=config(allow_empty=True)) == {"text": ""}
    assert TYPE.value_clean({"text": " abcde "}, config=config(max_length=5)) == {"text": "abcde"}


def test_text_normalised_composes_collapses_and_folds_case():
    assert text_normalised("  CAFE\u0301 \t au\n lait ") == "café au lait"
    assert text_normalised("Straße") == text_normalised("STRASSE")
    assert text_normalised(" Café  Noir", case_sensitive=True) == "Café Noir"


def reference_levenshtein(first: str, second: str) -> int:
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def test_levenshtein_matches_the_textbook_recurrence():
    rng = random.Random(4)
    for _ in range(400):  # lengths on both sides of a 64-bit word
        first = "".join(rng.choice("abc") for _ in range(rng.randint(0, 80)))
        second = "".join(rng.choice("abcé") for _ in range(rng.randint(0, 80)))

        assert levenshtein(first, second) == reference_levenshtein(first, second)
    assert levenshtein("kitten", "sitting") == 3


def test_char_similarity_is_normalised_by_the_longer_answer():
    assert char_similarity("", "") == 1.0
    assert char_similarity("", "abc") == 0.0
    assert char_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_char_similarity_stays_fast_on_answers_of_the_largest_length():
    rng = random.Random(0)
    first = "".join(rng.choice("abcdefgh ") for _ in range(10_000))
    second = first[:5000] + "x" + first[5000:-1]  # one insertion and one deletion

    assert char_similarity(first, second) == pytest.approx(1 - 2 / 10_000)


def test_summary_is_short():
    assert TYPE.summary({"text": "a\nb"}) == "a b"
    assert TYPE.summary({"text": "x" * 200}) == "x" * 79 + "…"


def test_agreement_pools_pairs_over_items():
    answers = {
        1: votes("Paris", " paris "),  # equal after normalisation
        2: votes("abc", "abd"),  # one substitution in three characters: 2/3
        3: votes("alone"),  # no pair
    }

    figures = TYPE.agreement(answers, config=config())

    assert figures["exact_match"] == pytest.approx(1 / 2)
    assert figures["char_similarity"] == pytest.approx((1 + 2 / 3) / 2)


def test_agreement_respects_case_sensitivity_and_pools_every_pair():
    answers = {1: votes("Paris", "paris", "Paris")}  # pairs: differ, same, differ

    figures = TYPE.agreement(answers, config=config(case_sensitive=True))

    assert figures["exact_match"] == pytest.approx(1 / 3)
    assert figures["char_similarity"] == pytest.approx((0.8 + 1 + 0.8) / 3)  # one edit in five


def test_agreement_is_undefined_without_pairs():
    assert TYPE.agreement({1: votes("x")}, config=config()) == {
        "exact_match": None,
        "char_similarity": None,
    }


def test_consensus_groups_normalised_answers_and_keeps_the_most_frequent_spelling():
    result = TYPE.consensus(
        votes("new york", "New York", "New  York", "New York", "Boston"), config=config()
    )

    assert result.value == {"text": "New York"}
    assert result.support == pytest.approx(4 / 5)


def test_consensus_spelling_tie_takes_the_lexicographically_smallest_in_any_order():
    texts = ("Paris", "paris", "PARIS", "London")

    forward = TYPE.consensus(votes(*texts), config=config())
    backward = TYPE.consensus(votes(*reversed(texts)), config=config())

    assert forward == backward
    assert (forward.value, forward.support) == ({"text": "PARIS"}, pytest.approx(3 / 4))


def test_consensus_ties_have_none_whatever_the_order_and_weights_decide():
    assert TYPE.consensus(votes("yes", "no"), config=config()) is None
    assert TYPE.consensus(votes("no", "yes"), config=config()) is None
    weighted = TYPE.consensus(votes("yes", "no", weights=(1, 2)), config=config())
    assert (weighted.value, weighted.support) == ({"text": "no"}, pytest.approx(2 / 3))


def test_consensus_case_sensitive_groups_and_edge_cases():
    sensitive = TYPE.consensus(votes("Ok", "ok", "ok"), config=config(case_sensitive=True))
    single = TYPE.consensus(votes("only"), config=config())
    empty = TYPE.consensus(votes("", ""), config=config(allow_empty=True))

    assert (sensitive.value, sensitive.support) == ({"text": "ok"}, pytest.approx(2 / 3))
    assert (single.value, single.support) == ({"text": "only"}, 1.0)
    assert (empty.value, empty.support) == ({"text": ""}, 1.0)
    assert TYPE.consensus([], config=config()) is None

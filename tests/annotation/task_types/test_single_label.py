"""Single label: answers, agreement and consensus."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from django.core.exceptions import ValidationError

from annotation.task_types import TaskConfig, Vote, task_type_get

TYPE = task_type_get("single_label")
CONFIG = TaskConfig(
    task_type="single_label",
    labels=({"value": "cat", "hotkey": "1"}, {"value": "dog", "hotkey": "2"}),
)


def votes(*labels: str, weights: tuple[float, ...] = ()) -> list[Vote]:
    weights = weights or (1.0,) * len(labels)
    return [
        Vote(worker_id=w, value={"label": label}, weight=weight)
        for w, (label, weight) in enumerate(zip(labels, weights, strict=True))
    ]


def test_value_clean_keeps_a_known_label():
    assert TYPE.value_clean({"label": "dog"}, config=CONFIG) == {"label": "dog"}


@pytest.mark.parametrize("value", [{"label": "cow"}, {"label": 1}, {}, None])
def test_value_clean_refuses_unknown_labels_under_the_label_key(value):
    with pytest.raises(ValidationError) as caught:
        TYPE.value_clean(value, config=CONFIG)

    assert list(caught.value.message_dict) == ["label"]
    assert "cat, dog" in caught.value.message_dict["label"][0]


def test_agreement_on_a_hand_computed_case():
    # Items [cat, cat], [cat, dog], [dog, dog]: alpha 4/9; Fleiss (2/3 - 1/2) / (1/2) = 1/3.
    answers = {7: votes("cat", "cat"), 3: votes("cat", "dog"), 9: votes("dog", "dog")}

    figures = TYPE.agreement(answers, config=CONFIG)

    assert figures["alpha_nominal"] == pytest.approx(4 / 9, abs=1e-12)
    assert figures["fleiss_kappa"] == pytest.approx(1 / 3, abs=1e-12)


def test_agreement_matches_the_krippendorff_package_with_missing_answers():
    rng = np.random.default_rng(5)
    data = rng.integers(0, 2, size=(4, 25)).astype(float)  # 4 workers × 25 items
    data[rng.random(data.shape) < 0.3] = np.nan
    answers = {
        100 + item: [
            Vote(worker_id=worker, value={"label": ("cat", "dog")[int(data[worker, item])]})
            for worker in range(4)
            if not np.isnan(data[worker, item])
        ]
        for item in range(25)
    }

    figures = TYPE.agreement(answers, config=CONFIG)

    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert figures["alpha_nominal"] == pytest.approx(expected, abs=1e-9)


def test_agreement_is_undefined_with_one_answer_per_item():
    figures = TYPE.agreement({1: votes("cat"), 2: votes("dog")}, config=CONFIG)

    assert figures == {"alpha_nominal": None, "fleiss_kappa": None}


def test_consensus_is_the_weighted_plurality():
    plain = TYPE.consensus(votes("cat", "cat", "dog"), config=CONFIG)
    weighted = TYPE.consensus(votes("cat", "cat", "dog", weights=(1, 1, 3)), config=CONFIG)

    assert (plain.value, plain.support) == ({"label": "cat"}, pytest.approx(2 / 3))
    assert (weighted.value, weighted.support) == ({"label": "dog"}, pytest.approx(3 / 5))


def test_consensus_edge_cases_single_annotator_tie_and_nothing():
    single = TYPE.consensus(votes("dog"), config=CONFIG)

    assert (single.value, single.support) == ({"label": "dog"}, 1.0)
    assert TYPE.consensus(votes("cat", "dog"), config=CONFIG) is None
    assert TYPE.consensus([], config=CONFIG) is None

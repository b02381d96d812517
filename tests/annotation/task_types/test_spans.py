from __future__ import annotations

import io
import json
import re

import pytest
import spacy
from django.core.exceptions import ValidationError
from spacy.tokens import Doc
from spacy.training import biluo_tags_to_spans, iob_to_biluo
from spacy.training.converters import conll_ner_to_docs

from annotation.services import annotation_value_clean, project_create
from annotation.task_types import task_type_get
from annotation.task_types.base import ExportRow, TaskConfig, Vote
from annotation.task_types.spans import TASK_TYPE, bio_tags
from tests.annotation.factories import ItemFactory, UserFactory

LABELS = (
    {"value": "PER", "hotkey": "1", "colour": "#0072b2"},
    {"value": "ORG", "hotkey": "2", "colour": "#d55e00"},
    {"value": "LOC", "hotkey": "3", "colour": "#009e73"},
)
TEXT = "Alice Smith works for Acme Corp in Paris ."  # 0-11 PER, 22-31 ORG, 35-40 LOC; 42 long


def make_config(**options) -> TaskConfig:
    return TaskConfig(
        task_type="spans",
        labels=LABELS,
        options=TASK_TYPE.options_clean(
            {"relation_labels": ["works_for", "located_in"], **options}, labels=LABELS
        ),
    )


def span(start, end, label):
    return {"start": start, "end": end, "label": label}


def errors_of(excinfo) -> dict[str, list[str]]:
    return excinfo.value.message_dict


# --- declaration and options ------------------------------------------------------------------


def test_spans_type_is_discovered_with_its_declaration():
    task_type = task_type_get("spans")

    assert task_type is TASK_TYPE
    assert task_type.text_offsets is True
    assert task_type.categorical is False
    assert task_type.needs_labels is True
    assert task_type.widget == "annotation/widgets/spans.html"
    assert [form.key for form in task_type.export_forms] == ["spacy", "conll"]


def test_options_clean_fills_defaults():
    cleaned = TASK_TYPE.options_clean({}, labels=LABELS)

    assert cleaned == {
        "relation_labels": [],
        "allow_overlap": True,
        "allow_none": True,
        "field": "text",
    }
    assert TASK_TYPE.options_clean(None, labels=LABELS) == cleaned


def test_options_clean_keeps_given_values_and_strips_relation_labels():
    options = {"relation_labels": [" works_for "], "allow_overlap": False, "field": "body"}

    cleaned = TASK_TYPE.options_clean(options, labels=LABELS)

    assert cleaned == {
        "relation_labels": ["works_for"],
        "allow_overlap": False,
        "allow_none": True,
        "field": "body",
    }


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"colour": "red"}, "options.colour"),
        ({"allow_overlap": "no"}, "options.allow_overlap"),
        ({"allow_none": 0}, "options.allow_none"),
        ({"field": ""}, "options.field"),
        ({"field": "text body"}, "options.field"),
        ({"field": 3}, "options.field"),
        ({"relation_labels": "works_for"}, "options.relation_labels"),
        ({"relation_labels": ["a", " a"]}, "options.relation_labels"),
        ({"relation_labels": ["a", ""]}, "options.relation_labels"),
        ({"relation_labels": [1]}, "options.relation_labels"),
        ({"relation_labels": [f"r{n}" for n in range(51)]}, "options.relation_labels"),
    ],
)
def test_options_clean_refuses_bad_options(options, key):
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.options_clean(options, labels=LABELS)

    assert key in errors_of(excinfo)


def test_options_clean_refuses_non_object():
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.options_clean(["x"], labels=LABELS)

    assert "options" in errors_of(excinfo)


# --- item data --------------------------------------------------------------------------------


def test_item_data_clean_reads_the_configured_field():
    config = make_config(field="body")

    assert TASK_TYPE.item_data_clean({"body": "Hi there"}, config=config) == {"body": "Hi there"}
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.item_data_clean({"text": "Hi there"}, config=config)
    assert "data.body" in errors_of(excinfo)


@pytest.mark.parametrize("data", [{"text": ""}, {"text": "   "}, {"text": 5}, {}])
def test_item_data_clean_needs_non_empty_text(data):
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.item_data_clean(data, config=make_config())

    assert "data.text" in errors_of(excinfo)


def test_item_data_clean_refuses_non_object():
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.item_data_clean("text", config=make_config())

    assert "data" in errors_of(excinfo)


# --- answers ----------------------------------------------------------------------------------


def test_value_clean_sorts_spans_and_reindexes_relations():
    value = {
        "spans": [span(22, 31, "ORG"), span(35, 40, "LOC"), span(0, 11, "PER")],
        "relations": [
            {"from": 2, "to": 0, "label": "works_for"},
            {"from": 0, "to": 1, "label": "located_in"},
        ],
    }

    cleaned = TASK_TYPE.value_clean(value, config=make_config(), item_data={"text": TEXT})

    assert cleaned == {
        "spans": [span(0, 11, "PER"), span(22, 31, "ORG"), span(35, 40, "LOC")],
        "relations": [
            {"from": 0, "to": 1, "label": "works_for"},
            {"from": 1, "to": 2, "label": "located_in"},
        ],
    }


def test_value_clean_sorts_same_offsets_by_label_and_allows_missing_relations():
    value = {"spans": [span(0, 5, "PER"), span(0, 5, "LOC"), span(0, 11, "PER")]}

    cleaned = TASK_TYPE.value_clean(value, config=make_config())

    assert cleaned == {
        "spans": [span(0, 5, "LOC"), span(0, 5, "PER"), span(0, 11, "PER")],
        "relations": [],
    }


def test_value_clean_is_idempotent_on_the_stored_form():
    config = make_config()
    value = {
        "spans": [span(22, 31, "ORG"), span(0, 11, "PER")],
        "relations": [{"from": 1, "to": 0, "label": "works_for"}],
    }

    once = TASK_TYPE.value_clean(value, config=config, item_data={"text": TEXT})

    assert TASK_TYPE.value_clean(once, config=config, item_data={"text": TEXT}) == once


@pytest.mark.parametrize(
    ("bad_span", "key"),
    [
        (span(True, 5, "PER"), "value.spans[1].start"),
        (span(0, 5.0, "PER"), "value.spans[1].end"),
        (span("0", 5, "PER"), "value.spans[1].start"),
        ({"end": 5, "label": "PER"}, "value.spans[1].start"),
        (span(-1, 5, "PER"), "value.spans[1].start"),
        (span(5, 5, "PER"), "value.spans[1].end"),
        (span(6, 5, "PER"), "value.spans[1].end"),
        (span(0, 5, "DATE"), "value.spans[1].label"),
        (span(0, 5, None), "value.spans[1].label"),
        ({**span(0, 5, "PER"), "text": "Alice"}, "value.spans[1].text"),
        ("0-5", "value.spans[1]"),
    ],
)
def test_value_clean_refuses_bad_spans_with_their_path(bad_span, key):
    value = {"spans": [span(35, 40, "LOC"), bad_span]}

    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=make_config(), item_data={"text": TEXT})

    assert key in errors_of(excinfo)


def test_value_clean_checks_offsets_against_the_text_only_when_the_item_is_known():
    value = {"spans": [span(0, 5, "PER"), span(35, 43, "LOC")]}
    config = make_config()

    assert TASK_TYPE.value_clean(value, config=config)["spans"][1] == span(35, 43, "LOC")
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=config, item_data={"text": TEXT})
    assert list(errors_of(excinfo)) == ["value.spans[1].end"]
    assert TASK_TYPE.value_clean(
        {"spans": [span(35, 42, "LOC")]}, config=config, item_data={"text": TEXT}
    )


def test_value_clean_uses_the_configured_field_for_offsets():
    config = make_config(field="body")
    value = {"spans": [span(0, 8, "PER")]}

    assert TASK_TYPE.value_clean(value, config=config, item_data={"body": "Jane Doe"})
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=config, item_data={"body": "Jane"})
    assert "value.spans[0].end" in errors_of(excinfo)


def test_value_clean_reports_every_bad_span():
    value = {"spans": [span(0, 0, "PER"), span(1, 2, "X"), span(0, 5, "PER")]}

    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=make_config())

    assert set(errors_of(excinfo)) == {"value.spans[0].end", "value.spans[1].label"}


def test_value_clean_refuses_duplicate_spans_naming_the_first():
    value = {"spans": [span(0, 5, "PER"), span(6, 11, "PER"), span(0, 5, "PER")]}

    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=make_config())

    assert errors_of(excinfo) == {
        "value.spans[2]": ["Same start, end and label as value.spans[0]."]
    }


def test_value_clean_allows_overlap_by_default():
    value = {"spans": [span(0, 11, "PER"), span(6, 11, "PER"), span(0, 11, "ORG")]}

    cleaned = TASK_TYPE.value_clean(value, config=make_config(), item_data={"text": TEXT})

    assert len(cleaned["spans"]) == 3


@pytest.mark.parametrize(
    ("spans", "key"),
    [
        ([span(6, 11, "PER"), span(0, 11, "PER")], "value.spans[0]"),
        ([span(0, 11, "PER"), span(0, 11, "ORG")], "value.spans[0]"),
        ([span(22, 31, "ORG"), span(0, 5, "PER"), span(2, 40, "LOC")], "value.spans[2]"),
        ([span(0, 40, "LOC"), span(35, 40, "LOC"), span(22, 26, "ORG")], "value.spans[2]"),
    ],
)
def test_value_clean_refuses_overlap_when_not_allowed(spans, key):
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean({"spans": spans}, config=make_config(allow_overlap=False))

    assert key in errors_of(excinfo)
    assert "overlapping" in errors_of(excinfo)[key][0]


def test_value_clean_accepts_touching_spans_without_overlap():
    value = {"spans": [span(6, 11, "PER"), span(0, 6, "PER")]}

    cleaned = TASK_TYPE.value_clean(value, config=make_config(allow_overlap=False))

    assert cleaned["spans"] == [span(0, 6, "PER"), span(6, 11, "PER")]


def test_value_clean_empty_answer_follows_allow_none():
    assert TASK_TYPE.value_clean({"spans": [], "relations": []}, config=make_config()) == {
        "spans": [],
        "relations": [],
    }
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean({"spans": []}, config=make_config(allow_none=False))
    assert "value.spans" in errors_of(excinfo)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ([span(0, 5, "PER")], "value"),
        ({"relations": []}, "value.spans"),
        ({"spans": {"0": span(0, 5, "PER")}}, "value.spans"),
        ({"spans": [], "entities": []}, "value.entities"),
    ],
)
def test_value_clean_refuses_bad_shapes(value, key):
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=make_config())

    assert key in errors_of(excinfo)


@pytest.mark.parametrize(
    ("relation", "key"),
    [
        ({"from": 0, "to": 2, "label": "works_for"}, "value.relations[1].to"),
        ({"from": -1, "to": 1, "label": "works_for"}, "value.relations[1].from"),
        ({"from": True, "to": 1, "label": "works_for"}, "value.relations[1].from"),
        ({"from": 1, "label": "works_for"}, "value.relations[1].to"),
        ({"from": 1, "to": 1, "label": "works_for"}, "value.relations[1].to"),
        ({"from": 0, "to": 1, "label": "knows"}, "value.relations[1].label"),
        ({"from": 0, "to": 1, "label": "works_for", "score": 1}, "value.relations[1].score"),
        ({"from": 1, "to": 0, "label": "works_for"}, "value.relations[1]"),
        ([0, 1], "value.relations[1]"),
    ],
)
def test_value_clean_refuses_bad_relations_with_their_path(relation, key):
    value = {
        "spans": [span(22, 31, "ORG"), span(0, 11, "PER")],
        "relations": [{"from": 1, "to": 0, "label": "works_for"}, relation],
    }

    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=make_config())

    assert key in errors_of(excinfo)


def test_value_clean_refuses_relations_when_the_project_has_no_relation_labels():
    config = TaskConfig(task_type="spans", labels=LABELS, options={})
    value = {
        "spans": [span(0, 11, "PER"), span(22, 31, "ORG")],
        "relations": [{"from": 0, "to": 1, "label": "works_for"}],
    }

    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=config)

    assert errors_of(excinfo) == {
        "value.relations[0].label": ["This project has no relation labels."]
    }


def test_value_clean_refuses_relations_that_are_not_a_list():
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean({"spans": [], "relations": {}}, config=make_config())

    assert "value.relations" in errors_of(excinfo)


@pytest.mark.django_db
def test_annotation_value_clean_checks_spans_against_the_project_and_item():
    project = project_create(
        user=UserFactory(),
        name="Entities",
        labels=[dict(label) for label in LABELS],
        task_type="spans",
        task_options={"relation_labels": ["works_for"], "allow_overlap": False},
    )
    item = ItemFactory(project=project, data={"text": TEXT})

    cleaned = annotation_value_clean(
        project=project, value={"spans": [span(22, 31, "ORG"), span(0, 5, "PER")]}, item=item
    )

    assert project.task_options["allow_none"] is True
    assert cleaned["spans"] == [span(0, 5, "PER"), span(22, 31, "ORG")]
    with pytest.raises(ValidationError) as excinfo:
        annotation_value_clean(project=project, value={"spans": [span(0, 99, "PER")]}, item=item)
    assert "value.spans[0].end" in errors_of(excinfo)


# --- relabel and summary ----------------------------------------------------------------------


def test_relabel_merges_spans_made_equal_and_follows_relations():
    value = {
        "spans": [span(0, 5, "ORG"), span(0, 5, "PER"), span(22, 31, "ORG")],
        "relations": [
            {"from": 0, "to": 2, "label": "works_for"},
            {"from": 1, "to": 2, "label": "works_for"},
            {"from": 0, "to": 1, "label": "located_in"},
        ],
    }
    config = TaskConfig(
        task_type="spans",
        labels=({"value": "ENT", "hotkey": "1", "colour": "#0072b2"},),
        options={"relation_labels": ["works_for", "located_in"]},
    )

    moved = TASK_TYPE.relabel(value, {"ORG": "ENT", "PER": "ENT"})

    assert moved == {
        "spans": [span(0, 5, "ENT"), span(22, 31, "ENT")],
        "relations": [{"from": 0, "to": 1, "label": "works_for"}],
    }
    assert TASK_TYPE.value_clean(moved, config=config) == moved
    assert TASK_TYPE.relabel(value, {"PER": None}) is None


def test_summary_counts_labels_and_relations():
    value = {
        "spans": [span(0, 5, "PER"), span(6, 11, "PER"), span(22, 31, "ORG")],
        "relations": [{"from": 0, "to": 2, "label": "works_for"}],
    }

    assert TASK_TYPE.summary(value) == "3 spans: PER ×2, ORG; 1 relation"
    assert TASK_TYPE.summary({"spans": [], "relations": []}) == "no spans"
    assert TASK_TYPE.summary(None) == ""


# --- agreement --------------------------------------------------------------------------------


def answer(*spans_, relations=()):
    """A stored answer from (start, end, label) triples and (from, to, label) relations."""
    return TASK_TYPE.value_clean(
        {
            "spans": [span(*s) for s in spans_],
            "relations": [{"from": f, "to": t, "label": label} for f, t, label in relations],
        },
        config=make_config(),
    )


def votes(*answers, weights=None):
    weights = weights or [1.0] * len(answers)
    return [
        Vote(worker_id=n, value=value, weight=weight)
        for n, (value, weight) in enumerate(zip(answers, weights, strict=True), start=1)
    ]


def test_agreement_is_none_without_a_pair():
    answers = {1: votes(answer((0, 5, "PER"))), 2: votes(answer((0, 5, "ORG")))}

    figures = TASK_TYPE.agreement(answers, config=make_config())

    assert figures["span_f1_exact"] is None
    assert figures["span_f1_overlap"] is None
    assert figures["relation_f1"] is None
    assert figures["span_f1_exact_by_label"] == {"PER": None, "ORG": None, "LOC": None}
    assert TASK_TYPE.agreement({}, config=make_config())["span_f1_exact"] is None


def test_agreement_identical_answers_agree_fully():
    same = answer((0, 11, "PER"), (22, 31, "ORG"), relations=[(0, 1, "works_for")])
    answers = {1: votes(same, same, same)}

    figures = TASK_TYPE.agreement(answers, config=make_config())

    assert figures["span_f1_exact"] == 1.0
    assert figures["span_f1_overlap"] == 1.0
    assert figures["relation_f1"] == 1.0
    assert figures["span_f1_exact_by_label"] == {"PER": 1.0, "ORG": 1.0, "LOC": None}


def test_agreement_disjoint_answers_agree_not_at_all():
    answers = {1: votes(answer((0, 11, "PER")), answer((22, 31, "ORG")))}

    figures = TASK_TYPE.agreement(answers, config=make_config())

    assert figures["span_f1_exact"] == 0.0
    assert figures["span_f1_overlap"] == 0.0


def test_agreement_same_offsets_other_label_do_not_match_even_by_overlap():
    answers = {1: votes(answer((0, 11, "PER")), answer((0, 11, "ORG")))}

    figures = TASK_TYPE.agreement(answers, config=make_config())

    assert figures["span_f1_exact"] == 0.0
    assert figures["span_f1_overlap"] == 0.0


def test_agreement_partial_overlap_counts_only_for_the_overlap_measure():
    first = answer((0, 11, "PER"), (22, 31, "ORG"))
    second = answer((0, 5, "PER"), (22, 31, "ORG"))

    figures = TASK_TYPE.agreement({1: votes(first, second)}, config=make_config())

    assert figures["span_f1_exact"] == pytest.approx(0.5)  # 2 x 1 / (2 + 2)
    assert figures["span_f1_overlap"] == 1.0
    assert figures["span_f1_exact_by_label"]["PER"] == 0.0
    assert figures["span_f1_exact_by_label"]["ORG"] == 1.0


def test_agreement_overlap_matching_is_one_to_one():
    long = answer((0, 40, "LOC"))
    pieces = answer((0, 5, "LOC"), (35, 40, "LOC"))

    figures = TASK_TYPE.agreement({1: votes(long, pieces)}, config=make_config())

    assert figures["span_f1_overlap"] == pytest.approx(2 / 3)  # 2 x 1 / (1 + 2)


def test_agreement_overlap_matching_finds_the_best_pairing():
    # First-fit pairing (0-11 with 0-5) would leave 1-3 unmatched: 1-3 only overlaps 0-5.
    first = answer((0, 11, "PER"), (1, 3, "PER"))
    second = answer((0, 5, "PER"), (6, 11, "PER"))

    figures = TASK_TYPE.agreement({1: votes(first, second)}, config=make_config())

    assert figures["span_f1_overlap"] == 1.0
    assert figures["span_f1_exact"] == 0.0


def test_agreement_empty_answers_agree_with_each_other_only():
    empty = answer()
    some = answer((0, 11, "PER"), (22, 31, "ORG"))

    both_empty = TASK_TYPE.agreement({1: votes(empty, empty)}, config=make_config())
    one_empty = TASK_TYPE.agreement({1: votes(empty, some)}, config=make_config())

    assert both_empty["span_f1_exact"] == 1.0
    assert both_empty["span_f1_overlap"] == 1.0
    assert both_empty["relation_f1"] == 1.0
    assert one_empty["span_f1_exact"] == 0.0  # 0 / (1 + 2): "nothing" is one unmatched unit
    assert one_empty["span_f1_overlap"] == 0.0


def test_agreement_is_micro_averaged_over_pairs_of_all_items():
    three = answer((0, 5, "PER"), (22, 31, "ORG"), (35, 40, "LOC"))
    answers = {
        1: votes(three, three),  # 6 matched of 6
        2: votes(answer((0, 5, "PER")), answer((6, 11, "PER"))),  # 0 of 2
        3: votes(answer((0, 5, "PER"))),  # one annotator: not counted
    }

    figures = TASK_TYPE.agreement(answers, config=make_config())

    assert figures["span_f1_exact"] == pytest.approx(6 / 8)


def test_agreement_counts_every_pair_of_three_annotators():
    a = answer((0, 5, "PER"))
    b = answer((0, 5, "PER"))
    c = answer((6, 11, "PER"))

    figures = TASK_TYPE.agreement({1: votes(a, b, c)}, config=make_config())

    assert figures["span_f1_exact"] == pytest.approx(2 / 6)  # pairs ab, ac, bc


def test_agreement_relations_compare_triples_of_exact_spans():
    spans_ = [(0, 11, "PER"), (22, 31, "ORG"), (35, 40, "LOC")]
    first = answer(*spans_, relations=[(0, 1, "works_for"), (1, 2, "located_in")])
    second = answer(*spans_, relations=[(0, 1, "works_for"), (0, 2, "located_in")])
    shifted = answer((0, 5, "PER"), (22, 31, "ORG"), relations=[(0, 1, "works_for")])

    figures = TASK_TYPE.agreement({1: votes(first, second)}, config=make_config())
    other_span = TASK_TYPE.agreement({1: votes(first, shifted)}, config=make_config())

    assert figures["relation_f1"] == pytest.approx(0.5)
    assert other_span["relation_f1"] == 0.0


def test_agreement_relation_f1_is_none_without_relation_labels():
    config = TaskConfig(task_type="spans", labels=LABELS, options={})
    same = {"spans": [span(0, 5, "PER")], "relations": []}

    figures = TASK_TYPE.agreement({1: votes(same, same)}, config=config)

    assert figures["relation_f1"] is None
    assert figures["span_f1_exact"] == 1.0


# --- consensus --------------------------------------------------------------------------------


def test_consensus_keeps_spans_of_a_majority():
    answers = votes(
        answer((0, 11, "PER"), (22, 31, "ORG")),
        answer((0, 11, "PER")),
        answer((0, 5, "PER"), (22, 31, "ORG")),
    )

    consensus = TASK_TYPE.consensus(answers, config=make_config())

    assert consensus.value == {
        "spans": [span(0, 11, "PER"), span(22, 31, "ORG")],
        "relations": [],
    }
    # every candidate is decided 2 to 1: 0-11 and 22-31 marked by 2, 0-5 left out by 2
    assert consensus.support == pytest.approx(2 / 3)


def test_consensus_weights_decide():
    heavy = answer((0, 11, "PER"))
    light = answer((22, 31, "ORG"))

    consensus = TASK_TYPE.consensus(
        votes(heavy, light, light, weights=[3.0, 1.0, 1.0]), config=make_config()
    )

    assert consensus.value["spans"] == [span(0, 11, "PER")]
    assert consensus.support == pytest.approx(0.6)


def test_consensus_exactly_half_is_not_a_majority():
    consensus = TASK_TYPE.consensus(votes(answer((0, 11, "PER")), answer()), config=make_config())

    assert consensus.value == {"spans": [], "relations": []}
    assert consensus.support == pytest.approx(0.5)


def test_consensus_when_nobody_marked_anything():
    consensus = TASK_TYPE.consensus(votes(answer(), answer()), config=make_config())

    assert consensus.value == {"spans": [], "relations": []}
    assert consensus.support == 1.0


def test_consensus_empty_is_none_when_an_answer_must_mark_something():
    answers = votes(answer((0, 11, "PER")), answer((22, 31, "ORG")))

    assert TASK_TYPE.consensus(answers, config=make_config(allow_none=False)) is None
    assert TASK_TYPE.consensus(answers, config=make_config()).value["spans"] == []


def test_consensus_without_votes_or_weight_is_none():
    assert TASK_TYPE.consensus([], config=make_config()) is None
    zero = votes(answer((0, 5, "PER")), weights=[0.0])
    assert TASK_TYPE.consensus(zero, config=make_config()) is None


def test_consensus_keeps_relations_of_a_majority_between_kept_spans():
    spans_ = [(0, 11, "PER"), (22, 31, "ORG"), (35, 40, "LOC")]
    answers = votes(
        answer(*spans_, relations=[(0, 1, "works_for"), (1, 2, "located_in")]),
        answer(*spans_[:2], relations=[(0, 1, "works_for")]),
        answer(spans_[1], spans_[2], relations=[(0, 1, "located_in")]),
        answer(
            spans_[0],
            spans_[1],
            (0, 5, "LOC"),
            relations=[(0, 1, "works_for"), (1, 2, "works_for")],
        ),
    )

    consensus = TASK_TYPE.consensus(answers, config=make_config())

    # PER 3 of 4 and ORG 4 of 4 are kept, LOC 35-40 (2 of 4) is not; works_for PER -> ORG has
    # 3 of 4; located_in ORG -> LOC (2 of 4) and works_for ORG -> LOC 0-5 (1 of 4) go.
    assert consensus.value == {
        "spans": [span(0, 11, "PER"), span(22, 31, "ORG")],
        "relations": [{"from": 0, "to": 1, "label": "works_for"}],
    }


def test_consensus_of_non_overlapping_answers_has_no_overlap():
    config = make_config(allow_overlap=False)
    answers = votes(
        answer((0, 11, "PER"), (22, 31, "ORG")),
        answer((0, 5, "PER"), (6, 31, "ORG")),
        answer((0, 11, "PER"), (22, 31, "ORG")),
    )

    consensus = TASK_TYPE.consensus(answers, config=config)

    assert TASK_TYPE.value_clean(dict(consensus.value), config=config) == consensus.value


# --- export forms -----------------------------------------------------------------------------


def form(key):
    return next(f for f in TASK_TYPE.export_forms if f.key == key)


def rows():
    config = make_config()
    first = TASK_TYPE.value_clean(
        {
            "spans": [span(22, 31, "ORG"), span(0, 11, "PER"), span(35, 40, "LOC")],
            "relations": [{"from": 1, "to": 0, "label": "works_for"}],
        },
        config=config,
        item_data={"text": TEXT},
    )
    second_text = "Bob went to New York City yesterday ."
    second = TASK_TYPE.value_clean(
        {"spans": [span(12, 25, "LOC"), span(0, 3, "PER")]},
        config=config,
        item_data={"text": second_text},
    )
    return [
        ExportRow(item_id=7, data={"text": TEXT}, value=first, split="train"),
        ExportRow(item_id=9, data={"text": second_text}, value=second),
        ExportRow(item_id=11, data={"text": "Nothing agreed here ."}, value=None),
    ]


def written(key, export_rows=None) -> bytes:
    out = io.BytesIO()
    form(key).write(export_rows or rows(), out, make_config())
    return out.getvalue()


def test_spacy_export_loads_into_spacy_with_every_span():
    nlp = spacy.blank("en")
    by_item = {row.item_id: row for row in rows()}

    lines = [json.loads(line) for line in written("spacy").decode().splitlines()]

    assert [line["meta"]["item_id"] for line in lines] == [7, 9, 11]
    for line in lines:
        row = by_item[line["meta"]["item_id"]]
        doc = nlp.make_doc(line["text"])
        expected = row.value["spans"] if row.value else []
        assert line["spans"] == expected
        for entity in line["spans"]:
            char_span = doc.char_span(entity["start"], entity["end"], label=entity["label"])
            assert char_span is not None
            assert char_span.label_ == entity["label"]
            assert char_span.text == line["text"][entity["start"] : entity["end"]]
        doc.ents = [doc.char_span(e["start"], e["end"], label=e["label"]) for e in line["spans"]]
        assert len(doc.ents) == len(expected)
    assert lines[0]["relations"] == [{"from": 0, "label": "works_for", "to": 1}]
    assert lines[0]["meta"] == {"item_id": 7, "split": "train"}
    assert lines[2]["spans"] == []
    assert lines[2]["relations"] == []


def test_spacy_export_is_compact_sorted_and_byte_identical():
    first = written("spacy")

    assert first == written("spacy")
    line = first.decode().splitlines()[1]
    assert line == (
        '{"meta":{"item_id":9},"relations":[],'
        '"spans":[{"end":3,"label":"PER","start":0},{"end":25,"label":"LOC","start":12}],'
        '"text":"Bob went to New York City yesterday ."}'
    )


def test_spacy_export_reads_the_configured_field_and_keeps_unicode():
    config = make_config(field="body")
    out = io.BytesIO()
    value = {"spans": [span(0, 3, "PER")], "relations": []}

    form("spacy").write([ExportRow(item_id=1, data={"body": "Zoë é"}, value=value)], out, config)

    assert json.loads(out.getvalue())["text"] == "Zoë é"
    assert "Zoë".encode() in out.getvalue()


def read_conll(data: bytes) -> dict[int, list[tuple[str, str]]]:
    """A small CoNLL reader: item id -> (token, tag) lines."""
    items: dict[int, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in data.decode().split("\n"):
        if line.startswith("# item_id = "):
            current = items.setdefault(int(line.removeprefix("# item_id = ")), [])
        elif line:
            token, tag = line.split(" ")
            current.append((token, tag))
    return items


def entities_from_bio(text, tagged):
    """Character spans of the BIO entities, through spaCy's own BIO -> spans conversion."""
    tokens = list(re.finditer(r"\S+", text))
    assert [t.group() for t in tokens] == [token for token, _tag in tagged]
    doc = Doc(spacy.blank("en").vocab, words=[t.group() for t in tokens])
    found = biluo_tags_to_spans(doc, iob_to_biluo([tag for _token, tag in tagged]))
    return [span(tokens[s.start].start(), tokens[s.end - 1].end(), s.label_) for s in found]


def test_conll_export_gives_back_the_same_entities():
    export_rows = rows()

    items = read_conll(written("conll"))

    assert list(items) == [7, 9, 11]
    for row in export_rows:
        expected = row.value["spans"] if row.value else []
        assert entities_from_bio(row.data["text"], items[row.item_id]) == expected
    assert items[9][:6] == [
        ("Bob", "B-PER"),
        ("went", "O"),
        ("to", "O"),
        ("New", "B-LOC"),
        ("York", "I-LOC"),
        ("City", "I-LOC"),
    ]
    assert {tag for _token, tag in items[11]} == {"O"}


def test_conll_export_layout_and_spacy_converter():
    data = written("conll")
    text = data.decode()

    assert text.startswith("# item_id = 7\nAlice B-PER\nSmith I-PER\nworks O\n")
    assert "\n. O\n\n# item_id = 9\n" in text
    assert text.endswith("\n\n")
    # spaCy's own CoNLL reader, with each item made one document.
    docs = list(
        conll_ner_to_docs(
            re.sub(r"# item_id = \d+\n", "-DOCSTART- -X- O O\n\n", text), no_print=True
        )
    )
    assert [[(e.text, e.label_) for e in doc.ents] for doc in docs] == [
        [("Alice Smith", "PER"), ("Acme Corp", "ORG"), ("Paris", "LOC")],
        [("Bob", "PER"), ("New York City", "LOC")],
        [],
    ]


def test_bio_tags_longest_then_earliest_span_wins_overlaps():
    text = "New York City Hall is open"
    spans_ = [
        span(0, 8, "LOC"),  # New York
        span(0, 18, "ORG"),  # New York City Hall (longest: wins)
        span(19, 21, "PER"),  # is
        span(14, 21, "LOC"),  # Hall is: shares "Hall" with the winner, left out
    ]

    assert bio_tags(text, spans_) == [
        ("New", "B-ORG"),
        ("York", "I-ORG"),
        ("City", "I-ORG"),
        ("Hall", "I-ORG"),
        ("is", "B-PER"),
        ("open", "O"),
    ]
    assert bio_tags("a b c", [span(2, 5, "PER"), span(0, 3, "ORG")]) == [
        ("a", "B-ORG"),
        ("b", "I-ORG"),
        ("c", "O"),
    ]


def test_bio_tags_cover_tokens_a_span_touches_and_keep_adjacent_entities_apart():
    text = "(Alice) met Bob Carol"

    tagged = bio_tags(text, [span(1, 6, "PER"), span(12, 15, "PER"), span(16, 21, "PER")])

    assert tagged == [("(Alice)", "B-PER"), ("met", "O"), ("Bob", "B-PER"), ("Carol", "B-PER")]
    assert bio_tags("a   b", [span(1, 4, "PER")]) == [("a", "O"), ("b", "O")]


def test_bio_tags_replace_whitespace_in_labels():
    assert bio_tags("Ada Lovelace", [span(0, 12, "Person name")]) == [
        ("Ada", "B-Person_name"),
        ("Lovelace", "I-Person_name"),
    ]

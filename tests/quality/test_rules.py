"""Labeling rules: kinds (matching, abstaining, field errors), regex safety, runs, stats,
pre-labels."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotation.models import Prediction
from quality.models import ItemScore, LabelingRule
from quality.rules import running
from quality.rules.kinds import config_clean, matcher_build
from quality.rules.running import rules_run, rules_version
from quality.rules.safety import pattern_compile
from quality.rules.services import rule_create, rule_delete, rule_update, rules_run_state
from quality.rules.tasks import rules_run_task
from tests.annotation.factories import ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SPAN_LABELS = [{"value": "PER", "hotkey": "1"}, {"value": "ORG", "hotkey": "2"}]
MULTI_LABELS = [
    {"value": "food", "hotkey": "1"},
    {"value": "service", "hotkey": "2"},
    {"value": "price", "hotkey": "3"},
]


def _matches(kind, config, data, **kwargs):
    clean = config_clean(kind, config)
    return matcher_build(kind, clean, **kwargs).search(data, 1.0)


def _rule(project, name, kind, label, config, **kwargs):
    return rule_create(
        project=project,
        user=project.created_by,
        name=name,
        kind=kind,
        label=label,
        config=config,
        **kwargs,
    )


# --- kinds ------------------------------------------------------------------------------------


def test_keywords_match_whole_words_ignoring_case_and_phrases():
    config = {"keywords": ["great", "well  done"]}

    assert _matches("keywords", config, {"text": "A GREAT film."})
    assert _matches("keywords", config, {"text": "It was well\n done!"})
    assert not _matches("keywords", config, {"text": "Greatest film ever"})
    assert not _matches("keywords", config, {"text": "undone"})
    assert not _matches("keywords", config, {"title": "great"})  # field missing: abstains
    assert _matches("keywords", {"keywords": ["c++"]}, {"text": "I like C++ a lot"})
    assert not _matches("keywords", {"keywords": ["c++"]}, {"text": "c++x"})


def test_keywords_on_another_field():
    config = {"keywords": ["refund"], "field": "subject"}

    assert _matches("keywords", config, {"text": "x", "subject": "Refund please"})
    assert not _matches("keywords", config, {"text": "refund"})


def test_keywords_field_errors():
    with pytest.raises(ValidationError) as empty:
        config_clean("keywords", {"keywords": []})
    with pytest.raises(ValidationError) as blank:
        config_clean("keywords", {"keywords": ["ok", "  "]})
    with pytest.raises(ValidationError) as unknown:
        config_clean("keywords", {"keywords": ["ok"], "colour": "red"})

    assert "config.keywords" in empty.value.message_dict
    assert "config.keywords[1]" in blank.value.message_dict
    assert "config.colour" in unknown.value.message_dict


def test_regex_matches_and_abstains():
    config = {"pattern": r"\b\d{3}-\d{4}\b"}

    assert _matches("regex", config, {"text": "call 555-1234 now"})
    assert not _matches("regex", config, {"text": "call 5551234 now"})
    assert _matches("regex", {"pattern": "refund", "ignore_case": True}, {"text": "REFUND"})
    assert not _matches("regex", {"pattern": "refund"}, {"text": "REFUND"})


def test_regex_invalid_is_refused_with_the_compilers_message():
    with pytest.raises(ValidationError) as error:
        config_clean("regex", {"pattern": "(unclosed"})

    message = error.value.message_dict["config.pattern"][0]
    assert message.startswith("Invalid regular expression:")
    assert "missing )" in message


def test_regex_catastrophic_pattern_is_refused_quickly():
    started = time.perf_counter()

    with pytest.raises(ValidationError) as error:
        config_clean("regex", {"pattern": r"(a+)+$"})

    assert time.perf_counter() - started < 2
    assert "too slow" in error.value.message_dict["config.pattern"][0]


def test_pattern_compile_accepts_ordinary_patterns():
    assert pattern_compile(r"good|great", ignore_case=True, where="p").search("GOOD")


@pytest.mark.parametrize(
    ("operator", "value", "data", "expected"),
    [
        ("equals", "5", {"stars": 5}, True),
        ("equals", "fr", {"lang": "fr"}, True),
        ("equals", "fr", {"lang": "FR"}, False),
        ("not_equals", "fr", {"lang": "en"}, True),
        ("not_equals", "fr", {}, False),  # missing field abstains
        ("contains", "Refund", {"subject": "about a refund"}, True),
        ("contains", "vip", {"tags": ["new", "vip"]}, True),
        ("in", ["en", "de"], {"lang": "de"}, True),
        ("in", ["en", "de"], {"lang": "fr"}, False),
        ("greater_than", 3, {"stars": "4"}, True),
        ("greater_than", 3, {"stars": 3}, False),
        ("less_than", 2.5, {"stars": 2}, True),
        ("less_than", 2.5, {"stars": "n/a"}, False),
    ],
)
def test_field_conditions(operator, value, data, expected):
    field = next(iter(data), "lang")
    config = {"field": field, "operator": operator, "value": value}

    assert _matches("field", config, data) is expected


def test_field_condition_errors():
    with pytest.raises(ValidationError) as operator:
        config_clean("field", {"field": "stars", "operator": "like", "value": 1})
    with pytest.raises(ValidationError) as number:
        config_clean("field", {"field": "stars", "operator": "greater_than", "value": "many"})
    with pytest.raises(ValidationError) as field:
        config_clean("field", {"operator": "equals", "value": 1})
    with pytest.raises(ValidationError) as listed:
        config_clean("field", {"field": "lang", "operator": "in", "value": ["en", {"x": 1}]})

    assert "config.operator" in operator.value.message_dict
    assert "config.value" in number.value.message_dict
    assert "config.field" in field.value.message_dict
    assert "config.value[1]" in listed.value.message_dict


def test_span_pattern_emits_matches():
    keywords = _matches("span_pattern", {"keywords": ["Alice"]}, {"text": "alice met Alice"})
    pattern = _matches("span_pattern", {"pattern": r"\d+"}, {"text": "a 12 b 345"})
    field = _matches("span_pattern", {"pattern": "x"}, {"body": "x x"}, span_field="body")

    assert keywords == [(0, 5), (10, 15)]
    assert pattern == [(2, 4), (7, 10)]
    assert field == [(0, 1), (2, 3)]
    assert _matches("span_pattern", {"pattern": "z*"}, {"text": "abc"}) == []  # empty matches


def test_span_pattern_needs_pattern_or_keywords():
    with pytest.raises(ValidationError) as both:
        config_clean("span_pattern", {"pattern": "x", "keywords": ["x"]})

    assert "config.pattern" in both.value.message_dict


# --- services ---------------------------------------------------------------------------------


def test_rule_create_checks_label_kind_and_config(project):
    with pytest.raises(ValidationError) as error:
        _rule(project, "", "span_pattern", "neutral", {"pattern": "("})

    assert set(error.value.message_dict) == {"name", "kind", "label"}

    with pytest.raises(ValidationError) as config_error:
        _rule(project, "Bad", "regex", "positive", {"pattern": "(a|aa)+$"})

    assert "config.pattern" in config_error.value.message_dict


def test_rule_changes_queue_a_run_on_commit(project, django_capture_on_commit_callbacks):
    with (
        mock.patch.object(rules_run_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        rule = _rule(project, "Great", "keywords", "positive", {"keywords": ["great"]})

    delay.assert_called_once_with(project.pk)
    rule.refresh_from_db()
    assert rule.stats["run"]["state"] == "queued"
    assert rules_run_state(project=project)["running"] is True

    with (
        mock.patch.object(rules_run_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        rule_update(rule=rule, active=False)
        rule_delete(rule=rule)

    assert delay.call_count == 2


def test_rules_refused_for_free_text(owner):
    project = ProjectFactory(created_by=owner, task_type="free_text", labels=[])

    with pytest.raises(ValidationError) as error:
        _rule(project, "x", "keywords", "x", {"keywords": ["x"]})

    assert "kind" in error.value.message_dict


# --- runs -------------------------------------------------------------------------------------


@pytest.fixture
def constructed(project):
    """4 regular items, 2 gold items, three rules, and trusted consensus on 3 items."""
    items = [
        ItemFactory(project=project, data={"text": "A great movie", "stars": 5}),
        ItemFactory(project=project, data={"text": "Great but awful ending", "stars": 2}),
        ItemFactory(project=project, data={"text": "Awful.", "stars": 1}),
        ItemFactory(project=project, data={"text": "Nothing to say", "stars": 4}),
    ]
    gold = [
        ItemFactory(
            project=project, data={"text": "great stuff", "stars": 5}, gold={"label": "positive"}
        ),
        ItemFactory(
            project=project, data={"text": "great, awful", "stars": 1}, gold={"label": "negative"}
        ),
    ]
    now = timezone.now()
    for item, label, state in [
        (items[0], "positive", ItemScore.State.CONFIDENT),
        (items[1], "negative", ItemScore.State.CONFIDENT),
        (items[2], "negative", ItemScore.State.OPEN),  # not trusted
        (items[3], "negative", ItemScore.State.REVIEWED),
    ]:
        ItemScore.objects.create(
            item=item, project=project, label=label, state=state, computed_at=now
        )
    rules = {
        "A": _rule(project, "great", "keywords", "positive", {"keywords": ["great"]}),
        "B": _rule(project, "awful", "regex", "negative", {"pattern": r"(?i)\bawful\b"}),
        "C": _rule(
            project,
            "stars",
            "field",
            "positive",
            {"field": "stars", "operator": "greater_than", "value": 3},
        ),
    }
    return items, gold, rules


def test_run_writes_exact_stats(project, constructed):
    _items, _gold, rules = constructed

    rules_run(project=project)

    a, b, c = (LabelingRule.objects.get(pk=rules[key].pk) for key in "ABC")
    assert a.stats["coverage"] == 0.5
    assert a.stats["covered"] == 2
    assert a.stats["items"] == 4
    assert a.stats["overlaps"] == 1.0
    assert a.stats["conflicts"] == 0.5
    assert a.stats["accuracy_gold"] == {"value": 0.5, "n": 2}
    assert a.stats["accuracy_consensus"] == {"value": 0.5, "n": 2}
    assert (b.stats["coverage"], b.stats["overlaps"], b.stats["conflicts"]) == (0.5, 0.5, 0.5)
    assert b.stats["accuracy_gold"] == {"value": 1.0, "n": 1}
    assert b.stats["accuracy_consensus"] == {"value": 1.0, "n": 1}
    assert (c.stats["coverage"], c.stats["overlaps"], c.stats["conflicts"]) == (0.5, 0.5, 0.0)
    assert c.stats["accuracy_gold"] == {"value": 1.0, "n": 1}
    assert c.stats["accuracy_consensus"] == {"value": 0.5, "n": 2}
    assert a.stats["timeouts"] == 0
    assert a.ran_at is not None
    assert a.stats["run"]["state"] == "done"


def test_run_writes_majority_prelabels_and_no_gold(project, constructed):
    items, gold, rules = constructed

    written = rules_run(project=project)

    predictions = {p.item_id: p for p in Prediction.objects.filter(project=project, source="rule")}
    assert written == 3
    assert set(predictions) == {items[0].pk, items[2].pk, items[3].pk}  # item 1 is a tie
    assert predictions[items[0].pk].value == {"label": "positive"}
    assert predictions[items[0].pk].score == 1.0
    assert predictions[items[2].pk].value == {"label": "negative"}
    assert not {g.pk for g in gold} & set(predictions)
    version = rules_version(list(LabelingRule.objects.filter(project=project, active=True)))
    assert {p.model_name for p in predictions.values()} == {"rules"}
    assert {p.model_version for p in predictions.values()} == {version}


def test_run_scores_by_share_of_agreeing_rules(project):
    item = ItemFactory(project=project, data={"text": "great good but awful"})
    _rule(project, "great", "keywords", "positive", {"keywords": ["great"]})
    _rule(project, "good", "keywords", "positive", {"keywords": ["good"]})
    _rule(project, "awful", "keywords", "negative", {"keywords": ["awful"]})

    rules_run(project=project)

    prediction = Prediction.objects.get(item=item)
    assert prediction.value == {"label": "positive"}
    assert prediction.score == pytest.approx(2 / 3)


def test_run_is_idempotent_and_follows_rule_changes(project, constructed):
    items, _gold, rules = constructed
    rules_run(project=project)
    first = sorted(Prediction.objects.filter(project=project).values_list("item_id", "value"))

    rules_run_task(project.pk)

    again = sorted(Prediction.objects.filter(project=project).values_list("item_id", "value"))
    assert again == first
    for rule in rules.values():
        rule_update(rule=rule, active=False)
    rules_run(project=project)
    assert not Prediction.objects.filter(project=project).exists()


def test_run_skips_inactive_rules(project):
    item = ItemFactory(project=project, data={"text": "great"})
    _rule(project, "great", "keywords", "positive", {"keywords": ["great"]}, active=False)

    rules_run(project=project)

    assert not Prediction.objects.filter(item=item).exists()


def test_run_times_out_a_slow_pattern_without_hanging(project):
    slow = ItemFactory(project=project, data={"text": "a" * 30000 + "!"})
    fine = ItemFactory(project=project, data={"text": "aaa"})
    # Stored directly: the service would refuse this pattern at save time.
    rule = LabelingRule.objects.create(
        project=project,
        name="slow",
        kind="regex",
        label="positive",
        config={"pattern": r"(a|aa)+$", "field": "text", "ignore_case": False},
        created_by=project.created_by,
    )
    started = time.perf_counter()

    rules_run(project=project)

    assert time.perf_counter() - started < 5
    rule.refresh_from_db()
    assert rule.stats["timeouts"] == 1
    assert rule.stats["covered"] == 1
    assert not Prediction.objects.filter(item=slow).exists()
    assert Prediction.objects.filter(item=fine).exists()


def test_run_budget_stops_a_rule(project, monkeypatch):
    for n in range(3):
        ItemFactory(project=project, data={"text": f"great {n}"})
    rule = _rule(project, "great", "keywords", "positive", {"keywords": ["great"]})
    monkeypatch.setattr(running, "RULE_SECONDS", 0.0)

    rules_run(project=project)

    rule.refresh_from_db()
    assert rule.stats["stopped"] is True
    assert rule.stats["covered"] == 1  # the first search spent the budget


def test_span_rules_emit_union_of_spans(owner):
    project = ProjectFactory(
        created_by=owner,
        task_type="spans",
        labels=SPAN_LABELS,
        task_options={"allow_overlap": False},
    )
    item = ItemFactory(project=project, data={"text": "Alice Smith works at Acme Corp."})
    gold = ItemFactory(
        project=project,
        data={"text": "Bob of Acme Corp"},
        gold={"spans": [{"start": 0, "end": 3, "label": "PER"}], "relations": []},
    )
    per = _rule(project, "people", "span_pattern", "PER", {"keywords": ["Alice Smith", "Bob"]})
    org = _rule(project, "orgs", "span_pattern", "ORG", {"pattern": r"Acme\s+Corp"})
    # Overlaps "Alice Smith": the longer span wins when overlaps are not allowed.
    _rule(project, "smith", "span_pattern", "ORG", {"pattern": "Smith"})

    rules_run(project=project)

    prediction = Prediction.objects.get(item=item)
    assert prediction.value == {
        "spans": [
            {"start": 0, "end": 11, "label": "PER"},
            {"start": 21, "end": 30, "label": "ORG"},
        ],
        "relations": [],
    }
    assert not Prediction.objects.filter(item=gold).exists()
    per.refresh_from_db()
    org.refresh_from_db()
    assert per.stats["accuracy_gold"] == {"value": 1.0, "n": 1}
    assert org.stats["accuracy_gold"] == {"value": 0.0, "n": 1}
    assert per.stats["conflicts"] == 1.0  # "Smith" (ORG) overlaps "Alice Smith" (PER)
    assert org.stats["conflicts"] == 0.0


def test_multi_label_rules_add_up(owner):
    project = ProjectFactory(created_by=owner, task_type="multi_label", labels=MULTI_LABELS)
    item = ItemFactory(project=project, data={"text": "Tasty food but pricey"})
    food = _rule(project, "food", "keywords", "food", {"keywords": ["tasty"]})
    _rule(project, "price", "keywords", "price", {"keywords": ["pricey"]})

    rules_run(project=project)

    assert Prediction.objects.get(item=item).value == {"labels": ["food", "price"]}
    food.refresh_from_db()
    assert food.stats["overlaps"] == 1.0
    assert food.stats["conflicts"] == 0.0


def test_rating_rules_emit_the_rating(owner):
    project = ProjectFactory(created_by=owner, task_type="rating", labels=[])
    item = ItemFactory(project=project, data={"text": "Five stars!"})
    _rule(project, "five", "keywords", "5", {"keywords": ["five stars"]})

    rules_run(project=project)

    assert Prediction.objects.get(item=item).value == {"rating": 5}

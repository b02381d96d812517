from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db.models import F

from annotation.models import Annotation, Item, LabelSchemaVersion
from annotation.schema import (
    annotations_current,
    operation_describe,
    schema_change_apply,
    schema_change_plan,
    schema_version_list,
)
from annotation.services import annotation_create, project_create, project_update
from annotation.task_types import TaskConfig, TaskType, task_types
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

LABELS = [
    {"value": "positive", "hotkey": "1", "colour": "#0072b2"},
    {"value": "negative", "hotkey": "2", "colour": "#d55e00"},
    {"value": "neutral", "hotkey": "3", "colour": "#009e73"},
]


def answer(item, value, author=None):
    """A stored answer, with the item's counters moved as claiming and submitting move them."""
    Item.objects.filter(pk=item.pk).update(
        slots_taken=F("slots_taken") + 1, annotation_count=F("annotation_count") + 1
    )
    return AnnotationFactory(item=item, value=value, author=author or UserFactory())


def change(project, operations, user=None, note=""):
    plan = schema_change_plan(project=project, operations=operations)
    version = schema_change_apply(
        project=project, operations=operations, token=plan.token, user=user, note=note
    )
    return plan, version


@pytest.fixture
def sentiment(owner):
    return ProjectFactory(created_by=owner, labels=[dict(label) for label in LABELS], overlap=3)


# --- Test-local task types: the stored forms of multi-label and spans ------------------------


class MultiLabelForTest(TaskType):
    key = "test_multi"
    name = "Multi label (test)"
    description = "Several labels per item."

    def value_clean(self, value: Any, *, config: TaskConfig, item_data=None) -> dict:
        labels = value.get("labels")
        if not labels or any(label not in config.label_values for label in labels):
            raise ValidationError({"value.labels": ["Unknown or no labels."]})
        if len(set(labels)) != len(labels):
            raise ValidationError({"value.labels": ["A label is chosen twice."]})
        order = config.label_values
        return {"labels": sorted(labels, key=order.index)}


class SpansForTest(TaskType):
    key = "test_spans"
    name = "Spans (test)"
    description = "Labelled character ranges."

    def value_clean(self, value: Any, *, config: TaskConfig, item_data=None) -> dict:
        spans = value["spans"]
        text = (item_data or {}).get("text")
        for index, span in enumerate(spans):
            if span["label"] not in config.label_values:
                raise ValidationError({f"value.spans[{index}].label": ["Unknown label."]})
            if text is not None and span["end"] > len(text):
                raise ValidationError({f"value.spans[{index}].end": ["Past the text."]})
        keys = [(s["start"], s["end"], s["label"]) for s in spans]
        if len(set(keys)) != len(keys):
            raise ValidationError({"value.spans": ["The same span twice."]})
        return {"spans": sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))}


class RatingForTest(TaskType):
    key = "test_rating"
    name = "Rating (test)"
    description = "A number."
    needs_labels = False

    def value_clean(self, value: Mapping[str, Any], *, config: TaskConfig, item_data=None) -> dict:
        return dict(value)


@pytest.fixture
def test_types(monkeypatch):
    registry = task_types()
    for task_type in (MultiLabelForTest(), SpansForTest(), RatingForTest()):
        monkeypatch.setitem(registry, task_type.key, task_type)


# --- Rename and merge carry answers over -----------------------------------------------------


def test_rename_maps_answers_in_place_and_keeps_the_version_they_were_made_under(sentiment, owner):
    item = ItemFactory(project=sentiment)
    pos = answer(item, {"label": "positive"})
    neg = answer(item, {"label": "negative"})

    plan, version = change(
        sentiment, [{"op": "rename", "label": "positive", "to": "good"}], user=owner
    )

    assert plan.mapping == {"positive": "good"}
    assert (plan.migrated_count, plan.superseded_count, plan.relabel_item_count) == (1, 0, 0)
    assert version.number == 2
    assert (version.migrated_count, version.superseded_count) == (1, 0)
    assert version.created_by == owner
    pos.refresh_from_db()
    neg.refresh_from_db()
    assert pos.value == {"label": "good"}
    assert (pos.schema_version, pos.superseded_at) == (1, None)
    assert neg.value == {"label": "negative"}
    sentiment.refresh_from_db()
    assert sentiment.schema_version == 2
    assert sentiment.labels[0] == {"value": "good", "hotkey": "1", "colour": "#0072b2"}
    item.refresh_from_db()
    assert (item.slots_taken, item.annotation_count) == (2, 2)


def test_merge_into_a_new_label_takes_the_first_ones_place_and_maps_both(sentiment):
    item = ItemFactory(project=sentiment)
    answer(item, {"label": "positive"})
    answer(item, {"label": "neutral"})
    answer(item, {"label": "negative"})

    plan, _version = change(
        sentiment, [{"op": "merge", "labels": ["neutral", "positive"], "into": "not negative"}]
    )

    assert plan.mapping == {"positive": "not negative", "neutral": "not negative"}
    assert [label["value"] for label in plan.labels] == ["not negative", "negative"]
    assert plan.labels[0]["hotkey"] == "1"
    values = sorted(a.value["label"] for a in Annotation.objects.filter(item=item))
    assert values == ["negative", "not negative", "not negative"]


def test_merge_into_an_existing_label_keeps_that_label(sentiment):
    item = ItemFactory(project=sentiment)
    answer(item, {"label": "neutral"})

    plan, _version = change(
        sentiment, [{"op": "merge", "labels": ["neutral", "positive"], "into": "positive"}]
    )

    assert plan.mapping == {"neutral": "positive"}
    assert [label["value"] for label in plan.labels] == ["positive", "negative"]
    assert Annotation.objects.get(item=item).value == {"label": "positive"}


def test_chained_operations_map_from_the_original_labels(sentiment):
    plan = schema_change_plan(
        project=sentiment,
        operations=[
            {"op": "rename", "label": "positive", "to": "good"},
            {"op": "merge", "labels": ["good", "neutral"], "into": "fine"},
            {"op": "add", "label": {"value": "positive"}},
        ],
    )

    assert plan.mapping == {"positive": "fine", "neutral": "fine"}
    assert [label["value"] for label in plan.labels] == ["fine", "negative", "positive"]
    assert plan.labels[2]["hotkey"] == "3"  # the first key no other label uses


# --- Split and retire send items back ---------------------------------------------------------


def test_split_supersedes_its_answers_and_reopens_their_items(sentiment):
    first, second = ItemFactory(project=sentiment), ItemFactory(project=sentiment)
    lost = [answer(first, {"label": "neutral"}), answer(first, {"label": "neutral"})]
    kept = answer(first, {"label": "positive"})
    answer(second, {"label": "negative"})

    plan, version = change(
        sentiment, [{"op": "split", "label": "neutral", "into": ["mixed", "off-topic"]}]
    )

    assert plan.mapping == {"neutral": None}
    assert [label["value"] for label in plan.labels] == [
        "positive",
        "negative",
        "mixed",
        "off-topic",
    ]
    assert (plan.migrated_count, plan.superseded_count, plan.relabel_item_count) == (0, 2, 1)
    assert version.superseded_count == 2
    for annotation in lost:
        annotation.refresh_from_db()
        assert annotation.superseded_at is not None
        assert annotation.value == {"label": "neutral"}  # kept for the record
    kept.refresh_from_db()
    assert kept.superseded_at is None
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.slots_taken, first.annotation_count) == (1, 1)
    assert (second.slots_taken, second.annotation_count) == (1, 1)
    current = annotations_current(Annotation.objects.filter(project=sentiment))
    assert set(current) == {kept, *Annotation.objects.filter(item=second)}


def test_retire_never_lowers_counters_below_zero(sentiment):
    item = ItemFactory(project=sentiment)
    AnnotationFactory(item=item, value={"label": "neutral"})  # counters never moved

    plan, _version = change(sentiment, [{"op": "retire", "label": "neutral"}])

    assert plan.superseded_count == 1
    item.refresh_from_db()
    assert (item.slots_taken, item.annotation_count) == (0, 0)


def test_answers_already_superseded_are_left_alone(sentiment):
    item = ItemFactory(project=sentiment)
    answer(item, {"label": "neutral"})
    change(sentiment, [{"op": "retire", "label": "positive"}])
    change(sentiment, [{"op": "add", "label": {"value": "positive"}}])

    plan, _version = change(sentiment, [{"op": "retire", "label": "neutral"}])
    second = schema_change_plan(
        project=sentiment, operations=[{"op": "rename", "label": "negative", "to": "bad"}]
    )

    assert plan.superseded_count == 1
    assert second.superseded_count == second.migrated_count == 0
    item.refresh_from_db()
    assert item.annotation_count == 0


# --- Gold -------------------------------------------------------------------------------------


def test_gold_answers_are_relabelled_or_their_items_retired(sentiment):
    renamed = ItemFactory(project=sentiment, gold={"label": "positive"})
    lost = ItemFactory(project=sentiment, gold={"label": "neutral"})
    untouched = ItemFactory(project=sentiment, gold={"label": "negative"})

    plan, _version = change(
        sentiment,
        [
            {"op": "rename", "label": "positive", "to": "good"},
            {"op": "retire", "label": "neutral"},
        ],
    )

    assert plan.gold_mapped_count == 1
    assert plan.gold_lost_item_ids == [lost.pk]
    for item in (renamed, lost, untouched):
        item.refresh_from_db()
    assert (renamed.gold, renamed.gold_retired) == ({"label": "good"}, False)
    assert (lost.gold, lost.gold_retired) == ({"label": "neutral"}, True)
    assert (untouched.gold, untouched.gold_retired) == ({"label": "negative"}, False)


# --- The token ---------------------------------------------------------------------------------


def test_apply_refuses_a_token_of_another_plan(sentiment):
    item = ItemFactory(project=sentiment)
    answer(item, {"label": "neutral"})
    other = schema_change_plan(
        project=sentiment, operations=[{"op": "rename", "label": "neutral", "to": "meh"}]
    )

    with pytest.raises(ValidationError) as caught:
        schema_change_apply(
            project=sentiment,
            operations=[{"op": "retire", "label": "neutral"}],
            token=other.token,
            user=None,
        )

    assert "token" in caught.value.message_dict
    assert LabelSchemaVersion.objects.filter(project=sentiment).count() == 0
    assert Annotation.objects.get(item=item).superseded_at is None


def test_apply_refuses_a_preview_made_before_someone_else_changed_the_schema(sentiment):
    operations = [{"op": "rename", "label": "neutral", "to": "meh"}]
    stale = schema_change_plan(project=sentiment, operations=operations)
    change(sentiment, [{"op": "add", "label": {"value": "spam"}}])

    with pytest.raises(ValidationError) as caught:
        schema_change_apply(project=sentiment, operations=operations, token=stale.token, user=None)

    assert "token" in caught.value.message_dict


def test_confirming_the_same_plan_twice_makes_one_version(sentiment):
    operations = [{"op": "retire", "label": "neutral"}]
    plan = schema_change_plan(project=sentiment, operations=operations)
    schema_change_apply(project=sentiment, operations=operations, token=plan.token, user=None)

    with pytest.raises(ValidationError):
        schema_change_apply(project=sentiment, operations=operations, token=plan.token, user=None)

    assert LabelSchemaVersion.objects.filter(project=sentiment).count() == 1


def test_the_token_is_stable_for_the_same_plan(sentiment):
    operations = [{"op": "rename", "label": "neutral", "to": "meh"}]

    first = schema_change_plan(project=sentiment, operations=operations)
    again = schema_change_plan(project=sentiment, operations=operations)

    assert first.token == again.token
    assert len(first.token) == 64


# --- Other labelled types through relabel -----------------------------------------------------


def test_multi_label_answers_merge_to_one_label_and_retired_ones_are_superseded(owner, test_types):
    project = ProjectFactory(
        created_by=owner, task_type="test_multi", labels=[dict(label) for label in LABELS]
    )
    item = ItemFactory(project=project)
    both = answer(item, {"labels": ["positive", "neutral"]})
    with_negative = answer(item, {"labels": ["positive", "negative"]})

    plan, _version = change(
        project,
        [
            {"op": "merge", "labels": ["positive", "neutral"], "into": "positive"},
            {"op": "retire", "label": "negative"},
        ],
    )

    assert (plan.migrated_count, plan.superseded_count) == (1, 1)
    both.refresh_from_db()
    with_negative.refresh_from_db()
    assert both.value == {"labels": ["positive"]}
    assert both.superseded_at is None
    assert with_negative.superseded_at is not None


def test_span_answers_are_renamed_and_ones_a_merge_makes_duplicate_are_superseded(
    owner, test_types
):
    project = ProjectFactory(
        created_by=owner, task_type="test_spans", labels=[dict(label) for label in LABELS]
    )
    item = ItemFactory(project=project, data={"text": "Great food, slow service."})
    spans = [
        {"start": 0, "end": 5, "label": "positive"},
        {"start": 12, "end": 24, "label": "negative"},
    ]
    renamed = answer(item, {"spans": spans, "relations": []})
    clash = answer(
        item,
        {
            "spans": [
                {"start": 0, "end": 5, "label": "neutral"},
                {"start": 0, "end": 5, "label": "positive"},
            ],
            "relations": [],
        },
    )

    plan, _version = change(
        project,
        [
            {"op": "rename", "label": "negative", "to": "complaint"},
            {"op": "merge", "labels": ["neutral", "positive"], "into": "praise"},
        ],
    )

    assert (plan.migrated_count, plan.superseded_count) == (1, 1)
    renamed.refresh_from_db()
    clash.refresh_from_db()
    assert [span["label"] for span in renamed.value["spans"]] == ["praise", "complaint"]
    assert clash.superseded_at is not None


def test_types_without_labels_refuse_schema_changes(owner, test_types):
    project = ProjectFactory(created_by=owner, task_type="test_rating", labels=[])

    with pytest.raises(ValidationError) as caught:
        schema_change_plan(project=project, operations=[{"op": "add", "label": "x"}])

    assert "no labels" in caught.value.message_dict["operations"][0]


# --- Validation of operations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operations", "key"),
    [
        ([], "operations"),
        ("rename", "operations"),
        ([{"op": "explode", "label": "positive"}], "operations[0].op"),
        ([{"op": "rename", "label": "positive"}], "operations[0].to"),
        ([{"op": "rename", "label": "unknown", "to": "x"}], "operations[0].label"),
        (
            [{"op": "add", "label": "x"}, {"op": "rename", "label": "x", "to": "negative"}],
            "operations[1].to",
        ),
        ([{"op": "merge", "labels": ["positive"], "into": "x"}], "operations[0].labels"),
        ([{"op": "merge", "labels": ["positive", "nope"], "into": "x"}], "operations[0].labels[1]"),
        ([{"op": "split", "label": "neutral", "into": ["a"]}], "operations[0].into"),
        ([{"op": "split", "label": "neutral", "into": ["a", "positive"]}], "operations[0].into[1]"),
        ([{"op": "retire", "label": "neutral", "extra": 1}], "operations[0].extra"),
        ([{"op": "edit", "label": "positive", "hotkey": "2"}], "labels[1]"),
        ([{"op": "edit", "label": "positive", "colour": "red"}], "labels[0]"),
        (
            [{"op": "retire", "label": v} for v in ("positive", "negative", "neutral")],
            "labels",
        ),
    ],
)
def test_plan_names_the_bad_operation_field(sentiment, operations, key):
    with pytest.raises(ValidationError) as caught:
        schema_change_plan(project=sentiment, operations=operations)

    assert key in caught.value.message_dict


def test_edit_changes_only_hotkeys_and_colours_and_migrates_nothing(sentiment):
    item = ItemFactory(project=sentiment)
    answer(item, {"label": "positive"})

    plan, version = change(
        sentiment,
        [
            {"op": "edit", "label": "positive", "hotkey": "2"},
            {"op": "edit", "label": "negative", "hotkey": "1", "colour": "#112233"},
        ],
    )

    assert plan.mapping == {}
    assert (version.migrated_count, version.superseded_count) == (0, 0)
    sentiment.refresh_from_db()
    assert [(lb["hotkey"], lb["colour"]) for lb in sentiment.labels[:2]] == [
        ("2", "#0072b2"),
        ("1", "#112233"),
    ]


# --- History ----------------------------------------------------------------------------------


def test_history_lists_every_version_newest_first_with_its_record(owner):
    project = project_create(user=owner, name="P", labels=["good", "bad"])
    item = ItemFactory(project=project)
    answer(item, {"label": "bad"})
    change(project, [{"op": "rename", "label": "bad", "to": "poor"}], user=owner, note="Kinder")
    change(project, [{"op": "retire", "label": "poor"}], user=owner)

    versions = list(schema_version_list(project))

    assert [v.number for v in versions] == [3, 2, 1]
    assert versions[1].mapping == {"bad": "poor"}
    assert versions[1].note == "Kinder"
    assert versions[1].operations == [{"op": "rename", "label": "bad", "to": "poor"}]
    assert versions[0].mapping == {"poor": None}
    assert (versions[0].migrated_count, versions[0].superseded_count) == (0, 1)
    assert [label["value"] for label in versions[0].labels] == ["good"]
    assert operation_describe(versions[1].operations[0]) == "Rename bad to poor"


def test_answers_made_after_a_change_carry_the_new_version(owner):
    project = project_create(user=owner, name="P", labels=["good", "bad"])
    change(project, [{"op": "rename", "label": "bad", "to": "poor"}])
    item = ItemFactory(project=project, slots_taken=1)  # claimed

    made = annotation_create(item=item, author=owner, value={"label": "poor"}, duration_ms=10)

    assert made.schema_version == 2


# --- Project settings -------------------------------------------------------------------------


def test_settings_adding_a_label_once_answers_exist_makes_a_new_version(sentiment):
    answer(ItemFactory(project=sentiment), {"label": "positive"})

    project_update(
        project=sentiment,
        labels=[
            {"value": "positive", "hotkey": "1"},
            {"value": "negative", "hotkey": "2"},
            {"value": "neutral", "hotkey": "3"},
            {"value": "spam", "hotkey": "x"},
        ],
    )

    sentiment.refresh_from_db()
    version = LabelSchemaVersion.objects.get(project=sentiment)
    assert sentiment.schema_version == version.number == 2
    assert version.operations == [
        {"op": "add", "label": {"value": "spam", "hotkey": "x", "colour": "#cc79a7"}}
    ]
    assert sentiment.labels[0]["colour"] == "#0072b2"  # left out by the form: kept
    assert sentiment.labels == version.labels


def test_settings_saving_the_same_labels_makes_no_version(sentiment):
    answer(ItemFactory(project=sentiment), {"label": "positive"})

    project_update(project=sentiment, name="Renamed", labels=[dict(lb) for lb in LABELS])

    assert not LabelSchemaVersion.objects.filter(project=sentiment).exists()


def test_settings_refuse_renames_and_point_to_the_labels_page(sentiment):
    answer(ItemFactory(project=sentiment), {"label": "positive"})

    with pytest.raises(ValidationError) as caught:
        project_update(project=sentiment, labels=[{"value": "good"}, {"value": "negative"}])

    message = caught.value.message_dict["labels"][0]
    assert f"/projects/{sentiment.pk}/labels/" in message
    assert "positive" in message


# --- Scale ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_apply_writes_in_batches_not_per_answer(sentiment, django_assert_max_num_queries):
    items = Item.objects.bulk_create(
        Item(
            project=sentiment,
            data={"text": f"t{n}"},
            content_hash=f"h{n}",
            target=3,
            slots_taken=3,
            annotation_count=3,
        )
        for n in range(3000)
    )
    author = UserFactory()
    labels = ("positive", "negative", "neutral")
    Annotation.objects.bulk_create(
        Annotation(project=sentiment, item=item, author=author, value={"label": labels[k]})
        for item in items
        for k in range(3)
    )
    operations = [
        {"op": "rename", "label": "positive", "to": "good"},
        {"op": "retire", "label": "neutral"},
    ]
    plan = schema_change_plan(project=sentiment, operations=operations)

    with django_assert_max_num_queries(40):
        schema_change_apply(project=sentiment, operations=operations, token=plan.token, user=None)

    assert Annotation.objects.filter(value={"label": "good"}).count() == 3000
    assert Annotation.objects.filter(superseded_at__isnull=False).count() == 3000
    assert set(Item.objects.values_list("slots_taken", "annotation_count")) == {(2, 2)}

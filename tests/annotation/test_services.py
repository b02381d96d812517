from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Item, ProjectMember
from annotation.services import labels_clean, project_create, project_update
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_labels_clean_fills_default_hotkeys_and_colours_and_accepts_plain_strings():
    cleaned = labels_clean(
        ["yes", {"value": " no ", "hotkey": "N", "colour": "#AA3377"}, {"value": "maybe"}]
    )

    assert cleaned == [
        {"value": "yes", "hotkey": "1", "colour": "#0072b2"},
        {"value": "no", "hotkey": "n", "colour": "#aa3377"},
        {"value": "maybe", "hotkey": "3", "colour": "#009e73"},
    ]


def test_labels_clean_refuses_a_colour_that_is_not_hex_and_allows_no_labels_when_optional():
    with pytest.raises(ValidationError) as error:
        labels_clean([{"value": "yes", "colour": "red"}])
    assert "labels[0]" in error.value.message_dict
    assert labels_clean([], required=False) == []


@pytest.mark.parametrize(
    ("labels", "key"),
    [
        ([], "labels"),
        ([{"value": "a"}, {"value": "a"}], "labels[1]"),
        ([{"value": "a", "hotkey": "s"}], "labels[0]"),
        ([{"value": "a", "hotkey": "2"}, {"value": "b", "hotkey": "2"}], "labels[1]"),
        ([{"value": ""}], "labels[0]"),
    ],
)
def test_labels_clean_names_the_bad_label(labels, key):
    with pytest.raises(ValidationError) as caught:
        labels_clean(labels)

    assert list(caught.value.message_dict) == [key]


def test_project_create_makes_the_creator_owner():
    user = UserFactory(username="creator")

    project = project_create(user=user, name="New", labels=["a", "b"], overlap=2)

    member = ProjectMember.objects.get(project=project)
    assert (member.user, member.role) == (user, ProjectMember.Role.OWNER)
    assert project.label_values == ["a", "b"]


def test_project_create_refuses_unknown_fields():
    with pytest.raises(ValidationError) as caught:
        project_create(user=UserFactory(), name="New", labels=["a"], created_by=None)

    assert list(caught.value.message_dict) == ["created_by"]


def test_project_update_overlap_retargets_regular_items_but_never_below_taken(project):
    busy = ItemFactory(project=project)
    Item.objects.filter(pk=busy.pk).update(slots_taken=3)
    idle = ItemFactory(project=project)
    gold = ItemFactory(project=project, gold={"label": "positive"})

    project_update(project=project, overlap=2)

    targets = dict(Item.objects.values_list("id", "target"))
    assert targets == {busy.pk: 3, idle.pk: 2, gold.pk: 3}


def test_project_update_keeps_labels_in_use_but_allows_new_ones(project):
    AnnotationFactory(item=ItemFactory(project=project), value={"label": "positive"})

    project_update(project=project, labels=[*project.labels, {"value": "mixed"}])
    with pytest.raises(ValidationError) as caught:
        project_update(project=project, labels=[{"value": "negative"}])

    assert "labels" in caught.value.message_dict
    project.refresh_from_db()
    assert project.label_values == ["positive", "negative", "mixed"]


def test_project_update_refuses_a_new_task_type(project):
    with pytest.raises(ValidationError) as caught:
        project_update(project=project, task_type="multi_label")

    assert list(caught.value.message_dict) == ["task_type"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("overlap", 0), ("overlap", 51), ("gold_ratio", 0.9), ("reservation_timeout_seconds", 5)],
)
def test_project_create_names_the_field_out_of_range(owner, field, value):
    fields = {"name": "P", "labels": ["a", "b"], field: value}

    with pytest.raises(ValidationError) as error:
        project_create(user=owner, **fields)

    assert list(error.value.message_dict) == [field]

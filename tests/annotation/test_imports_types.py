"""Imports of every task type: rows checked by the type, gold in its stored form, duplicate keys.

The types used here are small stand-ins written to the stored forms of the contract (see
/work/shared and annotation.task_types.base), registered for the test only, so the import's
behaviour is pinned whatever the real modules add on top.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from annotation.imports import import_job_create
from annotation.imports.parsing import content_hash, data_hash
from annotation.models import ImportJob, Item
from annotation.task_types import TaskConfig, TaskType, task_config_of, task_types
from annotation.task_types._common import item_media_clean
from tests.annotation.test_imports import errors_of, jsonl, run, upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


class MultiLabel(TaskType):
    key = "multi_label"
    name = "Multi label (test)"
    media = ("text", "image")

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        return item_media_clean(data, media=self.media)

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        labels = value.get("labels") if isinstance(value, dict) else None
        if not isinstance(labels, list):
            raise ValidationError({"value.labels": ["A list of labels."]})
        for index, label in enumerate(labels):
            if label not in config.label_values:
                raise ValidationError({f"value.labels[{index}]": [f"Unknown label {label!r}."]})
        return {"labels": [label for label in config.label_values if label in labels]}


class Pairwise(TaskType):
    key = "pairwise"
    name = "Pairwise (test)"
    media = ("text", "image")
    needs_labels = False
    image_keys = ("image_a", "image_b")

    def item_columns(self, config: TaskConfig) -> tuple[str, ...]:
        return ("a", "b", "image_a", "image_b", "prompt")

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        if not isinstance(data, dict):
            raise ValidationError({"data": ["An object."]})
        keys = ("image_a", "image_b") if "image_a" in data or "image_b" in data else ("a", "b")
        for key in keys:
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ValidationError({f"data.{key}": [f"'{key}' must be a non-empty string."]})
        return data

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        choice = value.get("choice") if isinstance(value, dict) else None
        if choice not in ("A", "B", "tie"):
            raise ValidationError({"value.choice": ["Choose A, B or tie."]})
        return {"choice": choice}


@pytest.fixture
def as_type(project, monkeypatch):
    """Turn the project into one of the stand-in types."""

    def switch(task_type: TaskType):
        monkeypatch.setitem(task_types(), task_type.key, task_type)
        project.task_type = task_type.key
        project.save(update_fields=["task_type"])
        return project

    return switch


# --- Single label: unchanged ------------------------------------------------------------------


def test_single_label_text_rows_keep_their_data_gold_and_text_hash(project, owner):
    content = jsonl({"text": "Fine", "n": 1}, {"text": "Bad", "gold": "negative"})

    job = run(project, owner, "a.jsonl", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    fine, bad = Item.objects.filter(project=project).order_by("id")
    assert (fine.data, fine.gold, fine.content_hash) == (
        {"text": "Fine", "n": 1},
        None,
        content_hash("Fine"),
    )
    assert (bad.data, bad.gold, bad.is_gold) == ({"text": "Bad"}, {"label": "negative"}, True)


def test_single_label_image_items_by_url_from_csv_and_jsonl(project, owner):
    csv_file = "image,width,height,gold\nhttps://example.org/a.png,640,480,positive\n"
    json_file = jsonl({"image": "https://example.org/b.png", "width": 10, "height": 20})

    first = run(project, owner, "a.csv", csv_file)
    second = run(project, owner, "b.jsonl", json_file)

    assert (first.status, second.status) == ("succeeded", "succeeded"), first.errors + second.errors
    a, b = Item.objects.filter(project=project).order_by("id")
    assert a.data == {"image": "https://example.org/a.png", "width": 640, "height": 480}
    assert a.gold == {"label": "positive"}
    assert a.content_hash == data_hash(a.data)
    assert b.data == {"image": "https://example.org/b.png", "width": 10, "height": 20}


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("e.jsonl", '{"image": "https://x.org/a.png", "width": 0}\n', [(1, "width")]),
        ("e.jsonl", '{"image": ""}\n', [(1, "image")]),
        ("e.jsonl", '{"image": "items/999/abc.png"}\n', [(1, "image")]),
        ("e.jsonl", '{"image": "/etc/passwd"}\n', [(1, "image")]),
        ("e.csv", "image,height\nhttps://x.org/a.png,tall\n", [(2, "height")]),
        ("e.csv", "caption\nhello\n", [(1, "text")]),
    ],
)
def test_image_rows_are_checked_by_the_type_naming_line_and_column(
    project, owner, name, content, expected
):
    job = run(project, owner, name, content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == expected
    assert Item.objects.count() == 0


def test_image_items_collapse_on_their_canonical_data(project, owner):
    # Same data, other key order and a decomposed "é": one item. The text rule is untouched.
    content = (
        '{"image": "https://x.org/caf\\u00e9.png", "width": 5, "height": 5}\n'
        '{"height": 5, "width": 5, "image": "https://x.org/cafe\\u0301.png"}\n'
        '{"image": "https://x.org/other.png"}\n'
    )

    job = run(project, owner, "dup.jsonl", content)

    assert (job.created_count, job.duplicate_count) == (2, 1), job.errors
    canonical = json.dumps(
        {"height": 5, "image": "https://x.org/café.png", "width": 5},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    first = Item.objects.filter(project=project).order_by("id").first()
    assert first.content_hash == hashlib.sha256(canonical.encode()).hexdigest()


# --- Multi label: gold is an answer object -----------------------------------------------------


def test_multi_label_gold_is_an_answer_object_stored_in_its_cleaned_form(project, owner, as_type):
    as_type(MultiLabel())
    content = jsonl(
        {"text": "both", "gold": {"labels": ["negative", "positive"]}},
        {"text": "none"},
    )
    csv_content = 'text,gold\nfrom csv,"{""labels"": [""negative""]}"\n'

    job = run(project, owner, "m.jsonl", content)
    csv_job = run(project, owner, "m.csv", csv_content)

    assert job.status == csv_job.status == ImportJob.Status.SUCCEEDED, job.errors + csv_job.errors
    both, none, from_csv = Item.objects.filter(project=project).order_by("id")
    assert (both.gold, both.is_gold) == ({"labels": ["positive", "negative"]}, True)
    assert (none.gold, none.is_gold) == (None, False)
    assert from_csv.gold == {"labels": ["negative"]}
    assert from_csv.data == {"text": "from csv"}


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "g.jsonl",
            '{"text": "a", "gold": {"labels": ["positive", "meh"]}}\n',
            (1, "gold.labels[1]"),
        ),
        ("g.jsonl", '{"text": "a", "gold": "positive"}\n', (1, "gold")),
        ("g.jsonl", '{"text": "a", "gold": {"label": "positive"}}\n', (1, "gold.labels")),
        ("g.csv", "text,gold\na,positive\n", (2, "gold")),
        ("g.csv", 'text,gold\na,"{""labels"": [""x""]}"\n', (2, "gold.labels[0]")),
    ],
)
def test_multi_label_bad_gold_names_line_and_answer_field(
    project, owner, as_type, name, content, expected
):
    as_type(MultiLabel())

    job = run(project, owner, name, content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == [expected]
    assert Item.objects.count() == 0


# --- Pairwise: a pair of texts or image URLs ----------------------------------------------------


def test_pairwise_text_pairs_import_with_gold_and_a_canonical_key(project, owner, as_type):
    as_type(Pairwise())
    content = 'A,B,prompt,gold\nfirst,second,Which is better?,"{""choice"": ""A""}"\n'

    job = run(project, owner, "p.csv", content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    item = Item.objects.get(project=project)
    assert item.data == {"a": "first", "b": "second", "prompt": "Which is better?"}
    assert item.gold == {"choice": "A"}
    assert item.content_hash == data_hash(item.data)


def test_pairwise_duplicates_are_found_by_the_whole_pair(project, owner, as_type):
    as_type(Pairwise())
    content = jsonl({"a": "x", "b": "y"}, {"b": "y", "a": "x"}, {"a": "y", "b": "x"})

    job = run(project, owner, "p.jsonl", content)

    assert (job.created_count, job.duplicate_count) == (2, 1), job.errors


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": "x"}\n', [(1, "b")]),
        ('{"image_a": "https://x.org/1.png", "image_b": ""}\n', [(1, "image_b")]),
        ('{"a": "x", "b": "y", "gold": {"choice": "C"}}\n', [(1, "gold.choice")]),
        ('{"b": "y", "gold": {"choice": "C"}}\n', [(1, "a"), (1, "gold.choice")]),
    ],
)
def test_pairwise_bad_rows_name_line_and_field(project, owner, as_type, content, expected):
    as_type(Pairwise())

    job = run(project, owner, "p.jsonl", content)

    assert job.status == ImportJob.Status.FAILED
    assert errors_of(job) == expected


def test_a_zip_is_refused_for_a_text_only_type(project, owner, monkeypatch):
    class TextOnly(MultiLabel):
        key = "spans"
        media = ("text",)

    monkeypatch.setitem(task_types(), "spans", TextOnly())
    project.task_type = "spans"
    project.save(update_fields=["task_type"])

    with pytest.raises(ValidationError) as caught:
        import_job_create(project=project, user=owner, uploaded_file=upload("a.zip", b"PK"))

    assert "texts" in caught.value.message_dict["file"][0]


# --- The real type modules -----------------------------------------------------------------------

REAL_ROWS = [
    ("multi_label", {}, {"text": "t"}, {"labels": ["negative", "positive"]}, "gold.labels[0]"),
    ("rating", {"scale_min": 1, "scale_max": 5}, {"text": "t"}, {"rating": 4}, "gold.rating"),
    ("free_text", {}, {"text": "t"}, {"text": "  an answer "}, "gold.text"),
    (
        "spans",
        {"field": "body"},
        {"body": "New York is big"},
        {"spans": [{"start": 0, "end": 8, "label": "positive"}], "relations": []},
        "gold.spans",
    ),
    (
        "boxes",
        {},
        {"image": "https://x.org/a.png", "width": 100, "height": 50},
        {"boxes": [{"x": 1, "y": 2, "w": 10, "h": 5, "label": "negative"}]},
        "gold.boxes",
    ),
    ("pairwise", {}, {"a": "one", "b": "two"}, {"choice": "B"}, "gold.choice"),
]


@pytest.mark.parametrize(
    ("key", "options", "data", "gold", "bad_field"),
    REAL_ROWS,
    ids=[row[0] for row in REAL_ROWS],
)
def test_real_types_import_items_and_gold_and_name_bad_gold(
    project, owner, key, options, data, gold, bad_field
):
    if key not in task_types():
        pytest.skip(f"no {key} module in this tree")
    task_type = task_types()[key]
    project.task_type = key
    project.task_options = task_type.options_clean(options, labels=project.labels)
    project.save(update_fields=["task_type", "task_options"])
    bad = dict.fromkeys(gold, 12345)
    other = {name: value + "?" if isinstance(value, str) else value for name, value in data.items()}

    job = run(project, owner, "r.jsonl", jsonl({**data, "gold": gold}, {**other, "x": 1}))
    failed = run(project, owner, "bad.jsonl", jsonl({**data, "gold": bad}))

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    with_gold, plain = Item.objects.filter(project=project).order_by("id")
    config = task_config_of(project)
    assert with_gold.gold == task_type.value_clean(gold, config=config, item_data=data)
    assert with_gold.data == data
    assert plain.gold is None
    assert failed.status == ImportJob.Status.FAILED
    assert errors_of(failed)[0][:1] == (1,)
    assert errors_of(failed)[0][1].startswith(bad_field.split("[")[0].split(".")[0])

"""The quality engine and releases across task types: categorical types other than single label
go through truth inference on their own category key; structured types use their consensus rule;
answers superseded by a label schema change never count; releases carry each type's export forms.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import spacy
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotation
from quality.models import ItemScore, ProjectScore
from quality.releases import release_build, release_file_open
from quality.services.recompute import quality_recompute
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = pytest.mark.django_db

SPAN_LABELS = [
    {"value": "PERSON", "hotkey": "p", "colour": "#0072b2"},
    {"value": "PLACE", "hotkey": "l", "colour": "#d55e00"},
]


def _item(project, data, **kwargs):
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return ItemFactory(project=project, data=data, content_hash=digest, **kwargs)


def _answer(item, worker, value):
    return AnnotationFactory(item=item, author=worker, value=value)


def test_rating_projects_infer_on_the_rating_and_superseded_answers_do_not_count():
    project = ProjectFactory(task_type="rating", labels=[], task_options={})
    workers = UserFactory.create_batch(3)
    item = _item(project, {"text": "How helpful was this answer?"})
    for worker, rating in zip(workers, [4, 4, 2], strict=True):
        _answer(item, worker, {"rating": rating})
    stale = _answer(item, UserFactory(), {"rating": 1})
    Annotation.objects.filter(pk=stale.pk).update(superseded_at=timezone.now())

    quality_recompute(project=project)

    score = ItemScore.objects.get(item=item)
    assert score.label == "4"
    assert score.annotation_count == 3  # the superseded answer is not one of them
    assert set(score.posterior) == {"1", "2", "3", "4", "5"}


def test_pairwise_projects_infer_on_the_choice():
    project = ProjectFactory(task_type="pairwise", labels=[], task_options={})
    workers = UserFactory.create_batch(3)
    item = _item(project, {"a": "Paris is in France.", "b": "Paris is in Spain."})
    for worker, choice in zip(workers, ["A", "A", "B"], strict=True):
        _answer(item, worker, {"choice": choice})

    quality_recompute(project=project)

    assert ItemScore.objects.get(item=item).label == "A"


def test_free_text_consensus_is_the_types_rule_with_its_agreement_figures():
    project = ProjectFactory(task_type="free_text", labels=[], task_options={}, overlap=3)
    workers = UserFactory.create_batch(3)
    agreed = _item(project, {"text": "Transcribe: the receipt total"})
    split = _item(project, {"text": "Transcribe: the street name"})
    for worker, text in zip(workers, ["Total 12.50", "total  12.50", "Total 12.80"], strict=True):
        _answer(agreed, worker, {"text": text})
    for worker, text in zip(workers, ["Elm St", "Oak Ave", "Pine Rd"], strict=True):
        _answer(split, worker, {"text": text})

    quality_recompute(project=project)

    first, second = ItemScore.objects.get(item=agreed), ItemScore.objects.get(item=split)
    assert first.value is not None
    assert first.value["text"].casefold() == "total 12.50"
    assert first.confidence == pytest.approx(2 / 3, abs=1e-4)
    assert first.method == "type_rule"
    assert second.value is None
    assert second.state != ItemScore.State.CONFIDENT
    details = ProjectScore.objects.get(project=project).details
    assert details["method"] == "type_rule"
    assert 0 < details["type_agreement"]["exact_match"] < 1
    # A second run with nothing new writes no item score again.
    before = list(ItemScore.objects.order_by("item_id").values_list("computed_at", flat=True))
    quality_recompute(project=project)
    after = list(ItemScore.objects.order_by("item_id").values_list("computed_at", flat=True))
    assert before == after


def test_a_spans_release_ships_json_values_and_loads_in_spacy(media_root):
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, task_type="spans", labels=SPAN_LABELS)
    text = "Ada Lovelace lived in London ."
    item = _item(project, {"text": text})
    person = {"start": 0, "end": 12, "label": "PERSON"}
    place = {"start": 22, "end": 28, "label": "PLACE"}
    for spans in ([person, place], [person, place], [person]):
        _answer(item, UserFactory(), {"spans": spans, "relations": []})
    release = make_release(project, owner)

    release = release_build(release=release)

    assert release.status == "ready", release.error
    formats = {record.format for record in release.files.all()}
    assert {"jsonl", "csv", "spacy", "conll", "manifest"} <= formats
    row = json.loads(default_storage.open(release.files.get(format="jsonl").path).read())
    assert row["value"]["spans"] == [person, place]
    assert row["label"]  # the summary of the value
    download = release_file_open(release=release, fmt="spacy")
    line = json.loads(download.file.read().decode().splitlines()[0])
    download.file.close()
    assert download.filename.endswith("-v1-spans.spacy.jsonl")
    doc = spacy.blank("en")(line["text"])
    entities = [doc.char_span(s["start"], s["end"], label=s["label"]) for s in line["spans"]]
    assert [(e.text, e.label_) for e in entities] == [
        ("Ada Lovelace", "PERSON"),
        ("London", "PLACE"),
    ]
    manifest = release.manifest
    assert manifest["label_distribution"]["consensus"] == {"PERSON": 1, "PLACE": 1}
    assert "span_f1_exact" in manifest["agreement"]


def test_a_pairwise_release_has_preference_pairs(media_root):
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, task_type="pairwise", labels=[], task_options={})
    item = _item(project, {"prompt": "Capital of France?", "a": "Lyon", "b": "Paris"})
    tie = _item(project, {"prompt": "2+2?", "a": "4", "b": "four"})
    for choice in ("B", "B", "A"):
        _answer(item, UserFactory(), {"choice": choice})
    for choice in ("tie", "tie", "tie"):
        _answer(tie, UserFactory(), {"choice": choice})
    release = release_build(release=make_release(project, owner))

    assert release.status == "ready", release.error
    download = release_file_open(release=release, fmt="preference")
    lines = download.file.read().decode().splitlines()
    download.file.close()
    assert [json.loads(line) for line in lines] == [
        {"chosen": "Paris", "item_id": item.pk, "prompt": "Capital of France?", "rejected": "Lyon"}
    ]


def test_dashboard_and_review_page_of_a_structured_type(client):
    owner = UserFactory()
    project = ProjectFactory(
        created_by=owner, task_type="free_text", labels=[], task_options={}, overlap=3
    )
    item = _item(project, {"text": "Transcribe: the receipt total"})
    for text in ("Total 12.50", "total 12.50", "Total 12.80"):
        _answer(item, UserFactory(), {"text": text})
    quality_recompute(project=project)
    client.force_login(owner)

    dashboard = client.get(reverse("quality:dashboard", args=[project.pk]))
    review = client.get(reverse("quality:review-item", args=[project.pk, item.pk]))

    assert dashboard.status_code == 200
    assert "Exact match rate (normalised)" in dashboard.content.decode()
    assert review.status_code == 200
    assert "total 12.50" in review.content.decode().casefold()  # answers shown as summaries


def test_a_label_schema_change_schedules_a_recompute(
    monkeypatch, django_capture_on_commit_callbacks
):
    import quality.services as services
    from annotation.schema import schema_change_apply, schema_change_plan

    owner = UserFactory()
    project = ProjectFactory(created_by=owner)
    item = _item(project, {"text": "Fine, I guess."})
    _answer(item, UserFactory(), {"label": "negative"})
    scheduled = []
    monkeypatch.setattr(
        services, "quality_recompute_schedule", lambda project_id: scheduled.append(project_id)
    )
    operations = [{"op": "rename", "label": "negative", "to": "critical"}]
    token = schema_change_plan(project=project, operations=operations).token

    with django_capture_on_commit_callbacks(execute=True):
        schema_change_apply(project=project, operations=operations, token=token, user=owner)

    assert scheduled == [project.pk]

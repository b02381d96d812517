"""quality.suggestions on constructed projects: each source's accuracy, speed with and without a
suggestion, the accepted share, and anchoring (accepted vs changed vs unaided answers), and the
dashboard's Suggestions section."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Item, Prediction
from quality.models import ItemScore
from quality.suggestions import Accuracy, suggestion_metrics_get
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def _score(item, *, label="", value=None, state=ItemScore.State.CONFIDENT):
    return ItemScore.objects.create(
        item=item,
        project=item.project,
        label=label,
        value=value,
        state=state,
        confidence=0.9,
        computed_at=timezone.now(),
    )


def _predict(item, value, source="import"):
    return Prediction.objects.create(project=item.project, item=item, value=value, source=source)


def _answer(item, value, *, ms, suggestion=None, accepted=None, superseded=False):
    return AnnotationFactory(
        item=item,
        value=value,
        duration_ms=ms,
        suggestion=suggestion,
        suggestion_accepted=accepted,
        superseded_at=timezone.now() if superseded else None,
    )


POS, NEG = {"label": "positive"}, {"label": "negative"}


@pytest.fixture
def measured(project):
    """Four regular items (three with a confident consensus), one item promoted to gold after
    it was labeled with a suggestion, and answers made each way."""
    r1, r2, r3, r4 = ItemFactory.create_batch(4, project=project)
    promoted = ItemFactory(project=project)
    _score(r1, label="positive")
    _score(r2, label="positive")
    _score(r3, label="positive")
    _score(r4, label="negative", state=ItemScore.State.OPEN)  # not a reference
    p1, p2 = _predict(r1, POS), _predict(r2, NEG)
    _predict(r3, POS)
    _predict(r4, NEG)
    pg = _predict(promoted, NEG)
    _predict(r1, NEG, source="rule")
    _answer(r1, POS, ms=1000, suggestion=p1, accepted=True)
    _answer(r1, POS, ms=3000)
    _answer(r1, NEG, ms=50, suggestion=p1, accepted=False, superseded=True)  # not counted
    _answer(r2, NEG, ms=2000, suggestion=p2, accepted=True)
    _answer(r2, POS, ms=4000, suggestion=p2, accepted=False)
    _answer(r3, NEG, ms=5000)
    _answer(r4, POS, ms=6000)
    _answer(promoted, NEG, ms=100, suggestion=pg, accepted=True)
    _answer(promoted, NEG, ms=7000)
    # promoted to gold afterwards (predictions are never made for gold items)
    Item.objects.filter(pk=promoted.pk).update(gold="negative", is_gold=True)
    return project


def test_sources_are_measured_against_gold_and_consensus(measured):
    metrics = suggestion_metrics_get(project=measured)

    by_source = {row.source: row for row in metrics.sources}
    assert set(by_source) == {"import", "rule"}
    imported = by_source["import"]
    assert imported.label == "Imported"
    assert imported.predictions == 5
    assert imported.gold == Accuracy(n=1, correct=1)
    assert imported.consensus == Accuracy(n=3, correct=2)
    assert by_source["rule"].gold == Accuracy(n=0, correct=0)
    assert by_source["rule"].consensus == Accuracy(n=1, correct=0)


def test_acceptance_and_speed(measured):
    metrics = suggestion_metrics_get(project=measured)

    assert (metrics.shown, metrics.accepted) == (4, 3)
    assert metrics.accepted_share == 0.75
    # regular items only: 1000, 2000, 4000 with a suggestion; 3000, 5000, 6000 without
    assert (metrics.median_ms_shown, metrics.answers_shown_timed) == (2000.0, 3)
    assert (metrics.median_ms_unaided, metrics.answers_unaided_timed) == (5000.0, 3)
    assert metrics.median_seconds_shown == 2.0


def test_anchoring_compares_accepted_changed_and_unaided_answers(measured):
    metrics = suggestion_metrics_get(project=measured)

    groups = {group.key: group for group in metrics.groups}
    assert [group.key for group in metrics.groups] == ["accepted", "changed", "unaided"]
    assert groups["accepted"].answers == 3
    assert groups["accepted"].gold == Accuracy(n=1, correct=1)
    assert groups["accepted"].consensus == Accuracy(n=2, correct=1)
    assert groups["changed"].answers == 1
    assert groups["changed"].gold == Accuracy(n=0, correct=0)
    assert groups["changed"].consensus == Accuracy(n=1, correct=1)
    assert groups["unaided"].answers == 4
    assert groups["unaided"].gold == Accuracy(n=1, correct=1)
    assert groups["unaided"].consensus == Accuracy(n=2, correct=1)


def test_metrics_take_a_fixed_number_of_queries(measured, django_assert_num_queries):
    with django_assert_num_queries(7):
        suggestion_metrics_get(project=measured)


def test_rules_and_the_model_are_reported_on_gold(measured):
    from quality.models import LabelingRule, ModelVersion

    owner = measured.created_by
    for n, share in ((8, 0.75), (2, 0.5)):
        LabelingRule.objects.create(
            project=measured,
            name=f"rule {n}",
            kind=LabelingRule.Kind.KEYWORDS,
            config={"keywords": ["x"]},
            label="positive",
            created_by=owner,
            stats={"accuracy_gold": {"value": share, "n": n}},
        )
    ModelVersion.objects.create(
        project=measured,
        version=2,
        status=ModelVersion.Status.READY,
        validation_count=20,
        validation_accuracy=0.85,
    )

    metrics = suggestion_metrics_get(project=measured)

    assert metrics.rules_gold == Accuracy(n=10, correct=7)
    assert (metrics.model_version, metrics.model_validation) == (2, Accuracy(n=20, correct=17))


def test_accuracy_reports_its_interval_and_small_n():
    few = Accuracy(n=10, correct=8)
    many = Accuracy(n=400, correct=320)

    assert few.share == many.share == 0.8
    assert few.is_small
    assert not many.is_small
    low, high = few.interval
    assert 0.44 < low < 0.5
    assert 0.94 < high < 0.97
    assert Accuracy(n=0, correct=0).share is None
    assert Accuracy(n=0, correct=0).interval is None


def test_a_project_without_suggestions_has_no_data(project):
    AnnotationFactory(item=ItemFactory(project=project), value=POS)

    metrics = suggestion_metrics_get(project=project)

    assert not metrics.has_data
    assert metrics.sources == []
    assert metrics.shown == 0
    assert metrics.accepted_share is None


def test_rating_consensus_labels_compare_with_answers(db):
    project = ProjectFactory(task_type="rating", labels=[], task_options={})
    item = ItemFactory(project=project)
    _score(item, label="4")
    prediction = _predict(item, {"rating": 4}, source="model")
    _answer(item, {"rating": 4}, ms=10, suggestion=prediction, accepted=True)
    _answer(item, {"rating": 2}, ms=10)

    metrics = suggestion_metrics_get(project=project)

    assert metrics.sources[0].consensus == Accuracy(n=1, correct=1)
    assert {g.key: g.consensus for g in metrics.groups}["unaided"] == Accuracy(n=1, correct=0)


def test_structured_answers_match_the_consensus_value_exactly(db):
    project = ProjectFactory(
        task_type="spans",
        labels=[{"value": "PER", "hotkey": "p"}],
        task_options={"field": "text"},
    )
    item = ItemFactory(project=project, data={"text": "Ada Lovelace wrote notes."})
    agreed = {"spans": [{"start": 0, "end": 12, "label": "PER"}], "relations": []}
    _score(item, label="PER ×1", value=agreed)
    _predict(item, agreed, source="rule")
    _predict(item, {"spans": [{"start": 0, "end": 3, "label": "PER"}], "relations": []})

    metrics = suggestion_metrics_get(project=project)

    by_source = {row.source: row.consensus for row in metrics.sources}
    assert by_source == {"rule": Accuracy(n=1, correct=1), "import": Accuracy(n=1, correct=0)}


def test_dashboard_shows_the_suggestions_section(client, measured, owner):
    measured.suggestions_enabled = True
    measured.save(update_fields=["suggestions_enabled"])
    client.force_login(owner)

    page = client.get(reverse("quality:dashboard", args=[measured.pk]))
    poll = client.get(reverse("quality:dashboard", args=[measured.pk]), HTTP_HX_REQUEST="true")

    html = page.content.decode()
    assert 'id="qd-suggestions"' in html
    assert "75%</strong> of 4 shown suggestions accepted unchanged" in html
    assert 'id="qd-source-import"' in html
    assert 'id="qd-group-unaided"' in html
    assert 'id="qd-checked-on-gold"' in html  # rules and model, where predictions never go
    assert "qd-suggestions" not in poll.content.decode()  # measured once per page load


def test_dashboard_leaves_the_section_out_without_suggestions(client, project, owner):
    client.force_login(owner)
    empty = client.get(reverse("quality:dashboard", args=[project.pk]))
    project.suggestions_enabled = True
    project.save(update_fields=["suggestions_enabled"])

    enabled_but_unused = client.get(reverse("quality:dashboard", args=[project.pk]))

    assert empty.status_code == enabled_but_unused.status_code == 200
    assert "qd-suggestions" not in empty.content.decode()
    assert "qd-suggestions" not in enabled_but_unused.content.decode()


def test_dashboard_measures_nothing_while_suggestions_are_off(client, measured, owner):
    client.force_login(owner)

    page = client.get(reverse("quality:dashboard", args=[measured.pk]))

    assert "qd-suggestions" not in page.content.decode()

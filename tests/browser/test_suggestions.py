"""Suggestions in a real browser: the annotator sees a pre-label pre-selected and marked as a
suggestion, accepts one with Enter, corrects another, and the database records which suggestion
each answer was made with and whether it was accepted unchanged."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from annotation.models import Annotation, Prediction
from annotation.predictions import predictions_replace
from annotation.task_types import task_type_get
from crowd.models import ProjectPool
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REVIEWS = [
    "The zipper broke on the second trip. Support never answered my emails.",
    "Too loud to use at night and the app keeps logging me out.",
]


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server to catch up"
        time.sleep(0.05)


def _project(**kwargs):
    return ProjectFactory(
        created_by=UserFactory(username="olivia"),
        overlap=1,
        instructions="",
        suggestions_enabled=True,
        **kwargs,
    )


def test_annotator_accepts_one_suggestion_and_corrects_another(
    page, live_server, log_in, artifacts_dir
):
    project = _project(name="Reviews with suggestions")
    items = [ItemFactory(project=project, data={"text": text}) for text in REVIEWS]
    predictions_replace(
        project=project,
        source="import",
        rows=[(item.pk, {"label": "negative"}, 0.8) for item in items],
        model_name="sentiment-bert",
        model_version="v3",
    )
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")
    item_el = page.locator("[data-stage] .label-item")
    chip = page.locator("[data-stage] .suggestion-chip")
    negative = page.locator('[data-controls] [data-label="negative"]')
    positive = page.locator('[data-controls] [data-label="positive"]')

    # 1. Pre-selected and marked as a suggestion; Enter accepts it.
    expect(negative).to_have_attribute("aria-pressed", "true")
    expect(chip).to_contain_text("Suggested by Imported (sentiment-bert v3)")
    expect(item_el).to_have_class("label-item is-suggested")
    expect(page.locator("[data-controls]")).to_have_class("labeling-widget-controls is-suggested")
    page.screenshot(path=str(artifacts_dir / "suggestion-shown.png"), full_page=True)
    page.keyboard.press("Enter")
    expect(page.locator("[data-done]")).to_have_text("1")

    # 2. The next item's suggestion is corrected: the answer becomes the worker's own.
    expect(negative).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("1")
    expect(positive).to_have_attribute("aria-pressed", "true")
    expect(chip).to_have_class("suggestion-chip is-changed")
    expect(chip).to_contain_text("Your own answer")
    expect(item_el).not_to_have_class("label-item is-suggested")
    page.screenshot(path=str(artifacts_dir / "suggestion-changed.png"), full_page=True)
    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).count() == 2)
    stored = [
        (a.value, a.suggestion.item_id == a.item_id, a.suggestion_accepted)
        for a in Annotation.objects.filter(author=worker).select_related("suggestion")
    ]
    assert stored == [({"label": "negative"}, True, True), ({"label": "positive"}, True, False)]


def test_spans_suggestion_is_drawn_and_accepted_with_enter(
    page, live_server, log_in, artifacts_dir
):
    text = "Ada Lovelace wrote to Charles Babbage from London."
    project = _project(
        name="People with suggestions",
        task_type="spans",
        labels=[
            {"value": "PER", "hotkey": "p", "colour": "#0072b2"},
            {"value": "LOC", "hotkey": "l", "colour": "#009e73"},
        ],
        task_options={},
    )
    item = ItemFactory(project=project, data={"text": text})
    suggested = {
        "spans": [
            {"start": 0, "end": 12, "label": "PER"},
            {"start": 22, "end": 37, "label": "PER"},
        ],
        "relations": [],
    }
    predictions_replace(project=project, source="rule", rows=[(item.pk, suggested, None)])
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")
    text_el = page.locator("[data-stage] [data-spans-text]")

    expect(text_el.locator('.spans-seg[data-label="PER"]')).to_have_count(2)
    expect(text_el.locator('.spans-seg[data-label="PER"]').nth(1)).to_have_text("Charles Babbage")
    expect(page.locator("[data-stage] .suggestion-chip")).to_contain_text(
        "Suggested by Labeling rules"
    )
    page.screenshot(path=str(artifacts_dir / "suggestion-spans.png"), full_page=True)
    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).exists())
    annotation = Annotation.objects.get(author=worker)
    assert annotation.value == suggested
    assert annotation.suggestion_accepted is True


def test_owner_switches_suggestions_on_and_reads_the_dashboard(
    page, live_server, log_in, artifacts_dir
):
    project = _project(name="Switches")
    project.suggestions_enabled = False
    project.save(update_fields=["suggestions_enabled"])
    item = ItemFactory(project=project, data={"text": REVIEWS[0]})
    predictions_replace(
        project=project, source="import", rows=[(item.pk, {"label": "negative"}, 0.8)]
    )
    worker = make_annotator(project, "ana")
    ProjectPool.objects.filter(project=project).update(show_suggestions=False)
    log_in("olivia", next_url=f"/projects/{project.pk}/suggestions/")

    page.locator("#suggestions-enabled").check()
    page.locator("#suggestion-form input[name=pools]").check()
    page.screenshot(path=str(artifacts_dir / "suggestion-settings.png"), full_page=True)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#suggestions-enabled")).to_be_checked()

    project.refresh_from_db()
    assert project.suggestions_enabled is True
    assert ProjectPool.objects.get(project=project).show_suggestions is True
    prediction = Prediction.objects.get(item=item)
    AnnotationFactory(
        item=item,
        author=worker,
        value={"label": "negative"},
        duration_ms=1200,
        suggestion=prediction,
        suggestion_accepted=True,
    )
    page.goto(f"{live_server.url}/projects/{project.pk}/quality/")
    expect(page.locator("#qd-suggestions-acceptance")).to_contain_text(
        "100% of 1 shown suggestion accepted unchanged"
    )
    page.locator("#qd-suggestions").screenshot(path=str(artifacts_dir / "suggestion-dashboard.png"))


PRESETS = {
    # type: (labels, options, item data, suggestion)
    "multi_label": (
        [{"value": "red", "hotkey": "r"}, {"value": "blue", "hotkey": "b"}],
        {"allow_none": False},
        {"text": "A red and blue flag."},
        {"labels": ["red", "blue"]},
    ),
    "rating": ([], {"scale_min": 1, "scale_max": 5}, {"text": "Fluent?"}, {"rating": 4}),
    "pairwise": ([], {"mode": "preference"}, {"a": "Short.", "b": "Longer."}, {"choice": "B"}),
    "free_text": ([], {}, {"text": "Transcribe: helo wrld"}, {"text": "hello world"}),
    "boxes": (
        [{"value": "cat", "hotkey": "c"}],
        {},
        {"image": "items/missing.png", "width": 800, "height": 600},
        {"boxes": [{"x": 10, "y": 20, "w": 300, "h": 200, "label": "cat"}]},
    ),
}


@pytest.mark.parametrize("key", list(PRESETS))
def test_every_widget_preselects_the_suggestion_and_enter_accepts_it(
    key, page, live_server, log_in, artifacts_dir
):
    labels, options, data, suggested = PRESETS[key]
    project = _project(
        name=f"Preset {key}",
        task_type=key,
        labels=[dict(label, colour="#0072b2") for label in labels],
        task_options=task_type_get(key).options_clean(options, labels=labels),
    )
    item = ItemFactory(project=project, data=data, content_hash=key)
    predictions_replace(project=project, source="model", rows=[(item.pk, suggested, 0.7)])
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")

    expect(page.locator("[data-stage] .label-item")).to_have_class("label-item is-suggested")
    expect(page.locator("[data-stage] .suggestion-chip")).to_contain_text("Built-in model")
    expect(page.locator("[data-action=submit]")).to_have_attribute("aria-disabled", "false")
    page.screenshot(path=str(artifacts_dir / f"suggestion-{key}.png"), full_page=True)
    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).exists())
    annotation = Annotation.objects.get(author=worker)
    assert annotation.value == suggested
    assert annotation.suggestion_accepted is True

"""The simple widgets in a real browser: rate, pick in a pair, type a transcription, tick labels.

Each test answers with the keyboard, checks what the database stored, that the layout holds
still from one item to the next, and leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import zlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from playwright.sync_api import expect

from annotation.models import Annotation
from annotation.task_types import task_type_get
from crowd.models import Assignment
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SENTENCES = [
    "The committee will meet again next Thursday to review the budget.",
    "Him and me was going to the store yesterday but it were closed.",
    "Rain is expected across the north, clearing by the afternoon.",
]


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server to catch up"
        time.sleep(0.05)


def _project(key, *, labels=(), options=None, items=()):
    task_type = task_type_get(key)
    labels = list(labels)
    project = ProjectFactory(
        created_by=UserFactory(username="olivia"),
        name=f"Widget check — {task_type.name}",
        task_type=key,
        labels=labels,
        task_options=task_type.options_clean(options or {}, labels=labels),
        overlap=1,
        instructions="",
    )
    for data in items:  # hashed whole: pair and image items have no "text"
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        ItemFactory(project=project, data=data, content_hash=digest)
    return project


def _open(page, log_in, project, username="ana"):
    worker = make_annotator(project, username)
    log_in(username, next_url=f"/projects/{project.pk}/label/")
    expect(page.locator("#labeling")).to_have_attribute("data-ready", "true")
    return worker


def _box(page, selector):
    box = page.locator(selector).bounding_box()
    return (round(box["x"]), round(box["y"]), round(box["width"]), round(box["height"]))


def _stored(worker, field="text"):
    return {
        (a.item.data.get(field) or a.item.data.get("a")): a.value
        for a in Annotation.objects.filter(author=worker).select_related("item")
    }


def test_rate_items_with_number_keys(page, live_server, log_in, artifacts_dir):
    project = _project(
        "rating",
        options={"scale_min": 1, "scale_max": 5},
        items=[{"text": text} for text in SENTENCES],
    )
    worker = _open(page, log_in, project)
    text = page.locator("[data-stage] .label-item-text")
    submit = page.locator("[data-action=submit]")
    expect(page.locator("[data-rating]")).to_have_count(5)
    expect(submit).to_have_attribute("aria-disabled", "true")

    page.keyboard.press("Enter")  # nothing picked yet: not sent, and the page says why
    expect(page.locator("[data-notice]")).to_contain_text("Rate the item first")
    layout = (_box(page, "[data-stage]"), _box(page, "[data-controls]"))
    expected = {}
    for key in ["4", "2", "5"]:
        shown = text.inner_text()
        page.keyboard.press(key)
        expect(page.locator(f'[data-rating="{key}"]')).to_have_attribute("aria-pressed", "true")
        expect(page.locator('[data-rating][aria-pressed="true"]')).to_have_count(1)
        expect(submit).to_have_attribute("aria-disabled", "false")
        expect(page.locator("[data-notice]")).to_have_text("")  # the reminder is answered
        if key == "4":
            page.screenshot(path=str(artifacts_dir / "widget-rating.png"), full_page=True)
        assert (_box(page, "[data-stage]"), _box(page, "[data-controls]")) == layout
        page.keyboard.press("Enter")
        expected[shown] = {"rating": int(key)}
        if len(expected) < len(SENTENCES):
            expect(text).not_to_have_text(shown)
            expect(page.locator('[data-rating][aria-pressed="true"]')).to_have_count(0)

    _wait_for(lambda: Annotation.objects.filter(author=worker).count() == 3)
    assert _stored(worker) == expected


def test_pick_in_a_pair_with_a_b_and_t(page, live_server, log_in, artifacts_dir):
    pairs = [
        {"a": "The meeting was moved to Friday.", "b": "Meeting moved Friday was the to."},
        {"a": "She sells sea shells.", "b": "She sells seashells by the shore."},
        {"a": "Turn left at the lights.", "b": "At the lights, turn left."},
    ]
    project = _project(
        "pairwise",
        options={"mode": "preference", "allow_tie": True},
        items=[{**pair, "prompt": "Which sentence reads better?"} for pair in pairs],
    )
    worker = _open(page, log_in, project)
    pane_a = page.locator("[data-stage] .pair-pane[data-side=A]")
    pane_b = page.locator("[data-stage] .pair-pane[data-side=B]")
    expect(page.locator("[data-choice]")).to_have_text(["aA is better", "tTie", "bB is better"])
    layout = _box(page, "[data-controls]")

    expected = {}
    for n, key in enumerate(["b", "t", "a"]):
        shown = pane_a.locator(".pair-text").inner_text()
        if key == "a":  # a click on a pane picks it too; the key then confirms it
            pane_b.click()
            expect(pane_b).to_have_class("pair-pane is-chosen")
        page.keyboard.press(key)
        chosen = {"a": "A", "b": "B", "t": "tie"}[key]
        expect(page.locator(f'[data-choice="{chosen}"]')).to_have_attribute("aria-pressed", "true")
        expect(pane_a).to_have_class("pair-pane is-chosen" if key in "at" else "pair-pane")
        expect(pane_b).to_have_class("pair-pane is-chosen" if key in "bt" else "pair-pane")
        if n == 0:
            page.screenshot(path=str(artifacts_dir / "widget-pairwise.png"), full_page=True)
        assert _box(page, "[data-controls]") == layout
        page.keyboard.press("Enter")
        expected[shown] = {"choice": chosen}
        if len(expected) < len(pairs):
            expect(pane_a.locator(".pair-text")).not_to_have_text(shown)

    _wait_for(lambda: Annotation.objects.filter(author=worker).count() == 3)
    assert _stored(worker, "a") == expected


def test_type_a_transcription_enter_submits_and_escape_then_s_skips(
    page, live_server, log_in, artifacts_dir
):
    lines = ["Transcribe: MEET AT NOON", "Transcribe: BRING THE MAPS", "Transcribe: ALL CLEAR"]
    project = _project(
        "free_text", options={"max_length": 200}, items=[{"text": line} for line in lines]
    )
    worker = _open(page, log_in, project)
    text = page.locator("[data-stage] .label-item-text")
    box = page.locator("[data-stage] textarea")
    expect(box).to_be_focused()
    layout = _box(page, "[data-controls]")

    first = text.inner_text()
    page.keyboard.type("Meet at noon,")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("sharp.  ")
    expect(box).to_have_value("Meet at noon,\nsharp.  ")
    expect(page.locator("[data-count]")).to_have_text("22")
    page.screenshot(path=str(artifacts_dir / "widget-free-text.png"), full_page=True)
    page.keyboard.press("Enter")
    expect(text).not_to_have_text(first)
    expect(box).to_be_focused()  # the next item's box, ready for typing
    expect(box).to_have_value("")
    assert _box(page, "[data-controls]") == layout

    second = text.inner_text()
    page.keyboard.type("s")  # typing, not skipping
    expect(box).to_have_value("s")
    expect(text).to_have_text(second)
    page.keyboard.press("Escape")
    expect(box).not_to_be_focused()
    page.keyboard.press("s")
    expect(text).not_to_have_text(second)
    expect(box).to_be_focused()

    _wait_for(lambda: Annotation.objects.filter(author=worker).count() == 1)
    assert _stored(worker) == {first: {"text": "Meet at noon,\nsharp."}}
    _wait_for(
        lambda: Assignment.objects.filter(
            worker=worker, item__data__text=second, status=Assignment.Status.SKIPPED
        ).exists()
    )


def test_tick_two_labels_of_a_multi_label_item(page, live_server, log_in, artifacts_dir):
    labels = [
        {"value": "sports", "hotkey": "1", "colour": "#0072b2"},
        {"value": "politics", "hotkey": "2", "colour": "#d55e00"},
        {"value": "economy", "hotkey": "e", "colour": "#009e73"},
    ]
    headlines = [
        "Finance minister opens the new stadium, promising jobs for the region.",
        "Local team wins the cup after extra time.",
    ]
    project = _project(
        "multi_label",
        labels=labels,
        options={"allow_none": False},
        items=[{"text": text} for text in headlines],
    )
    worker = _open(page, log_in, project)
    text = page.locator("[data-stage] .label-item-text")
    pressed = page.locator('[data-label][aria-pressed="true"]')
    layout = _box(page, "[data-controls]")

    first = text.inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("[data-notice]")).to_contain_text("Pick at least one label")
    for key in ["e", "1", "2", "2"]:  # politics on, then off again
        page.keyboard.press(key)
    expect(pressed).to_have_count(2)
    expect(page.locator("[data-notice]")).to_have_text("")
    expect(page.locator('[data-label="economy"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('[data-label="sports"]')).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=str(artifacts_dir / "widget-multi-label.png"), full_page=True)
    page.keyboard.press("Enter")
    expect(text).not_to_have_text(first)
    expect(pressed).to_have_count(0)
    assert _box(page, "[data-controls]") == layout
    second = text.inner_text()
    page.locator('[data-label="sports"]').click()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Nothing left for you in this project right now")).to_be_visible()

    _wait_for(lambda: Annotation.objects.filter(author=worker).count() == 2)
    assert _stored(worker) == {
        first: {"labels": ["sports", "economy"]},  # label-set order, not key order
        second: {"labels": ["sports"]},
    }


def _png(width, height, rgb):
    """A plain-colour PNG of the given size."""
    row = b"\x00" + bytes(rgb) * width
    body = zlib.compress(row * height)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_rate_an_image_item(page, live_server, log_in, artifacts_dir, media_root):
    project = _project(
        "rating",
        options={"scale_min": 1, "scale_max": 5},
        items=[{"image": "items/pending.png", "width": 120, "height": 80}],
    )
    # The image view serves only the project's own stored images (items/<project id>/...).
    path = default_storage.save(
        f"items/{project.pk}/swatch.png", ContentFile(_png(120, 80, (0, 114, 178)))
    )
    item = project.items.get()
    item.data = {**item.data, "image": path}
    item.save(update_fields=["data"])
    worker = _open(page, log_in, project)
    image = page.locator("[data-stage] img.label-item-image")

    expect(image).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) == 120
    page.keyboard.press("3")
    page.screenshot(path=str(artifacts_dir / "widget-rating-image.png"), full_page=True)
    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).count() == 1)
    assert Annotation.objects.get(author=worker).value == {"rating": 3}

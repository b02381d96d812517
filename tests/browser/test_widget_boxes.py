"""The boxes widget: draw on a real stored image, label with a hotkey, delete, submit."""

from __future__ import annotations

import io
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import get_resolver
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from annotation.models import Annotation
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = [
    {"value": "cat", "hotkey": "c", "colour": "#0072b2"},
    {"value": "dog", "hotkey": "d", "colour": "#d55e00"},
]
# Larger than it can be shown: the page scales it down, answers stay in image pixels.
WIDTH, HEIGHT = 1600, 1200
CAT = (200, 150, 600, 450)  # x, y, w, h in image pixels: the orange rectangle in the picture


@pytest.fixture(autouse=True)
def _warm_urls():
    """Import every view now: the first request otherwise spends seconds of the page's timeout."""
    get_resolver().url_patterns  # noqa: B018


@pytest.fixture
def store_png(settings, tmp_path):
    """Store a real PNG for a project's item where an image zip import puts it; gives its path."""
    settings.MEDIA_ROOT = tmp_path
    picture = Image.new("RGB", (WIDTH, HEIGHT), "#dfe7ef")
    x, y, w, h = CAT
    ImageDraw.Draw(picture).rectangle((x, y, x + w - 1, y + h - 1), fill="#e69f00")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")

    def store(project) -> str:
        path = f"items/{project.pk}/cat.png"
        return default_storage.save(path, ContentFile(buffer.getvalue()))

    return store


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.05)


def test_worker_draws_labels_and_deletes_boxes(page, live_server, log_in, artifacts_dir, store_png):
    project = ProjectFactory(
        created_by=UserFactory(username="olivia"),
        task_type="boxes",
        labels=LABELS,
        task_options={},
        overlap=1,
        instructions="Draw a box around every cat.",
    )
    ItemFactory(
        project=project, data={"image": store_png(project), "width": WIDTH, "height": HEIGHT}
    )
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")
    image = page.locator("[data-stage] .boxes-image")
    layer = page.locator("[data-stage] [data-boxes-layer]")
    boxes = layer.locator(".boxes-box")
    submit = page.locator("[data-action=submit]")
    expect(image).to_be_visible()
    page.wait_for_function(
        "() => document.querySelector('[data-stage] .boxes-image').naturalWidth === 1600"
    )
    shown = layer.bounding_box()
    scale = shown["width"] / WIDTH
    assert scale < 0.75  # really scaled down
    assert abs(shown["height"] / HEIGHT - scale) < 0.01

    def at(x, y):
        return shown["x"] + x * scale, shown["y"] + y * scale

    def drag(start, end):
        page.mouse.move(*at(*start))
        page.mouse.down()
        page.mouse.move(*at(*end), steps=8)
        page.mouse.up()

    # A drag without area draws nothing.
    drag((100, 100), (500, 100))
    expect(boxes).to_have_count(0)

    x, y, w, h = CAT
    drag((x, y), (x + w, y + h))
    expect(boxes).to_have_count(1)
    expect(boxes.first).to_have_class("boxes-box is-unlabelled is-selected")
    expect(submit).to_have_attribute("aria-disabled", "true")
    page.keyboard.press("Enter")  # not yet: the box has no label
    expect(page.locator("[data-notice]")).to_contain_text("Label every box")
    page.keyboard.press("c")
    expect(boxes.first).to_have_attribute("data-label", "cat")
    expect(submit).to_have_attribute("aria-disabled", "false")

    drag((1400, 1100), (1000, 700))  # drawn from bottom-right to top-left
    expect(boxes).to_have_count(2)
    page.keyboard.press("d")
    page.screenshot(path=str(artifacts_dir / "widget-boxes.png"), full_page=True)
    page.keyboard.press("Delete")  # the new box is the selected one
    expect(boxes).to_have_count(1)
    expect(boxes.first).to_have_attribute("data-label", "cat")

    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).exists())
    (box,) = Annotation.objects.get(author=worker).value["boxes"]
    assert box["label"] == "cat"
    for key, expected in zip(("x", "y", "w", "h"), CAT, strict=True):
        assert abs(box[key] - expected) <= 2, (key, box)
    expect(page.locator("[data-done]")).to_have_text("1")


def test_boxes_are_selected_by_tab_and_click_and_nudged(
    page, live_server, log_in, artifacts_dir, store_png
):
    project = ProjectFactory(
        created_by=UserFactory(username="olivia"),
        task_type="boxes",
        labels=LABELS,
        task_options={"allow_none": False},
        overlap=1,
    )
    ItemFactory(
        project=project, data={"image": store_png(project), "width": WIDTH, "height": HEIGHT}
    )
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")
    layer = page.locator("[data-stage] [data-boxes-layer]")
    boxes = layer.locator(".boxes-box")
    page.wait_for_function(
        "() => document.querySelector('[data-stage] .boxes-image').naturalWidth === 1600"
    )
    page.keyboard.press("Enter")  # allow_none is off: an empty answer is not one
    expect(page.locator("[data-notice]")).to_contain_text("Draw at least one box")
    shown = layer.bounding_box()
    scale = shown["width"] / WIDTH

    def drag(x0, y0, x1, y1):
        page.mouse.move(shown["x"] + x0 * scale, shown["y"] + y0 * scale)
        page.mouse.down()
        page.mouse.move(shown["x"] + x1 * scale, shown["y"] + y1 * scale, steps=6)
        page.mouse.up()

    drag(100, 100, 500, 400)
    page.keyboard.press("c")
    drag(900, 600, 1300, 1000)
    page.keyboard.press("d")
    boxes.first.click()  # a click selects the first box
    expect(boxes.first).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Tab")  # Tab moves to (and selects) the next box
    expect(boxes.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(boxes.first).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Shift+ArrowLeft")  # ten image pixels left
    page.keyboard.press("ArrowUp")  # one up
    page.keyboard.press("c")  # relabel the selected box

    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).exists())
    stored = sorted(Annotation.objects.get(author=worker).value["boxes"], key=lambda b: b["x"])
    assert [b["label"] for b in stored] == ["cat", "cat"]
    expected = [(100, 100, 400, 300), (890, 599, 400, 400)]
    for box, coords in zip(stored, expected, strict=True):
        for key, value in zip(("x", "y", "w", "h"), coords, strict=True):
            assert abs(box[key] - value) <= 2, (key, box)

"""The spans widget: mark spans with the mouse and the keyboard, remove one, relate two, submit."""

from __future__ import annotations

import time

import pytest
from django.urls import get_resolver
from playwright.sync_api import expect

from annotation.models import Annotation
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = [
    {"value": "PER", "hotkey": "p", "colour": "#0072b2"},
    {"value": "ORG", "hotkey": "o", "colour": "#d55e00"},
    {"value": "LOC", "hotkey": "l", "colour": "#009e73"},
]
# The emoji is one character (code point) but two UTF-16 units: every offset after it differs
# between Python and the browser's DOM, which the widget must convert.
TEXT = "Ada Lovelace wrote to Charles Babbage 🙂 from London  about the Royal Society."

# The viewport rectangle of the characters [start, end) of the widget's text (code points).
CHAR_RECT = """
([start, end]) => {
  const el = document.querySelector("[data-stage] [data-spans-text]");
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const units = (cp) => Array.from(el.textContent).slice(0, cp).join("").length;
  const [from, to] = [units(start), units(end)];
  const range = document.createRange();
  let seen = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const length = node.data.length;
    if (from >= seen && from <= seen + length) range.setStart(node, from - seen);
    if (to >= seen && to <= seen + length) { range.setEnd(node, to - seen); break; }
    seen += length;
  }
  const rect = range.getBoundingClientRect();
  return { left: rect.left, right: rect.right, top: rect.top, bottom: rect.bottom };
}
"""


@pytest.fixture(autouse=True)
def _warm_urls():
    """Import every view now: the first request otherwise spends seconds of the page's timeout."""
    get_resolver().url_patterns  # noqa: B018


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.05)


def test_worker_marks_spans_with_mouse_and_keyboard_and_removes_one(
    page, live_server, log_in, artifacts_dir
):
    project = ProjectFactory(
        created_by=UserFactory(username="olivia"),
        task_type="spans",
        labels=LABELS,
        task_options={},
        overlap=1,
        instructions="Mark people (PER), organisations (ORG) and places (LOC).",
    )
    ItemFactory(project=project, data={"text": TEXT})
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")
    text_el = page.locator("[data-stage] [data-spans-text]")
    expect(text_el).to_have_text(TEXT)
    expect(text_el).to_be_focused()
    submit = page.locator("[data-action=submit]")

    # 1. The mouse: drag from "Ada" over "Lovelace" into the space after it (trimmed away).
    first = page.evaluate(CHAR_RECT, [0, 1])
    space = page.evaluate(CHAR_RECT, [12, 13])
    middle = (first["top"] + first["bottom"]) / 2
    page.mouse.move(first["left"] + 1, middle)
    page.mouse.down()
    page.mouse.move(first["right"] + 20, middle, steps=4)
    page.mouse.move(space["right"] - 1, middle, steps=4)
    page.mouse.up()
    expect(text_el.locator(".spans-seg.is-selected")).to_have_text("Ada Lovelace ")
    page.keyboard.press("p")
    expect(text_el.locator(".spans-tag")).to_have_count(1)
    expect(text_el.locator('.spans-seg[data-label="PER"]')).to_have_text("Ada Lovelace")

    # 2. The keyboard: to the start, then "Royal Society" by characters and words with Shift.
    royal = TEXT.index("Royal")
    page.keyboard.press("Home")
    for _ in range(royal):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")  # a word: "Royal"
    page.keyboard.press("Shift+ArrowDown")  # the next: " Society"
    expect(text_el.locator(".spans-seg.is-selected")).to_have_text("Royal Society")
    page.keyboard.press("o")
    expect(text_el.locator('.spans-seg[data-label="ORG"]')).to_have_text("Royal Society")

    # 3. A third span, "London" (after the emoji), then removed by clicking it.
    london = TEXT.index("London")
    page.keyboard.press("Home")
    for _ in range(london - 1):  # start one early, on the space: trimmed when tagging
        page.keyboard.press("ArrowRight")
    for _ in range(len("London") + 1):
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("l")
    place = text_el.locator('.spans-seg[data-label="LOC"]')
    expect(place).to_have_text("London")
    expect(text_el.locator(".spans-tag")).to_have_count(3)
    page.screenshot(path=str(artifacts_dir / "widget-spans.png"), full_page=True)
    place.click()
    expect(text_el.locator(".spans-tag")).to_have_count(2)
    expect(place).to_have_count(0)
    expect(text_el).to_have_text(TEXT)  # the label names are not part of the text
    expect(submit).to_have_attribute("aria-disabled", "false")

    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).exists())
    annotation = Annotation.objects.get(author=worker)
    start = TEXT.index("Royal Society")
    assert annotation.value == {
        "spans": [
            {"start": 0, "end": 12, "label": "PER"},
            {"start": start, "end": start + len("Royal Society"), "label": "ORG"},
        ],
        "relations": [],
    }
    assert TEXT[start : start + len("Royal Society")] == "Royal Society"
    expect(page.locator("[data-done]")).to_have_text("1")


def test_relations_link_two_spans_with_a_relation_key(page, live_server, log_in, artifacts_dir):
    project = ProjectFactory(
        created_by=UserFactory(username="olivia"),
        task_type="spans",
        labels=LABELS,
        task_options={"relation_labels": ["works_with", "lives_in"], "allow_none": False},
        overlap=1,
    )
    text = "Ada Lovelace worked with Charles Babbage in London."
    ItemFactory(project=project, data={"text": text})
    worker = make_annotator(project, "ana")
    log_in("ana", next_url=f"/projects/{project.pk}/label/")
    text_el = page.locator("[data-stage] [data-spans-text]")
    expect(text_el).to_have_text(text)

    page.keyboard.press("Enter")  # allow_none is off: nothing marked is not an answer
    expect(page.locator("[data-notice]")).to_contain_text("Mark at least one span")

    def mark(words: str, key: str) -> None:
        page.keyboard.press("Home")
        for _ in range(text.index(words)):
            page.keyboard.press("ArrowRight")
        for _ in range(len(words)):
            page.keyboard.press("Shift+ArrowRight")
        page.keyboard.press(key)

    mark("Ada Lovelace", "p")
    mark("London", "l")
    page.keyboard.press("Tab")  # the first span's name chip
    page.keyboard.press("BracketLeft")  # "[": the relation starts here
    page.keyboard.press("Tab")
    page.keyboard.press("BracketRight")  # "]": and points here
    page.keyboard.press("Shift+Digit1")  # the first relation label
    expect(page.locator("[data-stage] [data-spans-relations] li")).to_have_count(1)
    text_el.locator('.spans-seg[data-label="PER"]').click()  # the relation starts here
    text_el.locator('.spans-seg[data-label="LOC"]').click(modifiers=["Alt"])  # and points here
    page.keyboard.press("Shift+Digit2")  # the second relation label
    expect(page.locator("[data-stage] [data-spans-relations] li")).to_have_count(2)
    expect(text_el.locator(".spans-tag")).to_have_count(2)  # clicks chose, they did not remove
    # Spans marked later sort in between: relations keep pointing at the same spans.
    mark("Charles Babbage", "p")
    mark("worked", "o")
    page.keyboard.press("Tab")  # chips follow the text: "Ada Lovelace" PER,
    page.keyboard.press("Tab")  # then "worked" ORG
    expect(page.locator(":focus")).to_have_attribute("data-label", "ORG")
    page.keyboard.press("Delete")
    expect(text_el.locator(".spans-tag")).to_have_count(3)
    expect(page.locator("[data-stage] [data-spans-relations] li")).to_have_count(2)
    page.screenshot(path=str(artifacts_dir / "widget-spans-relations.png"), full_page=True)

    page.keyboard.press("Enter")

    _wait_for(lambda: Annotation.objects.filter(author=worker).exists())
    value = Annotation.objects.get(author=worker).value
    charles = text.index("Charles Babbage")
    assert value["spans"] == [
        {"start": 0, "end": 12, "label": "PER"},
        {"start": charles, "end": charles + len("Charles Babbage"), "label": "PER"},
        {"start": text.index("London"), "end": text.index("London") + 6, "label": "LOC"},
    ]
    assert sorted(value["relations"], key=lambda r: r["label"]) == [
        {"from": 0, "to": 2, "label": "lives_in"},
        {"from": 0, "to": 2, "label": "works_with"},
    ]

"""An external worker labels tickets full of personal data and never receives any of it."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from annotation.models import Annotation, ProjectMember
from crowd.models import Pool
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import join_pool, make_pool

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TICKETS = [
    (
        "Hello, my name is Margaret Okafor. My parcel never came; write to "
        "m.okafor@example.org or call +44 20 7946 0958.",
        ["Margaret Okafor", "m.okafor@example.org", "+44 20 7946 0958"],
    ),
    (
        "I was charged twice on 4111 1111 1111 1111 from 203.0.113.77, order of 2024-03-15.",
        ["4111 1111 1111 1111", "203.0.113.77"],
    ),
    (
        "My profile https://shop.example.com/users/kwisniewski shows the wrong address.\n\n"
        "Kind regards,\nKasia Wiśniewska",
        ["https://shop.example.com/users/kwisniewski", "Kasia Wiśniewska"],
    ),
]
ORIGINALS = [original for _text, originals in TICKETS for original in originals]


def test_an_external_worker_labels_masked_items_only(page, live_server, log_in, artifacts_dir):
    owner = UserFactory(username="olivia")
    project = ProjectFactory(created_by=owner, name="Support tickets", overlap=1)
    for text, _originals in TICKETS:
        ItemFactory(project=project, data={"text": text})
    pool = make_pool(project, name="Prolific")
    pool.kind = Pool.Kind.EXTERNAL_CROWD
    pool.save(update_fields=["kind"])
    worker = UserFactory(username="prolific-5f1a")
    ProjectMember.objects.create(project=project, user=worker, role=ProjectMember.Role.ANNOTATOR)
    join_pool(pool, worker)
    bodies: list[str] = []
    page.on("response", lambda response: bodies.append(response.text()))
    stage_text = page.locator("[data-stage] .label-item-text")

    log_in("prolific-5f1a", next_url=f"/projects/{project.pk}/label/")
    shown = []
    for _ticket in TICKETS:
        expect(stage_text).to_be_visible()
        text = stage_text.inner_text()
        shown.append(text)
        if len(shown) == 1:
            page.screenshot(path=str(artifacts_dir / "labeling-masked.png"), full_page=True)
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        expect(stage_text.or_(page.locator(".label-empty"))).not_to_have_text(text)
    expect(page.get_by_text("Nothing left for you in this project right now")).to_be_visible()
    deadline = time.monotonic() + 5
    while Annotation.objects.filter(author=worker).count() < len(TICKETS):
        assert time.monotonic() < deadline, "the answers never reached the server"
        time.sleep(0.05)

    assert len(set(shown)) == len(TICKETS)
    assert any("[NAME]" in text and "[EMAIL]" in text and "[PHONE]" in text for text in shown)
    assert any("[CARD]" in text and "[IP]" in text and "2024-03-15" in text for text in shown)
    assert any("[URL]" in text for text in shown)
    received = "\n".join([*bodies, page.content()])
    for original in ORIGINALS:
        assert original not in received, original

"""An external worker arrives from Prolific, passes the qualification test, labels until the
quota and sees the completion code, all with the keyboard."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from annotation.models import Annotation
from crowd.external import study_create
from crowd.models import ExternalIdentity, ExternalStudy, QualificationAttempt
from crowd.qualification import qualification_configure
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = [{"value": "positive", "hotkey": "1"}, {"value": "negative", "hotkey": "2"}]
RETURN_URL = "https://app.prolific.com/submissions/complete?cc=PX7Q2K"


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server to catch up"
        time.sleep(0.05)


def test_external_worker_qualifies_labels_to_quota_and_gets_the_code(
    page, live_server, artifacts_dir
):
    owner = UserFactory(username="olivia")
    project = ProjectFactory(created_by=owner, name="Support tickets", labels=LABELS, overlap=1)
    golds = [
        ItemFactory(
            project=project, data={"text": "I love it, thanks!"}, gold={"label": "positive"}
        ),
        ItemFactory(
            project=project, data={"text": "Broken on arrival."}, gold={"label": "negative"}
        ),
    ]
    for n in range(5):
        ItemFactory(
            project=project, data={"text": f"Ticket number {n}: call me at +44 20 7946 0958"}
        )
    qualification_configure(
        project=project,
        item_ids=[gold.pk for gold in golds],
        pass_mark=1.0,
        attempts_allowed=2,
        cooldown_seconds=600,
    )
    study = study_create(
        project=project,
        platform=ExternalStudy.Platform.PROLIFIC,
        quota=3,
        completion_code="PX7Q2K",
        return_url=RETURN_URL,
    )
    query = "PROLIFIC_PID=5f1e2d3c4b5a&STUDY_ID=study-77&SESSION_ID=sess-9001"

    page.goto(f"{live_server.url}/s/{study.slug}/?{query}")

    expect(page.get_by_role("heading", name="Qualification test")).to_be_visible()
    test_text = page.locator(".label-item-text")
    for gold, key in zip(golds, ["1", "2"], strict=True):
        expect(test_text).to_have_text(gold.data["text"])
        page.keyboard.press(key)
    expect(page.get_by_role("heading", name="You passed the qualification test")).to_be_visible()
    identity = ExternalIdentity.objects.get(study=study)
    assert QualificationAttempt.objects.get(worker=identity.user).passed is True

    page.get_by_role("link", name="Start labeling").click()
    stage_text = page.locator("[data-stage] .label-item-text")
    expect(page.locator("#labeling")).to_have_attribute("data-ready", "true")
    for done in range(1, study.quota + 1):
        expect(stage_text).to_be_visible()
        assert "7946" not in stage_text.inner_text()  # external workers see masked phones
        page.keyboard.press("1")  # the label lights up once the page's script listens
        expect(page.locator('[data-label="positive"]')).to_have_attribute("aria-pressed", "true")
        page.keyboard.press("Enter")
        # one answer at a time, as a person works: each is stored before the next key
        _wait_for(lambda done=done: Annotation.objects.filter(author=identity.user).count() == done)
    completion = page.get_by_role("link", name="Get your completion code")
    expect(completion).to_be_visible()
    _wait_for(lambda: Annotation.objects.filter(author=identity.user).count() == study.quota)
    completion.click()

    expect(page.locator("#completion-code")).to_have_text("PX7Q2K")
    expect(page.get_by_role("link", name="Return to Prolific")).to_have_attribute(
        "href", RETURN_URL
    )
    page.screenshot(path=str(artifacts_dir / "external-done.png"), full_page=True)
    identity.refresh_from_db()
    assert identity.completed_at is not None
    assert Annotation.objects.filter(author=identity.user, item__is_gold=True).count() == 0

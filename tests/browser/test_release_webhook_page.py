"""The owner sets the release webhook on its page and sees a real delivery's result there."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from quality.models import ReleaseWebhook
from quality.releases import release_build
from quality.releases.webhooks import release_webhook_deliver
from tests.annotation.factories import ProjectFactory, UserFactory
from tests.quality.factories import label_items, make_release
from tests.quality.test_release_webhook import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_sets_the_webhook_and_sees_deliveries(
    page, live_server, log_in, artifacts_dir, settings, media_root
):
    settings.ASSAY_WEBHOOK_ALLOW_PRIVATE = True
    owner = UserFactory(username="olivia")
    project = ProjectFactory(created_by=owner, name="Product reviews")
    raters = [UserFactory(username=f"rater-{n}") for n in range(2)]
    label_items(project, raters, ["positive", "negative"], count=3)
    release = release_build(release=make_release(project, owner))
    path = f"/projects/{project.pk}/releases/webhook/"
    page.set_default_timeout(15_000)

    with Receiver([500]) as receiver:
        log_in("olivia", next_url=path)
        page.get_by_label("Payload URL").fill("ftp://nowhere")
        page.get_by_label("Secret").fill("a-secret-of-enough-length")
        page.get_by_role("button", name="Save webhook").click()
        expect(page.locator("#url-errors")).to_contain_text("http:// or https://")

        page.get_by_label("Payload URL").fill(receiver.url)
        page.get_by_label("Secret").fill("a-secret-of-enough-length")
        page.get_by_role("button", name="Save webhook").click()
        expect(page.get_by_text("Webhook saved.")).to_be_visible()
        assert ReleaseWebhook.objects.get().url == receiver.url

        release_webhook_deliver(release_id=release.pk)  # the server answers 500
        release_webhook_deliver(release_id=release.pk)  # then 200
    assert len(receiver.requests) == 2

    page.reload()
    rows = page.locator("#deliveries-heading + table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Delivered · 200")
    expect(rows.nth(1)).to_contain_text("Failed · 500")
    expect(page.get_by_label("Payload URL")).to_have_value(receiver.url)
    page.screenshot(path=artifacts_dir / "release-webhook.png", full_page=True)

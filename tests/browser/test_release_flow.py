"""The owner builds a release in the UI, watches its progress, reads the datasheet, and
downloads a file whose sha256 matches the manifest."""

from __future__ import annotations

import hashlib
import re
from unittest import mock

import pytest
from playwright.sync_api import expect

from quality import release_tasks
from quality.models import Release
from quality.releases import release_build, release_create
from tests.annotation.factories import ProjectFactory, UserFactory
from tests.quality.factories import label_items

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_builds_watches_reads_and_downloads(page, live_server, log_in, artifacts_dir):
    owner = UserFactory(username="olivia")
    project = ProjectFactory(
        created_by=owner,
        name="Product reviews",
        instructions="Is the review **positive** or **negative**?",
    )
    raters = [UserFactory(username=f"rater-{n}") for n in range(3)]
    label_items(project, raters, ["positive", "positive", "negative"], count=6)
    list_path = f"/projects/{project.pk}/releases/"
    enqueued: list[int] = []
    page.set_default_timeout(15_000)  # a loaded CI box: the server thread can be slow

    with mock.patch.object(
        release_tasks.release_build_task, "delay_on_commit", side_effect=enqueued.append
    ):
        log_in("olivia", next_url=list_path)
        page.get_by_label("Name").fill("Spring cut")
        page.get_by_role("button", name="Build new version").click()
        page.wait_for_url(re.compile(r".*/releases/\d+/$"))

    (release_id,) = enqueued
    status = page.locator("#release-status")
    expect(status).to_contain_text("Building the files. This page updates by itself.")
    expect(status).to_contain_text("0% done")

    Release.objects.filter(pk=release_id).update(status=Release.Status.BUILDING, progress=0.4)
    expect(status).to_contain_text("40% done")  # the page polls the status every second

    release = release_build(release=Release.objects.get(pk=release_id))
    assert release.status == Release.Status.READY, release.error

    expect(page.get_by_role("heading", name="Files")).to_be_visible()
    expect(status).not_to_contain_text("Building the files")
    expect(page.locator(".stat-value").first).to_have_text("6")  # items
    # the datasheet arrives with the first full page load after the build
    page.reload()
    datasheet = page.locator("#release-datasheet")
    expect(datasheet.get_by_role("heading", name="Gold accuracy")).to_be_visible()
    expect(datasheet.get_by_role("heading", name="Label distribution")).to_be_visible()
    expect(datasheet.locator("blockquote strong").first).to_have_text("positive")
    expect(page.locator("#release-file-datasheet")).to_contain_text("datasheet.md")
    page.screenshot(path=str(artifacts_dir / "release-detail.png"), full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download JSONL").click()
    download = info.value
    saved = artifacts_dir / "release-download.jsonl"
    download.save_as(saved)
    release.refresh_from_db()
    listed = {entry["format"]: entry for entry in release.manifest["files"]}
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == listed["jsonl"]["sha256"]
    assert download.suggested_filename == "product-reviews-v1.jsonl"
    assert len(saved.read_bytes().splitlines()) == 6


def test_owner_compares_two_versions(page, live_server, log_in, artifacts_dir):
    owner = UserFactory(username="olivia")
    project = ProjectFactory(created_by=owner, name="Product reviews")
    raters = [UserFactory(username=f"rater-{n}") for n in range(3)]
    label_items(project, raters, ["positive", "positive", "negative"], count=3)
    with mock.patch.object(release_tasks.release_build_task, "delay_on_commit"):
        release_build(release=release_create(project=project, user=owner))
        label_items(project, raters, ["negative", "negative", "positive"], count=2)
        v2 = release_build(release=release_create(project=project, user=owner))
    page.set_default_timeout(15_000)

    log_in("olivia", next_url=f"/releases/{v2.pk}/")
    page.get_by_role("button", name="Compare with v2").click()
    page.wait_for_url(re.compile(r".*/releases/diff/\?to=2&from=1$"))

    expect(page.locator("#diff-added")).to_have_text("2")
    expect(page.locator("#diff-unchanged")).to_have_text("3")
    expect(page.locator(".diff-table tbody tr")).to_have_count(2)
    page.get_by_label("Show").select_option("changed")
    page.get_by_role("button", name="Compare").click()  # htmx swaps the results in place
    expect(page.locator(".diff-table tbody")).to_contain_text("No changed items differ")
    page.get_by_label("Show").select_option("")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator(".diff-table tbody tr")).to_have_count(2)
    page.screenshot(path=str(artifacts_dir / "release-diff.png"), full_page=True)

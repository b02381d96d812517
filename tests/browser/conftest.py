"""Headless Chromium for browser tests: `browser` (one per module) and `page` (one per test).

Use with `pytest.mark.browser`, `pytest.mark.django_db(transaction=True)` and pytest-django's
`live_server`: the app then runs in the server thread against the same test database.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

CHROMIUM = os.environ.get("ASSAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright gives every launch a new, empty profile dir."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django then refuses ORM calls
    # made from the test body unless told that this (synchronous) test code is safe.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies, no storage) and one page in it."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(5000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts_dir() -> Path:
    """Where screenshots go (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def log_in(page, live_server):
    """Log in through the login form as `username`, landing on `next_url`."""

    def _log_in(username: str, *, next_url: str = "/", password: str = "pass-word-123") -> None:
        page.goto(f"{live_server.url}/accounts/login/?next={next_url}")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_label("Password").press("Enter")
        page.wait_for_url(f"{live_server.url}{next_url}")
        if page.locator("#labeling").count():  # keys typed before the page's script runs are lost
            expect(page.locator("#labeling")).to_have_attribute("data-ready", "true")

    return _log_in

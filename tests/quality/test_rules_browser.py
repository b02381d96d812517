"""In Chromium: an owner adds rules on the rules page (a slow pattern is refused in place), runs
them and reads their stats."""

from __future__ import annotations

from unittest import mock

import pytest
from playwright.sync_api import expect

from quality.rules.running import rules_run
from quality.rules.tasks import rules_run_task
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory

# The browser fixtures live in tests/browser/conftest.py, which only applies to that folder.
from tests.browser.conftest import artifacts_dir, browser, log_in, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXTS = [
    ("A great film with a great cast.", 5),
    ("Awful pacing, I want a refund.", 1),
    ("Great music but an awful ending.", 3),
    ("Nothing much to say.", 4),
]


@pytest.fixture
def rules_project():
    owner = UserFactory(username="olivia")
    project = ProjectFactory(created_by=owner, name="Film reviews — sentiment")
    for text, stars in TEXTS:
        ItemFactory(project=project, data={"text": text, "stars": stars})
    ItemFactory(project=project, data={"text": "great!", "stars": 5}, gold={"label": "positive"})
    return project


def test_owner_adds_and_runs_rules(page, live_server, log_in, artifacts_dir, rules_project):  # noqa: F811
    project = rules_project
    url = f"/projects/{project.pk}/rules/"
    # The page's writes queue a run on commit; here it runs in the server thread right away.
    runs = mock.patch.object(
        rules_run_task, "delay", side_effect=lambda pk: rules_run(project=project)
    )
    with runs:
        log_in("olivia", next_url=url)
        form = page.locator("#rule-form")
        form.get_by_label("Name").fill("Backtracking")
        form.get_by_label("Kind").select_option("regex")
        form.get_by_label("Label").select_option("positive")
        form.get_by_label("Regular expression").fill("(a+)+$")
        form.get_by_role("button", name="Add rule").click()
        expect(page.locator("#pattern-errors")).to_contain_text("too slow")
        page.screenshot(path=str(artifacts_dir / "rules-error.png"), full_page=True)

        form.get_by_label("Name").fill("Praise")
        form.get_by_label("Kind").select_option("keywords")
        form.get_by_label("Regular expression").fill("")
        form.get_by_label("Keywords").fill("great\nwell done")
        with page.expect_navigation():
            form.get_by_role("button", name="Add rule").click()
        expect(page.locator("tbody")).to_contain_text("Praise")

        form = page.locator("#rule-form")
        form.get_by_label("Name").fill("Complaints")
        form.get_by_label("Kind").select_option("regex")
        form.get_by_label("Label").select_option("negative")
        form.get_by_label("Regular expression").fill(r"\b(awful|refund)\b")
        form.get_by_label("Ignore case").check()
        with page.expect_navigation():
            form.get_by_role("button", name="Add rule").click()
        expect(page.locator("tbody tr")).to_have_count(2)
        with page.expect_navigation():  # the run happens before the page reloads
            page.get_by_role("button", name="Run rules").click()
        expect(page.locator("tbody tr").first).to_contain_text("50%")

    first = page.locator("tbody tr").first
    expect(first).to_contain_text("Praise")
    expect(first).to_contain_text("(2/4)")
    expect(first).to_contain_text("100% n=1")  # the gold item
    expect(page.locator("#rules-run")).to_contain_text("Last run")
    page.screenshot(path=str(artifacts_dir / "rules.png"), full_page=True)

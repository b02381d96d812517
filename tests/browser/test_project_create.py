"""An owner creates a rating project with the keyboard: the options follow the picked type."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotation.models import Project
from annotation.task_types import task_type_choices
from tests.annotation.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_picks_rating_with_the_keyboard_and_sets_the_scale(
    page, live_server, log_in, artifacts_dir
):
    UserFactory(username="olivia")
    keys = [key for key, _name in task_type_choices()]
    log_in("olivia", next_url="/projects/new/")
    page.get_by_label("Name").fill("Helpfulness")
    expect(page.locator("textarea[name='labels']")).to_be_visible()

    picked = page.locator("#id_task_type_single_label")
    picked.focus()
    for _step in range(keys.index("rating")):
        page.keyboard.press("ArrowDown")  # radio groups move and pick with the arrow keys
    expect(page.locator("#id_task_type_rating")).to_be_checked()
    expect(page.locator("#id_task_type_rating")).to_be_focused()
    highest = page.get_by_label("Highest rating")
    expect(highest).to_be_visible()  # swapped in by htmx, without a reload
    expect(page.locator("textarea[name='labels']")).to_have_count(0)
    expect(page.get_by_label("Name")).to_have_value("Helpfulness")
    page.get_by_label("Lowest rating").fill("0")
    highest.fill("4")
    page.screenshot(path=str(artifacts_dir / "project-create-rating.png"), full_page=True)
    page.get_by_role("button", name="Create project").click()

    page.wait_for_url(f"{live_server.url}/projects/*/")
    project = Project.objects.get(name="Helpfulness")
    assert (project.task_type, project.task_options) == ("rating", {"scale_min": 0, "scale_max": 4})
    summary = page.locator(".task-summary")
    expect(summary).to_contain_text("Rating")
    expect(summary).to_contain_text("Highest rating")
    page.screenshot(path=str(artifacts_dir / "project-overview-rating.png"), full_page=True)


def test_owner_sees_label_colours_after_validation_and_spans_options(
    page, live_server, log_in, artifacts_dir
):
    UserFactory(username="olivia")
    log_in("olivia", next_url="/projects/new/")
    page.get_by_label("Name").fill("Entities")
    page.locator("#id_task_type_spans").check()
    relations = page.get_by_label("Relation labels")
    expect(relations).to_be_visible()
    page.locator("textarea[name='labels']").fill("person | p | #aa3377\nplace | l")
    relations.fill("lives in")
    page.get_by_label("Overlap", exact=True).fill(
        "0"
    )  # refused by the service: the page comes back

    page.get_by_role("button", name="Create project").click()

    preview = page.locator(".label-preview li")
    expect(preview).to_have_count(2)
    expect(preview.first).to_contain_text("#aa3377")
    expect(page.locator(".field-invalid").get_by_label("Overlap", exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "project-create-spans-errors.png"), full_page=True)
    page.get_by_label("Overlap", exact=True).fill("2")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(f"{live_server.url}/projects/*/")
    project = Project.objects.get(name="Entities")
    assert project.task_type == "spans"
    assert project.task_options["relation_labels"] == ["lives in"]
    assert [label["colour"] for label in project.labels] == ["#aa3377", "#d55e00"]

"""Hostile text in a project never runs in the browser, and our pages break no CSP rule.

Project name, instructions, labels, item text and release name and notes all carry script tags,
event-handler attributes and `javascript:` links; the overview, labeling, review, release and
quality pages are opened in Chromium and must neither run them nor open a dialog.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from quality.releases import release_build
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import make_release

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
SVG = '<svg onload="window.__pwned=1"></svg>'
HOSTILE = f"Evil {SCRIPT} {IMG} {SVG}"
INSTRUCTIONS = (
    f"Read carefully. {SCRIPT}\n\n{IMG}\n\n"
    "[a link](javascript:window.__pwned=1) and "
    '<a href="javascript:window.__pwned=1">another</a> '
    '<iframe src="javascript:window.__pwned=1"></iframe>'
)
LABELS = [
    {"value": f"good {IMG}", "hotkey": "1", "colour": "#1b9e77"},
    {"value": f"bad {SCRIPT}", "hotkey": "2", "colour": 'red" onmouseover="window.__pwned=1'},
]
# Records CSP violations before any page script runs (Playwright injects this past the CSP).
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture
def hostile_project():
    owner = UserFactory(username="olivia")
    project = ProjectFactory(
        created_by=owner, name=HOSTILE[:200], instructions=INSTRUCTIONS, labels=LABELS
    )
    raters = [UserFactory(username=f"rater-{n}") for n in range(3)]
    for n in range(3):
        item = ItemFactory(project=project, data={"text": f"Item {n}: {HOSTILE}"})
        for rater, label in zip(raters, [0, 0, 1], strict=True):
            AnnotationFactory(item=item, author=rater, value={"label": LABELS[label]["value"]})
    ItemFactory(project=project, data={"text": f"Unlabelled: {HOSTILE}"})
    make_annotator(project, "walter")
    release = make_release(project, owner, name=f"v1 {SCRIPT}", notes=INSTRUCTIONS)
    release = release_build(release=release)
    return project, release


@pytest.fixture
def watched(page):
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script(WATCH)
    return dialogs


def assert_inert(page, dialogs: list[str], where: str) -> None:
    page.wait_for_load_state("load")
    page.mouse.move(10, 10)
    page.mouse.move(400, 300)
    assert page.evaluate("typeof window.__pwned") == "undefined", where
    assert dialogs == [], where
    # Only the hostile markup may be refused; our own scripts, styles and images never are.
    own = [
        violation
        for violation in page.evaluate("window.__violations")
        if "inline" not in violation and "javascript" not in violation
    ]
    assert own == [], where


def test_hostile_text_stays_inert_on_every_page(
    page, live_server, log_in, hostile_project, watched
):
    project, release = hostile_project
    dialogs = watched
    page.set_default_timeout(15_000)

    log_in("olivia", next_url=f"/projects/{project.pk}/")
    # The policy is live: a script injected inline is refused, and the refusal is seen.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__probe = 1'; document.body.append(s); }"
    )
    page.wait_for_function("window.__violations.length > 0")
    assert page.evaluate("typeof window.__probe") == "undefined"
    assert page.evaluate("window.__violations")[0].startswith("script-src")
    page.evaluate("window.__violations.length = 0")
    expect(page.locator("body")).to_contain_text("window.__pwned=1")  # shown as text
    assert_inert(page, dialogs, "overview")
    for link in page.locator("a[href^='javascript']").all():
        link.click(force=True)
    assert_inert(page, dialogs, "overview after clicking links")

    for path, where in [
        (f"/projects/{project.pk}/review/", "review"),
        (f"/releases/{release.pk}/", "release"),
        (f"/projects/{project.pk}/releases/", "release list"),
        (f"/projects/{project.pk}/quality/", "quality dashboard"),
        (f"/projects/{project.pk}/settings/", "settings"),
    ]:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None, where
        assert response.status == 200, where
        assert_inert(page, dialogs, where)

    page.context.clear_cookies()
    log_in("walter", next_url=f"/projects/{project.pk}/label/")
    expect(page.locator("#labeling")).to_contain_text("window.__pwned=1")
    assert_inert(page, dialogs, "labeling")
    page.keyboard.press("1")
    page.wait_for_timeout(300)
    assert_inert(page, dialogs, "labeling after an answer")

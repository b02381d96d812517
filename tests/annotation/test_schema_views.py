from __future__ import annotations

import html
import json
import re

import pytest
from django.urls import reverse

from annotation.models import Annotation, LabelSchemaVersion, ProjectMember
from annotation.services import project_create, project_member_set
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def live(owner):
    project = project_create(user=owner, name="Live", labels=["good", "bad", "meh"])
    item = ItemFactory(project=project)
    AnnotationFactory(item=item, value={"label": "bad"})
    AnnotationFactory(item=item, value={"label": "meh"})
    return project


def urls(project):
    return {
        name: reverse(f"schema:schema-{name}", args=[project.pk])
        for name in ("page", "preview", "apply")
    }


def hidden(response, name):
    """The value of a hidden input of the (last) form in the response."""
    found = re.findall(rf'name="{name}" value="([^"]*)"', response.content.decode())
    return html.unescape(found[-1])


def step(client, project, **fields):
    data = {"operations": "[]", "action": "add", "op": "rename", **fields}
    return client.post(urls(project)["preview"], data, **HTMX)


def test_owner_sees_labels_history_and_the_editor(client, live, owner):
    client.force_login(owner)

    response = client.get(urls(live)["page"])

    page = response.content.decode()
    assert response.status_code == 200
    assert "Current labels" in page
    assert 'id="schema-editor"' in page
    assert "Initial label set" in page  # version 1 in the history


def test_reviewer_sees_the_history_without_the_editor(client, live):
    reviewer = UserFactory(username="checker")
    project_member_set(project=live, user=reviewer, role=ProjectMember.Role.REVIEWER)
    client.force_login(reviewer)

    page = client.get(urls(live)["page"])
    preview = step(client, live, label="bad", value="poor")

    assert page.status_code == 200
    assert 'id="schema-editor"' not in page.content.decode()
    assert "schema-history" in page.content.decode()
    assert preview.status_code == 403


def test_workers_are_refused_and_strangers_see_nothing(client, live, outsider):
    client.force_login(make_annotator(live, "labeler"))
    assert client.get(urls(live)["page"]).status_code == 403
    client.force_login(outsider)
    assert client.get(urls(live)["page"]).status_code == 404


def test_htmx_flow_composes_previews_and_confirms_a_change(client, live, owner):
    client.force_login(owner)

    first = step(client, live, op="rename", label="bad", value="poor")
    second = step(client, live, operations=hidden(first, "operations"), op="retire", label="meh")
    token = hidden(second, "token")
    confirmed = client.post(
        urls(live)["apply"],
        {"operations": hidden(second, "operations"), "token": token, "note": "Tidy up"},
        **HTMX,
    )

    assert first.status_code == 200
    fragment = second.content.decode()
    assert "<html" not in fragment  # the editor partial only
    assert "Rename bad to poor" in fragment
    assert "Retire meh" in fragment
    assert re.search(r"<td>meh</td>\s*<td><strong>relabel</strong>", fragment)
    assert re.search(r"Answers set aside</dt><dd>1</dd>", fragment)
    assert json.loads(hidden(second, "operations")) == [
        {"op": "rename", "label": "bad", "to": "poor"},
        {"op": "retire", "label": "meh"},
    ]
    assert confirmed.status_code == 200
    assert confirmed["HX-Redirect"] == urls(live)["page"]
    version = LabelSchemaVersion.objects.get(project=live, number=2)
    assert (version.mapping, version.note, version.created_by) == (
        {"bad": "poor", "meh": None},
        "Tidy up",
        owner,
    )
    values = sorted(a.value["label"] for a in Annotation.objects.filter(superseded_at=None))
    assert values == ["poor"]
    history = client.get(urls(live)["page"]).content.decode()
    assert "bad → poor" in history
    assert "meh → relabel" in history


def test_an_invalid_step_keeps_the_pending_changes_and_says_why(client, live, owner):
    client.force_login(owner)
    first = step(client, live, op="rename", label="bad", value="poor")

    bad = step(client, live, operations=hidden(first, "operations"), op="retire", label="nope")

    assert bad.status_code == 422
    assert "operations[1].label: There is no label &#x27;nope&#x27;." in bad.content.decode()
    assert json.loads(hidden(bad, "operations")) == [{"op": "rename", "label": "bad", "to": "poor"}]


def test_undo_and_start_over(client, live, owner):
    client.force_login(owner)
    first = step(client, live, op="rename", label="bad", value="poor")
    second = step(client, live, operations=hidden(first, "operations"), op="retire", label="meh")

    undone = step(client, live, operations=hidden(second, "operations"), action="remove")
    cleared = step(client, live, operations=hidden(second, "operations"), action="clear")

    assert json.loads(hidden(undone, "operations")) == [
        {"op": "rename", "label": "bad", "to": "poor"}
    ]
    assert json.loads(hidden(cleared, "operations")) == []
    assert 'id="schema-plan"' not in cleared.content.decode()


def test_confirming_with_a_stale_token_is_refused(client, live, owner):
    client.force_login(owner)
    first = step(client, live, op="rename", label="bad", value="poor")

    response = client.post(
        urls(live)["apply"],
        {"operations": hidden(first, "operations"), "token": "0" * 64},
        **HTMX,
    )

    assert response.status_code == 422
    assert "token: The label set or its plan changed" in response.content.decode()
    assert not LabelSchemaVersion.objects.filter(project=live, number=2).exists()


def test_without_htmx_the_preview_is_the_whole_page_and_confirm_redirects(client, live, owner):
    client.force_login(owner)
    data = {"operations": "[]", "action": "add", "op": "add", "value": "great", "hotkey": "g"}

    preview = client.post(urls(live)["preview"], data)
    confirmed = client.post(
        urls(live)["apply"],
        {"operations": hidden(preview, "operations"), "token": hidden(preview, "token")},
    )

    assert "<html" in preview.content.decode()
    assert confirmed.status_code == 302
    live.refresh_from_db()
    assert live.labels[-1] == {"value": "great", "hotkey": "g", "colour": "#cc79a7"}


def test_tampered_pending_changes_are_reported(client, live, owner):
    client.force_login(owner)

    response = step(client, live, operations="{not json")

    assert response.status_code == 422
    assert "unreadable" in response.content.decode()


def test_page_query_count_does_not_grow_with_history(
    client, live, owner, django_assert_max_num_queries
):
    client.force_login(owner)
    for n in range(4):
        preview = step(client, live, op="add", value=f"extra{n}")
        client.post(
            urls(live)["apply"],
            {"operations": hidden(preview, "operations"), "token": hidden(preview, "token")},
        )

    with django_assert_max_num_queries(8):
        response = client.get(urls(live)["page"])

    assert response.content.decode().count("Add extra") == 4

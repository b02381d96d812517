"""The labeling rules page and API: flows, field errors, permissions, query counts."""

from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse

from annotation.models import Prediction
from quality.models import LabelingRule
from quality.rules.running import rules_run
from quality.rules.services import rule_create
from quality.rules.tasks import rules_run_task
from tests.annotation.factories import ItemFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def no_broker():
    """Runs are queued on commit; the tests run them by hand."""
    with mock.patch.object(rules_run_task, "delay") as delay:
        yield delay


def _rule(project, name="great", **kwargs):
    fields = {"kind": "keywords", "label": "positive", "config": {"keywords": [name]}}
    fields.update(kwargs)
    return rule_create(project=project, user=project.created_by, name=name, **fields)


def page_url(project):
    return reverse("rules:rule-list", args=[project.pk])


def api_list(project):
    return reverse("api:rule-list", args=[project.pk])


def api_detail(rule):
    return reverse("api:rule-detail", args=[rule.project_id, rule.pk])


# --- page -------------------------------------------------------------------------------------


def test_page_lists_rules_with_stats(client, owner, project, django_assert_max_num_queries):
    ItemFactory(project=project, data={"text": "great"})
    ItemFactory(project=project, data={"text": "meh"})
    for n in range(5):
        _rule(project, name=f"word{n}")
    _rule(project, name="great")
    rules_run(project=project)
    client.force_login(owner)

    with django_assert_max_num_queries(7):
        response = client.get(page_url(project))

    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="rule-form"' in body
    assert "50%" in body  # "great" covers one of two items
    assert "Last run" in body
    assert "Run rules" in body


def test_page_add_rule_with_htmx(client, owner, project, django_capture_on_commit_callbacks):
    client.force_login(owner)
    data = {"name": "Refunds", "kind": "regex", "label": "negative", "pattern": r"refund\w*"}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page_url(project), data, **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == page_url(project)
    rule = LabelingRule.objects.get(project=project)
    assert rule.config == {"pattern": r"refund\w*", "field": "text", "ignore_case": False}
    rules_run_task.delay.assert_called_with(project.pk)


def test_page_add_rule_shows_field_errors(client, owner, project):
    client.force_login(owner)
    data = {"name": "Bad", "kind": "regex", "label": "negative", "pattern": "(a+)+$"}

    response = client.post(page_url(project), data, **HTMX)

    body = response.content.decode()
    assert response.status_code == 422
    assert 'id="pattern-errors"' in body
    assert "too slow" in body
    assert not LabelingRule.objects.exists()


def test_page_invalid_keyword_error_lands_on_keywords(client, owner, project):
    client.force_login(owner)
    data = {"name": "Empty", "kind": "keywords", "label": "positive", "keywords": "  "}

    response = client.post(page_url(project), data, **HTMX)

    assert response.status_code == 422
    assert 'id="keywords-errors"' in response.content.decode()


def test_page_edit_switch_delete_and_run(client, owner, project):
    rule = _rule(project)
    client.force_login(owner)
    edit = reverse("rules:rule-edit", args=[project.pk, rule.pk])

    form = client.get(edit, **HTMX)
    assert form.status_code == 200
    assert 'value="great"' in form.content.decode()
    saved = client.post(
        edit, {"name": "great!", "kind": "keywords", "label": "negative", "keywords": "bad\nworse"}
    )
    assert saved.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.label, rule.config["keywords"]) == (
        "great!",
        "negative",
        ["bad", "worse"],
    )

    client.post(reverse("rules:rule-active", args=[project.pk, rule.pk]), **HTMX)
    rule.refresh_from_db()
    assert rule.active is False

    run = client.post(reverse("rules:rule-run", args=[project.pk]), **HTMX)
    assert run["HX-Redirect"] == page_url(project)

    client.post(reverse("rules:rule-delete", args=[project.pk, rule.pk]), **HTMX)
    assert not LabelingRule.objects.filter(pk=rule.pk).exists()


def test_page_run_panel_polls_until_done(client, owner, project):
    ItemFactory(project=project, data={"text": "great"})
    _rule(project)  # queues a run
    client.force_login(owner)

    queued = client.get(page_url(project), **HTMX)

    assert queued.status_code == 200
    assert "Run queued" in queued.content.decode()
    assert 'hx-trigger="every 2s"' in queued.content.decode()

    rules_run(project=project)
    done = client.get(page_url(project), **HTMX)

    assert done.status_code == 286  # htmx stops polling
    assert "Last run" in done.content.decode()


def test_page_reviewer_reads_only(client, project, reviewer):
    rule = _rule(project)
    client.force_login(reviewer)

    page = client.get(page_url(project))
    post = client.post(page_url(project), {"name": "x"})
    edit = client.get(reverse("rules:rule-edit", args=[project.pk, rule.pk]))
    run = client.post(reverse("rules:rule-run", args=[project.pk]))

    assert page.status_code == 200
    assert 'id="rule-form"' not in page.content.decode()
    assert "Run rules" not in page.content.decode()
    assert (post.status_code, edit.status_code, run.status_code) == (403, 403, 403)


def test_page_annotators_and_outsiders_are_kept_out(client, project, outsider):
    annotator = make_annotator(project, "ann")
    client.force_login(annotator)
    assert client.get(page_url(project)).status_code == 403
    client.force_login(outsider)
    assert client.get(page_url(project)).status_code == 404


def test_page_rule_of_another_project_is_404(client, owner, project):
    from tests.annotation.factories import ProjectFactory

    other = _rule(ProjectFactory(created_by=owner))
    client.force_login(owner)

    response = client.post(reverse("rules:rule-delete", args=[project.pk, other.pk]))

    assert response.status_code == 404
    assert LabelingRule.objects.filter(pk=other.pk).exists()


# --- API --------------------------------------------------------------------------------------


def test_api_crud_and_run(client_for, owner, project, django_capture_on_commit_callbacks):
    ItemFactory(project=project, data={"text": "Great stuff"})
    api = client_for(owner)
    body = {
        "name": "great",
        "kind": "keywords",
        "label": "positive",
        "config": {"keywords": ["great"]},
    }

    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(api_list(project), body, format="json")

    assert created.status_code == 201
    rule = LabelingRule.objects.get(pk=created.data["id"])
    assert created.data["config"] == {"keywords": ["great"], "field": "text"}
    rules_run_task.delay.assert_called_with(project.pk)

    rules_run(project=project)
    listed = api.get(api_list(project))
    assert listed.data[0]["stats"]["coverage"] == 1.0
    assert Prediction.objects.filter(project=project, source="rule").count() == 1

    patched = api.patch(api_detail(rule), {"active": False}, format="json")
    assert patched.status_code == 200
    assert patched.data["active"] is False

    run = api.post(reverse("api:rule-run", args=[project.pk]))
    assert run.status_code == 202
    assert set(run.data) == {"running", "state", "done", "ran_at"}

    assert api.delete(api_detail(rule)).status_code == 204
    assert not LabelingRule.objects.exists()


def test_api_field_errors(client_for, owner, project):
    api = client_for(owner)
    body = {"name": "x", "kind": "regex", "label": "positive", "config": {"pattern": "(x"}}

    response = api.post(api_list(project), body, format="json")

    assert response.status_code == 400
    assert response.data["fields"]["config.pattern"][0].startswith("Invalid regular expression")


def test_api_patch_checks_the_merged_rule(client_for, owner, project):
    rule = _rule(project)

    response = client_for(owner).patch(api_detail(rule), {"label": "nope"}, format="json")

    assert response.status_code == 400
    assert "label" in response.data["fields"]


def test_api_permissions(client_for, project, reviewer, outsider):
    rule = _rule(project)
    annotator = make_annotator(project, "ann")
    body = {"name": "x", "kind": "keywords", "label": "positive", "config": {"keywords": ["x"]}}

    as_reviewer = client_for(reviewer)
    assert as_reviewer.get(api_list(project)).status_code == 200
    assert as_reviewer.get(api_detail(rule)).status_code == 200
    assert as_reviewer.post(api_list(project), body, format="json").status_code == 403
    assert as_reviewer.patch(api_detail(rule), {"active": False}, format="json").status_code == 403
    assert as_reviewer.delete(api_detail(rule)).status_code == 403
    assert as_reviewer.post(reverse("api:rule-run", args=[project.pk])).status_code == 403
    assert client_for(annotator).get(api_list(project)).status_code == 403
    assert client_for(outsider).get(api_list(project)).status_code == 404
    assert client_for(None).get(api_list(project)).status_code in (401, 403)


def test_api_list_queries(client_for, owner, project, django_assert_max_num_queries):
    for n in range(10):
        _rule(project, name=f"w{n}")
    api = client_for(owner)

    with django_assert_max_num_queries(3):
        response = api.get(api_list(project))

    assert len(response.data) == 10

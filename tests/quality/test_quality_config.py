"""The project's quality configuration: service validation, the settings page and the API."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import ProjectMember
from annotation.services import project_member_set
from quality.models import QualityConfig
from quality.services import quality_config_get, quality_config_update
from quality.spam import DEFAULT_RULES, rules_to_json
from quality.tasks import quality_recompute_task
from tests.annotation.factories import UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

RULE = {"signal": "burst", "op": ">", "threshold": 0.4, "min_evidence": 30, "action": "flag"}


@pytest.fixture(autouse=True)
def no_tasks():
    cache.clear()
    with mock.patch.object(quality_recompute_task, "apply_async") as apply_async:
        yield apply_async
    cache.clear()


def form_data(**overrides):
    data = {
        "method": "ds",
        "confidence_threshold": "0.8",
        "max_overlap": "6",
        "review_enabled": "on",
        "gold_rate_onboarding": "0.4",
        "gold_rate_floor": "0.1",
        "gold_onboarding_count": "10",
        "gold_accuracy_bar": "0.75",
        "gold_retire_after": "30",
        "reliable_bar": "0.9",
        "skill_name": "sentiment",
        "rule_signal": ["burst", ""],
        "rule_op": [">", "<"],
        "rule_threshold": ["0.4", ""],
        "rule_min_evidence": ["30", ""],
        "rule_action": ["flag", "flag"],
    }
    data.update(overrides)
    return data


def test_config_is_created_with_defaults_on_first_use(project):
    assert not QualityConfig.objects.exists()

    config = quality_config_get(project=project)

    assert (config.method, config.confidence_threshold, config.spam_rules) == ("auto", 0.7, [])
    assert quality_config_get(project=project).pk == config.pk


def test_update_stores_canonical_rules_and_schedules_a_recompute(
    project, django_capture_on_commit_callbacks, no_tasks
):
    with django_capture_on_commit_callbacks(execute=True):
        config = quality_config_update(
            project=project,
            method="mace",
            spam_rules=[{**RULE, "threshold": "0.4", "min_evidence": "30"}],
        )

    config.refresh_from_db()
    assert config.method == "mace"
    assert config.spam_rules == [RULE]
    assert no_tasks.call_count == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"confidence_threshold": 1.5}, "confidence_threshold", "Between 0 and 1"),
        ({"method": "oracle"}, "method", "Choose one of"),
        ({"max_overlap": 2}, "max_overlap", "project's overlap (3)"),
        ({"gold_rate_floor": 0.6, "gold_rate_onboarding": 0.5}, "gold_rate_floor", "floor"),
        ({"gold_accuracy_bar": 0}, "gold_accuracy_bar", "Above 0"),
        ({"gold_retire_after": 0}, "gold_retire_after", "At least 1"),
        ({"spam_rules": [{**RULE, "threshold": 7}]}, "spam_rules", "Rule 1: threshold 7"),
        ({"spam_rules": [RULE, {**RULE, "signal": "luck"}]}, "spam_rules", "Rule 2: signal"),
        ({"colour": "red"}, "colour", "Unknown setting"),
    ],
)
def test_update_rejects_bad_values_per_field(project, fields, field, message):
    with pytest.raises(ValidationError) as caught:
        quality_config_update(project=project, **fields)

    assert message in " ".join(caught.value.message_dict[field])
    assert quality_config_get(project=project).confidence_threshold == 0.7  # nothing saved


# --- the settings page ---------------------------------------------------------------------------


def test_settings_page_shows_the_default_rules_and_saves(client, project, owner):
    client.force_login(owner)
    url = reverse("quality:settings", args=[project.pk])

    page = client.get(url)
    assert page.status_code == 200
    content = page.content.decode()
    assert "These are the default rules." in content
    assert content.count('name="rule_signal"') == len(DEFAULT_RULES) + 1  # and a blank row
    assert '<option value="glad"' in content
    assert reverse("label_import:label-import", args=[project.pk]) in content

    saved = client.post(url, form_data())

    assert saved.status_code == 302
    config = quality_config_get(project=project)
    assert (config.method, config.max_overlap, config.skill_name) == ("ds", 6, "sentiment")
    assert (config.review_enabled, config.auto_actions) == (True, False)
    assert config.spam_rules == [RULE]


def test_settings_saved_with_the_default_rules_keep_following_the_defaults(client, project, owner):
    client.force_login(owner)
    defaults = rules_to_json(DEFAULT_RULES)
    data = form_data(
        rule_signal=[r["signal"] for r in defaults],
        rule_op=[r["op"] for r in defaults],
        rule_threshold=[str(r["threshold"]) for r in defaults],
        rule_min_evidence=[str(r["min_evidence"]) for r in defaults],
        rule_action=[r["action"] for r in defaults],
    )

    assert client.post(reverse("quality:settings", args=[project.pk]), data).status_code == 302
    assert quality_config_get(project=project).spam_rules == []


def test_settings_page_shows_errors_per_field_and_per_rule(client, project, owner):
    client.force_login(owner)
    url = reverse("quality:settings", args=[project.pk])
    data = form_data(
        confidence_threshold="1.5",
        rule_signal=["burst", "gold_accuracy", ""],
        rule_op=[">", "<", "<"],
        rule_threshold=["0.4", "3", ""],
        rule_min_evidence=["30", "ten", ""],
        rule_action=["flag", "exclude", "flag"],
    )

    response = client.post(url, data)

    assert response.status_code == 422
    content = response.content.decode()
    assert "Between 0 and 1." in content
    assert "threshold 3 for gold_accuracy must be between 0 and 1." in content
    assert "min_evidence &#x27;ten&#x27; must be a whole number" in content
    row_two = content[content.index('id="rule-2"') :]
    assert row_two.index("threshold 3") < row_two.index('id="rule-3"')  # shown under its row
    assert 'value="ten"' in content  # what was typed is kept
    assert quality_config_get(project=project).confidence_threshold == 0.7


def test_settings_page_rejects_an_invalid_form_field(client, project, owner):
    client.force_login(owner)

    response = client.post(
        reverse("quality:settings", args=[project.pk]), form_data(max_overlap="many")
    )

    assert response.status_code == 422
    assert b"Enter a whole number." in response.content


@pytest.fixture
def people(project):
    reviewer = UserFactory(username="rev")
    project_member_set(project=project, user=reviewer, role=ProjectMember.Role.REVIEWER)
    return {
        "reviewer": reviewer,
        "annotator": make_annotator(project, "ann"),
        "outsider": UserFactory(username="out"),
    }


@pytest.mark.parametrize(
    ("who", "expected"), [("reviewer", 403), ("annotator", 403), ("outsider", 404)]
)
def test_settings_page_is_for_owners_only(client, project, people, who, expected):
    client.force_login(people[who])
    url = reverse("quality:settings", args=[project.pk])

    assert client.get(url).status_code == expected
    assert client.post(url, form_data()).status_code == expected
    assert quality_config_get(project=project).method == "auto"


def test_settings_page_needs_a_login(client, project):
    response = client.get(reverse("quality:settings", args=[project.pk]))

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_owners_see_the_quality_tabs(client, project, owner, people):
    client.force_login(owner)
    page = client.get(reverse("quality:settings", args=[project.pk])).content.decode()
    assert reverse("quality:actions", args=[project.pk]) in page

    client.force_login(people["reviewer"])
    dashboard = client.get(reverse("quality:dashboard", args=[project.pk])).content.decode()
    assert reverse("quality:settings", args=[project.pk]) not in dashboard


# --- API ---------------------------------------------------------------------------------------


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_reads_and_updates_the_config(project, owner):
    url = reverse("api:project-quality-config", args=[project.pk])

    before = api(owner).get(url)
    updated = api(owner).put(
        url, {"method": "glad", "max_overlap": 7, "spam_rules": [RULE]}, format="json"
    )

    assert before.status_code == 200
    assert (before.json()["method"], before.json()["spam_rules"]) == ("auto", [])
    assert updated.status_code == 200, updated.content
    body = updated.json()
    assert (body["method"], body["max_overlap"], body["spam_rules"]) == ("glad", 7, [RULE])
    assert body["confidence_threshold"] == 0.7  # untouched settings stay


def test_api_reports_validation_errors_per_field_and_rule(project, owner):
    url = reverse("api:project-quality-config", args=[project.pk])

    bad = api(owner).put(
        url,
        {
            "confidence_threshold": -0.1,
            "spam_rules": [RULE, {**RULE, "op": "="}, {"signal": "burst"}],
        },
        format="json",
    )

    assert bad.status_code == 400
    fields = bad.json()["fields"]
    assert fields["confidence_threshold"] == ["Between 0 and 1."]
    rules = " ".join(fields["spam_rules"])
    assert "Rule 2: op '=' must be '<' or '>'." in rules
    assert "Rule 3: op is missing." in rules
    assert api(owner).put(url, {"method": "oracle"}, format="json").status_code == 400
    assert quality_config_get(project=project).confidence_threshold == 0.7


@pytest.mark.parametrize(
    ("who", "expected"), [("reviewer", 403), ("annotator", 403), ("outsider", 404)]
)
def test_api_config_is_for_owners_only(project, people, who, expected):
    url = reverse("api:project-quality-config", args=[project.pk])

    assert api(people[who]).get(url).status_code == expected
    assert api(people[who]).put(url, {"method": "mv"}, format="json").status_code == expected
    assert APIClient().get(url).status_code in (401, 403)
    assert quality_config_get(project=project).method == "auto"

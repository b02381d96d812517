"""Choosing the task type and its options when creating a project (HTML form and API), and
editing the options in the settings."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotation.forms import OPTION_PREFIX, option_specs
from annotation.models import Project
from annotation.task_types import task_type_choices, task_type_get
from tests.annotation.factories import ProjectFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
TYPE_KEYS = [key for key, _name in task_type_choices()]
LABEL_LINES = "positive | 1 | #112233\nnegative | 2"
API_LABELS = [{"value": "positive", "hotkey": "1", "colour": "#112233"}, {"value": "negative"}]


def valid_options(key: str) -> dict:
    """A valid, non-default option set for a type, from the form's option description."""
    options = {}
    for spec in option_specs(key):
        if spec.kind is bool:
            options[spec.name] = not spec.default
        elif spec.kind is list:
            options[spec.name] = ["causes", "mentions"]
        else:
            options[spec.name] = spec.default
    if key == "rating":
        options.update(scale_min=0, scale_max=6)
    return options


def form_data(key: str, options: dict | None = None, **overrides) -> dict:
    """What the create page posts for a project of type `key`."""
    data = {
        "name": f"Project of {key}",
        "instructions": "",
        "task_type": key,
        "options_for": key,
        "overlap": "3",
        "gold_ratio": "0.1",
        "reservation_timeout_seconds": "600",
    }
    if task_type_get(key).needs_labels:
        data["labels"] = LABEL_LINES
    for name, value in (valid_options(key) if options is None else options).items():
        if value is True:
            data[OPTION_PREFIX + name] = "on"
        elif isinstance(value, list):
            data[OPTION_PREFIX + name] = ", ".join(value)
        elif value is not False:
            data[OPTION_PREFIX + name] = str(value)
    return {**data, **overrides}


def field_errors(html: str, field: str) -> str:
    """The text of the error list tied to one form field ("" when it has none)."""
    match = re.search(rf'<ul class="errorlist" id="id_{re.escape(field)}_error">(.*?)</ul>', html)
    return match.group(1) if match else ""


@pytest.fixture
def owner_client(client, outsider):
    client.force_login(outsider)
    return client


@pytest.fixture
def api(client_for, outsider):
    return client_for(outsider)


# --- The create page ---------------------------------------------------------------------------


def test_create_page_offers_every_registered_type_as_a_card(owner_client):
    html = owner_client.get(reverse("annotation:project-create")).content.decode()

    for key in TYPE_KEYS:
        task_type = task_type_get(key)
        assert f'id="id_task_type_{key}"' in html
        assert task_type.name in html
        assert task_type.description in html
    assert re.search(r'value="single_label" id="id_task_type_single_label"[^>]*checked', html)


@pytest.mark.parametrize("key", TYPE_KEYS)
def test_create_page_creates_a_project_of_each_type_with_its_options(owner_client, outsider, key):
    response = owner_client.post(reverse("annotation:project-create"), form_data(key))

    assert response.status_code == 302, field_errors(response.content.decode(), "labels")
    project = Project.objects.get(created_by=outsider)
    assert project.task_type == key
    assert project.task_options == task_type_get(key).options_clean(
        valid_options(key), labels=project.labels
    )
    for name, value in valid_options(key).items():
        assert project.task_options[name] == value
    if task_type_get(key).needs_labels:
        assert [(label["value"], label["colour"]) for label in project.labels] == [
            ("positive", "#112233"),
            ("negative", "#d55e00"),  # the default colour of the second label
        ]
    else:
        assert project.labels == []
    assert project.schema_versions.get().task_options == project.task_options


def test_create_page_refuses_a_rating_scale_that_does_not_rise(owner_client):
    data = form_data("rating", {"scale_min": 5, "scale_max": 5})

    response = owner_client.post(reverse("annotation:project-create"), data)

    html = response.content.decode()
    assert response.status_code == 422
    assert "must be above" in field_errors(html, "options.scale_max")
    assert not Project.objects.exists()


def test_create_page_refuses_a_bad_colour_on_its_line(owner_client):
    data = form_data("single_label", labels="good | 1\nbad | 2 | #12345z")

    response = owner_client.post(reverse("annotation:project-create"), data)

    assert response.status_code == 422
    assert "Line 2: &#x27;colour&#x27; is #rrggbb" in field_errors(
        response.content.decode(), "labels"
    )
    assert not Project.objects.exists()


def test_create_page_needs_labels_only_for_types_that_use_them(owner_client, outsider):
    missing = owner_client.post(
        reverse("annotation:project-create"), form_data("single_label", labels="")
    )
    rating = owner_client.post(
        reverse("annotation:project-create"), form_data("rating", labels="ignored | 1")
    )

    assert missing.status_code == 422
    assert "This field is required." in field_errors(missing.content.decode(), "labels")
    assert rating.status_code == 302
    assert Project.objects.get(created_by=outsider).labels == []


def test_create_page_previews_label_colours_after_validation(owner_client):
    data = form_data("single_label", overlap="many")

    response = owner_client.post(reverse("annotation:project-create"), data)

    html = response.content.decode()
    assert response.status_code == 422
    assert 'class="label-preview"' in html
    assert 'style="background-color: #112233"' in html
    assert 'style="background-color: #d55e00"' in html  # default filled in for "negative"


def test_create_page_ignores_options_shown_for_another_type(owner_client, outsider):
    # Without JavaScript the owner switched to pairwise but posted the rating option fields.
    data = form_data("pairwise", {}, options_for="rating")
    data[OPTION_PREFIX + "scale_max"] = "9"

    response = owner_client.post(reverse("annotation:project-create"), data)

    assert response.status_code == 302
    project = Project.objects.get(created_by=outsider)
    assert project.task_options == {"mode": "preference", "allow_tie": True}


# --- The htmx swap of the type's part of the form ----------------------------------------------


def test_changing_the_type_swaps_only_the_type_config_fragment(owner_client):
    url = reverse("annotation:project-create")

    rating = owner_client.get(url, {"task_type": "rating", "labels": "a | 1"}, **HTMX)
    single = owner_client.get(url, {"task_type": "single_label", "labels": "a | 1"}, **HTMX)

    rating_html, single_html = rating.content.decode(), single.content.decode()
    assert rating.status_code == single.status_code == 200
    assert rating_html.lstrip().startswith('<div id="type-config"')
    assert "<html" not in rating_html
    assert 'name="options.scale_min"' in rating_html
    assert 'name="options.scale_max"' in rating_html
    assert 'name="labels"' not in rating_html
    assert 'name="options_for" value="rating"' in rating_html
    assert 'name="labels"' in single_html
    assert "a | 1</textarea>" in single_html  # what the owner typed survives the swap
    assert "options." not in single_html


def test_the_picker_asks_htmx_for_the_type_config(owner_client):
    html = owner_client.get(reverse("annotation:project-create")).content.decode()

    picker = re.search(r'<fieldset id="task-type-picker"[^>]*>', html, re.S).group(0)
    assert f'hx-get="{reverse("annotation:project-create")}"' in picker
    assert 'hx-target="#type-config"' in picker
    assert 'id="type-config"' in html


def test_create_page_without_javascript_reloads_with_the_picked_type(owner_client):
    data = {**form_data("single_label", name="Stars"), "task_type": "rating", "refresh": "1"}

    response = owner_client.post(reverse("annotation:project-create"), data)

    html = response.content.decode()
    assert response.status_code == 200
    assert not Project.objects.exists()
    assert "errorlist" not in html
    assert re.search(r'value="rating" id="id_task_type_rating"[^>]*checked', html)
    assert 'name="options.scale_max"' in html
    assert 'value="Stars"' in html


# --- The API -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", TYPE_KEYS)
def test_api_creates_a_project_of_each_type_with_its_options(api, key):
    body = {"name": f"API {key}", "task_type": key, "task_options": valid_options(key)}
    if task_type_get(key).needs_labels:
        body["labels"] = API_LABELS

    response = api.post("/api/v1/projects/", body, format="json")

    assert response.status_code == 201, response.json()
    out = response.json()
    project = Project.objects.get(pk=out["id"])
    assert (out["task_type"], out["task_options"]) == (key, project.task_options)
    assert out["schema_version"] == 1
    for name, value in valid_options(key).items():
        assert out["task_options"][name] == value
    assert out["labels"] == project.labels
    if task_type_get(key).needs_labels:
        assert out["labels"][0] == {"value": "positive", "hotkey": "1", "colour": "#112233"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_type": "rating", "task_options": {"scale_min": 4, "scale_max": 2}}, "scale_max"),
        ({"task_type": "rating", "task_options": {"scale": 7}}, "options.scale"),
        ({"task_type": "single_label", "labels": [{"value": "a", "colour": "red"}]}, "labels[0]"),
        ({"task_type": "single_label"}, "labels"),
        ({"task_type": "no_such_type", "labels": API_LABELS}, "task_type"),
    ],
    ids=["scale-does-not-rise", "unknown-option", "bad-colour", "no-labels", "unknown-type"],
)
def test_api_refuses_a_bad_configuration_with_the_field_key(api, body, field):
    response = api.post("/api/v1/projects/", {"name": "Bad", **body}, format="json")

    assert response.status_code == 400
    fields = response.json()["fields"]
    key = "options.scale_max" if field == "scale_max" else field
    assert key in fields, fields
    assert not Project.objects.exists()


def test_api_patch_changes_options_and_refuses_a_new_type(api, outsider):
    project = ProjectFactory(created_by=outsider, task_type="rating", labels=[])

    changed = api.patch(
        f"/api/v1/projects/{project.pk}/",
        {"task_options": {"scale_min": 1, "scale_max": 10}},
        format="json",
    )
    retyped = api.patch(
        f"/api/v1/projects/{project.pk}/", {"task_type": "free_text"}, format="json"
    )

    assert changed.status_code == 200
    assert changed.json()["task_options"] == {"scale_min": 1, "scale_max": 10}
    assert retyped.status_code == 400
    assert "task_type" in retyped.json()["fields"]


def test_api_schema_describes_task_options_and_label_colours(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    components = schema["components"]["schemas"]
    request_props = components["ProjectInputRequest"]["properties"]
    assert request_props["task_options"]["type"] == "object"
    assert "labels" not in components["ProjectInputRequest"].get("required", [])
    output_props = components["ProjectOutput"]["properties"]
    assert {"task_type", "task_options", "schema_version", "labels"} <= set(output_props)
    assert "colour" in components["Label"]["properties"]


# --- Settings and overview ---------------------------------------------------------------------


def test_settings_show_the_type_read_only_and_edit_its_options(owner_client, outsider):
    project = ProjectFactory(
        created_by=outsider,
        task_type="rating",
        labels=[],
        task_options={"scale_min": 1, "scale_max": 5},
    )
    url = reverse("annotation:project-settings", args=[project.pk])
    page = owner_client.get(url).content.decode()

    response = owner_client.post(
        url,
        form_data("rating", {"scale_min": 0, "scale_max": 3}, name="Stars", task_type="spans"),
    )

    assert 'name="task_type"' not in page
    assert task_type_get("rating").name in page
    assert 'name="options.scale_max" value="5"' in page
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.task_type) == ("Stars", "rating")
    assert project.task_options == {"scale_min": 0, "scale_max": 3}


def test_settings_refuse_bad_options_next_to_the_field(owner_client, outsider):
    project = ProjectFactory(created_by=outsider, task_type="rating", labels=[])
    url = reverse("annotation:project-settings", args=[project.pk])

    response = owner_client.post(url, form_data("rating", {"scale_min": 1, "scale_max": 30}))

    assert response.status_code == 422
    assert "2 to 10 points, not 30" in field_errors(response.content.decode(), "options.scale_max")
    project.refresh_from_db()
    assert project.task_options == {}


def test_settings_keep_label_colours(owner_client, outsider):
    labels = [{"value": "cat", "hotkey": "c", "colour": "#aabbcc"}]
    project = ProjectFactory(created_by=outsider, labels=labels)
    url = reverse("annotation:project-settings", args=[project.pk])

    page = owner_client.get(url).content.decode()
    owner_client.post(url, form_data("single_label", {}, labels="cat | c | #aabbcc\ndog | d"))

    assert "cat | c | #aabbcc" in page
    assert 'style="background-color: #aabbcc"' in page
    project.refresh_from_db()
    assert [label["colour"] for label in project.labels] == ["#aabbcc", "#d55e00"]


def test_overview_shows_the_type_and_its_options(owner_client, outsider):
    project = ProjectFactory(
        created_by=outsider,
        task_type="pairwise",
        labels=[],
        task_options={"mode": "duplicate", "allow_tie": False},
    )

    html = owner_client.get(reverse("annotation:project-detail", args=[project.pk])).content
    html = html.decode()

    summary = re.search(r'<dl class="task-summary">(.*?)</dl>', html, re.S).group(1)
    assert task_type_get("pairwise").name in summary
    assert "Duplicates?" in summary
    assert re.search(r"<dt>Allow a tie</dt>\s*<dd>No</dd>", summary)

"""Answers of every simple task type through the labeling page and the crowd API: `value` is
stored in the type's form; an answer the type rejects is refused with where and why."""

from __future__ import annotations

import json

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from annotation.models import Annotation
from annotation.task_types import task_type_get
from crowd.services import assignment_claim_next
from tests.annotation.factories import ItemFactory, ProjectFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

COLOURS = ["#0072b2", "#d55e00", "#009e73"]


def _labels(*values):
    return [
        {"value": value, "hotkey": str(index + 1), "colour": COLOURS[index]}
        for index, value in enumerate(values)
    ]


# key: (labels, options, item data, answer, stored form, bad answer, where the error is)
CASES = {
    "single_label": (
        _labels("positive", "negative"),
        {},
        {"text": "Works great."},
        {"label": "negative"},
        {"label": "negative"},
        {"label": "maybe"},
        "label",
    ),
    "multi_label": (
        _labels("red", "green", "blue"),
        {"allow_none": False},
        {"text": "A red and blue flag."},
        {"labels": ["blue", "red"]},
        {"labels": ["red", "blue"]},  # label-set order
        {"labels": ["red", "purple"]},
        "value.labels[1]",
    ),
    "rating": (
        [],
        {"scale_min": 1, "scale_max": 5},
        {"text": "How fluent is this sentence?"},
        {"rating": 4},
        {"rating": 4},
        {"rating": 9},
        "value.rating",
    ),
    "pairwise": (
        [],
        {"mode": "preference", "allow_tie": True},
        {"a": "The cat sat on the mat.", "b": "Cat mat sat the on.", "prompt": "More fluent?"},
        {"choice": "tie"},
        {"choice": "tie"},
        {"choice": "C"},
        "value.choice",
    ),
    "free_text": (
        [],
        {"max_length": 20, "allow_empty": False, "case_sensitive": False},
        {"text": "Transcribe: HELLO"},
        {"text": "  Hello world \n"},
        {"text": "Hello world"},
        {"text": "x" * 21},
        "value.text",
    ),
}


def make_project(key):
    labels, options, data, *_ = CASES[key]
    task_type = task_type_get(key)
    project = ProjectFactory(
        task_type=key,
        labels=labels,
        task_options=task_type.options_clean(options, labels=labels),
        overlap=1,
    )
    ItemFactory(project=project, data=data)
    return project


def claim(project, worker):
    assignment = assignment_claim_next(worker=worker, project=project)
    assert assignment is not None
    return assignment


def submit_url(assignment):
    return reverse("crowd:label-submit", args=[assignment.project_id, assignment.pk])


@pytest.fixture(params=sorted(CASES))
def key(request):
    return request.param


def test_label_page_shows_the_type_widget_and_its_configuration(client, key):
    project = make_project(key)
    worker = make_annotator(project, "ann")
    client.force_login(worker)

    response = client.get(reverse("crowd:label", args=[project.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-task-type="{key}"' in html
    assert f"js/widgets/{key}.js" in html
    assert html.index(f"js/widgets/{key}.js") < html.index("js/labeling.js")
    config = json.loads(html.split('id="task-config" type="application/json">')[1].split("<")[0])
    assert config == {"labels": CASES[key][0], "options": dict(project.task_options)}
    assert 'class="label-item"' in html


@pytest.mark.parametrize(
    ("key_", "markers"),
    [
        ("single_label", ['data-label="positive"', 'data-colour="#0072b2"', "Works great."]),
        ("multi_label", ['data-label="blue"', 'aria-pressed="false"', "A red and blue flag."]),
        ("rating", ['data-rating="1"', 'data-rating="5"', 'data-hotkey="5"']),
        ("pairwise", ["The cat sat on the mat.", "Cat mat sat the on.", 'data-choice="tie"']),
        ("free_text", ["<textarea", 'maxlength="20"', "Transcribe: HELLO"]),
    ],
)
def test_label_page_renders_the_item_and_the_controls_of_each_type(client, key_, markers):
    project = make_project(key_)
    client.force_login(make_annotator(project, "ann"))

    html = client.get(reverse("crowd:label", args=[project.pk])).content.decode()

    for marker in markers:
        assert marker in html


def render_rating_controls(scale_min, scale_max):
    options = {"scale_min": scale_min, "scale_max": scale_max}
    return render_to_string(
        "annotation/widgets/rating_controls.html", {"config": {"labels": [], "options": options}}
    )


def test_rating_keys_are_the_points_on_a_0_to_10_scale_else_their_position():
    zero_based, one_to_ten, negative = (
        render_rating_controls(0, 9),
        render_rating_controls(1, 10),
        render_rating_controls(-2, 2),
    )

    assert 'data-rating="0" data-hotkey="0"' in zero_based
    assert 'data-rating="9" data-hotkey="9"' in zero_based
    assert 'data-rating="10"' not in zero_based
    assert 'data-rating="10" data-hotkey="0"' in one_to_ten
    assert negative.count("data-rating=") == 5
    assert 'data-rating="-2" data-hotkey="1"' in negative
    assert 'data-rating="2" data-hotkey="5"' in negative


def test_page_submit_stores_the_value_in_the_type_form(client, key):
    project = make_project(key)
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)
    client.force_login(worker)

    response = client.post(
        submit_url(assignment), {"value": json.dumps(CASES[key][3]), "duration_ms": 1500}
    )

    assert response.status_code == 200
    annotation = Annotation.objects.get()
    assert annotation.value == CASES[key][4]
    assert annotation.duration_ms == 1500
    assert 'class="label-refill"' in response.content.decode()


def test_page_submit_of_an_answer_the_type_rejects_is_422_with_where(client, key):
    project = make_project(key)
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)
    client.force_login(worker)

    response = client.post(
        submit_url(assignment), {"value": json.dumps(CASES[key][5]), "duration_ms": 10}
    )

    assert response.status_code == 422
    assert not Annotation.objects.exists()
    html = response.content.decode()
    assert "Your last answer was not saved." in html
    assert f"{CASES[key][6]}:" in html
    assert f'id="assignment-{assignment.pk}"' in html  # still reserved: it comes back


@pytest.mark.parametrize(
    ("posted", "problem"),
    [
        ({"value": "{not json"}, "value: Enter a valid JSON."),
        ({"value": "[1, 2]"}, "value: The answer is a JSON object"),
        ({}, "Give the answer as `value` (a JSON object)."),
    ],
)
def test_page_submit_of_a_malformed_value_is_422_and_says_so(client, posted, problem):
    project = make_project("rating")
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)
    client.force_login(worker)

    response = client.post(submit_url(assignment), {**posted, "duration_ms": 10})

    assert response.status_code == 422
    assert problem in response.content.decode()
    assert not Annotation.objects.exists()


def test_page_submit_still_takes_the_legacy_label(client):
    project = make_project("single_label")
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)
    client.force_login(worker)

    response = client.post(submit_url(assignment), {"label": "positive", "duration_ms": 10})

    assert response.status_code == 200
    assert Annotation.objects.get().value == {"label": "positive"}


def test_api_submit_stores_the_value_in_the_type_form(client_for, key):
    project = make_project(key)
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)

    response = client_for(worker).post(
        f"/api/v1/assignments/{assignment.pk}/submit/",
        {"value": CASES[key][3], "duration_ms": 900},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["annotation"]["value"] == CASES[key][4]
    assert Annotation.objects.get().value == CASES[key][4]


def test_api_submit_of_an_answer_the_type_rejects_names_the_field(client_for, key):
    project = make_project(key)
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)

    response = client_for(worker).post(
        f"/api/v1/assignments/{assignment.pk}/submit/", {"value": CASES[key][5]}, format="json"
    )

    assert response.status_code == 400
    assert CASES[key][6] in response.json()["fields"]
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(
    ("posted", "field"),
    [({"value": [1, 2]}, "value"), ({"value": "4"}, "value"), ({"duration_ms": 5}, "value")],
)
def test_api_submit_without_an_answer_object_is_400(client_for, posted, field):
    project = make_project("rating")
    worker = make_annotator(project, "ann")
    assignment = claim(project, worker)

    response = client_for(worker).post(
        f"/api/v1/assignments/{assignment.pk}/submit/", posted, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["fields"]

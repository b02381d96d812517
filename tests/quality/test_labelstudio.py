"""Label Studio import: files in Label Studio's documented export format become items and
answers by pseudonymous workers; a release's Label Studio export imports back into a new project
with the same items and answers, for every task type; bad files are refused by task and field.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Annotation, Item
from annotation.task_types import task_type_get
from quality.label_import import worker_pseudonym
from quality.labelstudio import LabelStudioImportError, labelstudio_import
from quality.releases import release_build
from quality.releases.building import snapshot_config
from quality.releases.formats import formats_write
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

SENTIMENT = [
    {"value": "positive", "hotkey": "p", "colour": "#0072b2"},
    {"value": "negative", "hotkey": "n", "colour": "#d55e00"},
]
ENTITIES = [
    {"value": "PER", "hotkey": "p", "colour": "#0072b2"},
    {"value": "LOC", "hotkey": "l", "colour": "#d55e00"},
]
OBJECTS = [
    {"value": "car", "hotkey": "c", "colour": "#0072b2"},
    {"value": "person", "hotkey": "p", "colour": "#d55e00"},
]


def _file(tasks) -> io.BytesIO:
    return io.BytesIO(json.dumps(tasks).encode())


def _answers(project) -> dict[str, Counter]:
    """Each item's data (as JSON) -> the multiset of its answers (as JSON)."""
    found: dict[str, Counter] = {}
    for item in Item.objects.filter(project=project).prefetch_related("annotations"):
        key = json.dumps(item.data, sort_keys=True)
        found[key] = Counter(json.dumps(a.value, sort_keys=True) for a in item.annotations.all())
    return found


# --- hand-written files in Label Studio's documented export format ----------------------------


def test_a_text_classification_export_imports_items_and_pseudonymous_answers():
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, labels=SENTIMENT, overlap=3)
    tasks = [
        {
            "id": 101,
            "data": {"text": "Love this phone"},
            "annotations": [
                {
                    "id": 1,
                    "completed_by": 7,
                    "result": [
                        {
                            "id": "aB3xK9",
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "origin": "manual",
                            "value": {"choices": ["positive"]},
                        }
                    ],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": "2024-03-01T10:00:00.000000Z",
                    "lead_time": 4.2,
                },
                {
                    "id": 2,
                    "completed_by": {"id": 9, "email": "ann@lab.example"},
                    "result": [
                        {
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["negative"]},
                        }
                    ],
                },
                {"id": 3, "completed_by": 11, "result": [], "was_cancelled": True},
            ],
            "predictions": [
                {
                    "model_version": "v1",
                    "score": 0.9,
                    "result": [
                        {
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["positive"]},
                        }
                    ],
                }
            ],
        },
        {"id": 102, "data": {"text": "Battery died"}, "annotations": [], "predictions": []},
    ]

    result = labelstudio_import(project=project, file=_file(tasks), uploaded_by=owner)

    assert (result.tasks, result.items_created, result.annotations_created) == (2, 2, 2)
    assert result.workers == result.workers_created == 2
    loved = Item.objects.get(project=project, data={"text": "Love this phone"})
    votes = {a.author.username: a.value for a in loved.annotations.select_related("author")}
    assert votes == {
        worker_pseudonym(project_id=project.pk, worker="7"): {"label": "positive"},
        worker_pseudonym(project_id=project.pk, worker="ann@lab.example"): {"label": "negative"},
    }
    assert (loved.annotation_count, loved.slots_taken, loved.target) == (2, 2, 3)

    again = labelstudio_import(project=project, file=_file(tasks), uploaded_by=owner)

    assert (again.items_created, again.items_matched) == (0, 2)
    assert (again.annotations_created, again.duplicates_skipped) == (0, 2)
    assert Annotation.objects.filter(project=project).count() == 2


def test_a_ner_export_with_relations_becomes_spans():
    owner = UserFactory()
    project = ProjectFactory(
        created_by=owner,
        task_type="spans",
        labels=ENTITIES,
        task_options={"relation_labels": ["lives_in"]},
    )
    text = "Ada lives in London"
    tasks = [
        {
            "id": 1,
            "data": {"text": text},
            "annotations": [
                {
                    "completed_by": 1,
                    "result": [
                        {
                            "id": "loc1",
                            "from_name": "label",
                            "to_name": "text",
                            "type": "labels",
                            "value": {"start": 13, "end": 19, "text": "London", "labels": ["LOC"]},
                        },
                        {
                            "id": "per1",
                            "from_name": "label",
                            "to_name": "text",
                            "type": "labels",
                            "value": {"start": 0, "end": 3, "text": "Ada", "labels": ["PER"]},
                        },
                        {
                            "from_id": "per1",
                            "to_id": "loc1",
                            "type": "relation",
                            "direction": "right",
                            "labels": ["lives_in"],
                        },
                    ],
                }
            ],
        }
    ]

    labelstudio_import(project=project, file=_file(tasks), uploaded_by=owner)

    (answer,) = Annotation.objects.filter(project=project)
    assert answer.value == {
        "spans": [
            {"start": 0, "end": 3, "label": "PER"},
            {"start": 13, "end": 19, "label": "LOC"},
        ],
        "relations": [{"from": 0, "to": 1, "label": "lives_in"}],
    }


def test_rectanglelabels_in_percent_become_boxes_in_pixels():
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, task_type="boxes", labels=OBJECTS)
    tasks = [
        {
            "id": 5,
            "data": {"image": "https://img.example/street.jpg", "width": 800, "height": 600},
            "annotations": [
                {
                    "completed_by": 3,
                    "result": [
                        {
                            "id": "r1",
                            "original_width": 800,
                            "original_height": 600,
                            "image_rotation": 0,
                            "from_name": "label",
                            "to_name": "image",
                            "type": "rectanglelabels",
                            "value": {
                                "x": 12.5,
                                "y": 50,
                                "width": 25,
                                "height": 10,
                                "rotation": 0,
                                "rectanglelabels": ["car"],
                            },
                        }
                    ],
                }
            ],
        }
    ]

    labelstudio_import(project=project, file=_file(tasks), uploaded_by=owner)

    (answer,) = Annotation.objects.filter(project=project)
    assert answer.value == {"boxes": [{"x": 100, "y": 300, "w": 200, "h": 60, "label": "car"}]}


# --- round trip: a release's export imports back into a new project ---------------------------

PAIR = {"prompt": "Capital of France?", "a": "Lyon", "b": "Paris"}
IMAGE = {"image": "https://img.example/a.png", "width": 640, "height": 480}
CASES = {
    "single_label": (
        SENTIMENT,
        {},
        [
            ({"text": "good"}, [{"label": "positive"}, {"label": "negative"}]),
            ({"text": "bad"}, [{"label": "negative"}]),
        ],
    ),
    "multi_label": (
        SENTIMENT,
        {"allow_none": True},
        [({"text": "mixed"}, [{"labels": ["positive", "negative"]}, {"labels": []}])],
    ),
    "rating": ([], {}, [({"text": "rate me"}, [{"rating": 4}, {"rating": 2}])]),
    "free_text": ([], {}, [({"text": "name it"}, [{"text": "a cat"}, {"text": "two\nlines"}])]),
    "pairwise": ([], {}, [(PAIR, [{"choice": "A"}, {"choice": "B"}, {"choice": "tie"}])]),
    "spans": (
        ENTITIES,
        {"relation_labels": ["lives_in"]},
        [
            (
                {"text": "Ada lives in London"},
                [
                    {
                        "spans": [
                            {"start": 0, "end": 3, "label": "PER"},
                            {"start": 13, "end": 19, "label": "LOC"},
                        ],
                        "relations": [{"from": 0, "to": 1, "label": "lives_in"}],
                    },
                    {"spans": [], "relations": []},
                ],
            )
        ],
    ),
    "boxes": (
        OBJECTS,
        {},
        [
            (
                IMAGE,
                [
                    {"boxes": [{"x": 10.25, "y": 20, "w": 33.33, "h": 100, "label": "car"}]},
                    {
                        "boxes": [
                            {"x": 1.5, "y": 2.5, "w": 3, "h": 4, "label": "car"},
                            {"x": 0, "y": 0, "w": 640, "h": 480, "label": "person"},
                        ]
                    },
                ],
            )
        ],
    ),
}


@pytest.mark.parametrize("key", list(CASES))
def test_export_then_import_gives_the_same_items_and_answers(key, tmp_path):
    labels, options, items = CASES[key]
    owner = UserFactory()
    source = ProjectFactory(created_by=owner, task_type=key, labels=labels, task_options=options)
    for data, values in items:
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        item = ItemFactory(project=source, data=data, content_hash=digest)
        for value in values:
            AnnotationFactory(item=item, author=UserFactory(), value=value)
    release = release_build(release=make_release(source, owner, include_raw=True))
    assert release.status == "ready", release.error
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_bytes(default_storage.open(release.files.get(format="jsonl").path).read())
    config = snapshot_config(release)
    workdir = tmp_path / "out"
    workdir.mkdir()
    formats_write(
        release=release,
        config=config,
        task_type=task_type_get(key),
        source=jsonl,
        workdir=workdir,
    )
    target = ProjectFactory(created_by=owner, task_type=key, labels=labels, task_options=options)

    result = labelstudio_import(
        project=target,
        file=io.BytesIO((workdir / "labelstudio.json").read_bytes()),
        uploaded_by=owner,
    )

    assert result.items_created == len(items)
    assert _answers(target) == _answers(source)
    assert result.workers == sum(len(values) for _data, values in items)


# --- bad files ---------------------------------------------------------------------------------


def _refused(project, tasks) -> list[dict]:
    with pytest.raises(LabelStudioImportError) as caught:
        labelstudio_import(project=project, file=_file(tasks), uploaded_by=project.created_by)
    assert not Item.objects.filter(project=project).exists()
    assert not Annotation.objects.filter(project=project).exists()
    return caught.value.errors


def _choice(label):
    return [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": label}}
    ]


def test_bad_tasks_are_refused_with_task_index_and_field_and_nothing_is_written():
    project = ProjectFactory(labels=SENTIMENT)
    tasks = [
        {
            "data": {"text": "fine"},
            "annotations": [{"completed_by": 1, "result": _choice(["positive"])}],
        },
        {"data": {"text": "x"}, "annotations": [{"completed_by": 1, "result": _choice(["meh"])}]},
        {"id": 3},
        {"data": {"text": "y"}, "annotations": [{"result": _choice(["positive"])}]},
        {
            "data": {"text": "z"},
            "annotations": [
                {"completed_by": 2, "result": [{"type": "rating", "value": {"rating": 3}}]}
            ],
        },
    ]

    errors = _refused(project, tasks)

    by_task = {(e["task"], e["field"]): e["message"] for e in errors}
    assert "meh" in by_task[(1, "annotations[0].value.label")]
    assert (2, "data") in by_task
    assert (3, "annotations[0].completed_by") in by_task
    assert "'rating'" in by_task[(4, "annotations[0].result[0].type")]
    assert all(e["task"] != 0 for e in errors)


def test_spans_outside_the_text_and_unknown_relation_ends_are_refused():
    project = ProjectFactory(task_type="spans", labels=ENTITIES, task_options={})
    span = {"type": "labels", "id": "a", "value": {"start": 0, "end": 99, "labels": ["PER"]}}
    relation = {"type": "relation", "from_id": "a", "to_id": "nope", "labels": ["x"]}
    tasks = [
        {"data": {"text": "short"}, "annotations": [{"completed_by": 1, "result": [span]}]},
        {
            "data": {"text": "other"},
            "annotations": [{"completed_by": 1, "result": [span, relation]}],
        },
    ]

    errors = _refused(project, tasks)

    fields = {(e["task"], e["field"]) for e in errors}
    assert (0, "annotations[0].value.spans[0].end") in fields
    assert (1, "annotations[0].result[1].to_id") in fields


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{not json", "Not JSON"),
        (b'{"data": {}}', "JSON list of tasks"),
        (b"[]", "no tasks"),
    ],
)
def test_unreadable_files_are_refused(body, message):
    project = ProjectFactory(labels=SENTIMENT)

    with pytest.raises(LabelStudioImportError) as caught:
        labelstudio_import(project=project, file=io.BytesIO(body), uploaded_by=project.created_by)

    (error,) = caught.value.errors
    assert error["task"] is None
    assert error["field"] == "file"
    assert message in error["message"]


def test_storage_paths_of_other_projects_are_refused_as_images():
    project = ProjectFactory(task_type="boxes", labels=OBJECTS)
    data = {"image": "items/999/secret.png", "width": 10, "height": 10}

    errors = _refused(project, [{"data": data, "annotations": []}])

    assert errors[0]["task"] == 0
    assert errors[0]["field"] == "data.image"


# --- page and API ------------------------------------------------------------------------------

EXPORT = [
    {
        "id": 1,
        "data": {"text": "hello"},
        "annotations": [{"completed_by": 4, "result": _choice(["positive"])}],
    }
]


def test_the_api_imports_a_label_studio_file(client_for):
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, labels=SENTIMENT)
    upload = SimpleUploadedFile("export.json", json.dumps(EXPORT).encode(), "application/json")

    response = client_for(owner).post(
        f"/api/v1/projects/{project.pk}/label-imports/labelstudio/",
        {"file": upload},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    assert response.json()["annotations_created"] == 1
    assert Annotation.objects.get(project=project).value == {"label": "positive"}


def test_the_api_lists_problems_by_task_and_refuses_non_owners(client_for):
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, labels=SENTIMENT)
    bad = [{"data": {"text": "x"}, "annotations": [{"completed_by": 1, "result": _choice(["no"])}]}]

    response = client_for(owner).post(
        f"/api/v1/projects/{project.pk}/label-imports/labelstudio/",
        {"file": SimpleUploadedFile("e.json", json.dumps(bad).encode())},
        format="multipart",
    )
    stranger = client_for(UserFactory()).post(
        f"/api/v1/projects/{project.pk}/label-imports/labelstudio/",
        {"file": SimpleUploadedFile("e.json", json.dumps(EXPORT).encode())},
        format="multipart",
    )

    assert response.status_code == 400
    (problem,) = response.json()["fields"]["file"]
    assert (problem["task"], problem["field"]) == (0, "annotations[0].value.label")
    assert stranger.status_code in (403, 404)
    assert not Annotation.objects.exists()


def test_the_page_imports_a_label_studio_file(client):
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, labels=SENTIMENT)
    client.force_login(owner)
    url = reverse("label_import:label-import", args=[project.pk])

    page = client.get(url)
    done = client.post(
        url,
        {
            "format": "labelstudio",
            "file": SimpleUploadedFile("export.json", json.dumps(EXPORT).encode()),
        },
    )
    bad = client.post(
        url,
        {"format": "labelstudio", "file": SimpleUploadedFile("e.json", b"[1]")},
    )

    swapped = client.post(
        url,
        {"format": "labelstudio", "file": SimpleUploadedFile("e.json", b"[1]")},
        headers={"HX-Request": "true"},
    )

    assert b"Label Studio" in page.content
    assert swapped.content.lstrip().startswith(b'<section class="card" id="labelstudio-import')
    assert b"Import labels collected elsewhere" not in swapped.content
    assert done.status_code == 200
    assert b"Imported 1 answer" in done.content
    assert bad.status_code == 422
    assert b"A task is an object" in bad.content
    assert Annotation.objects.filter(project=project).count() == 1

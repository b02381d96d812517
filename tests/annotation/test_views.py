from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import ImportJob, Item, Project
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def project_form_data(**overrides):
    data = {
        "name": "Sentiment",
        "instructions": "Pick **one**.",
        "labels": "positive | 1\nnegative | 2\nneutral",
        "overlap": "3",
        "gold_ratio": "0.1",
        "reservation_timeout_seconds": "600",
    }
    return {**data, **overrides}


def make_job(project, owner, **fields):
    defaults = {"file": "imports/x.jsonl", "original_name": "x.jsonl", "format": "jsonl"}
    return ImportJob.objects.create(project=project, created_by=owner, **{**defaults, **fields})


# --- Login and visibility ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["project-list", "project-create", "project-detail", "project-settings", "import-detail"],
)
def test_pages_require_login(client, project, owner, name):
    args = [] if name in ("project-list", "project-create") else [make_job(project, owner).pk]
    if name in ("project-detail", "project-settings"):
        args = [project.pk]

    response = client.get(reverse(f"annotation:{name}", args=args))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["project-detail", "project-settings"])
def test_project_pages_are_404_for_users_who_cannot_see_the_project(
    as_user, project, outsider, name
):
    response = as_user(outsider).get(reverse(f"annotation:{name}", args=[project.pk]))

    assert response.status_code == 404


# --- Project list -----------------------------------------------------------------------------


def test_project_list_shows_owned_projects_with_progress(as_user, project, owner):
    item = ItemFactory(project=project)
    Item.objects.filter(pk=item.pk).update(annotation_count=3, slots_taken=3)
    ItemFactory(project=project)
    ProjectFactory(name="Somebody else's")

    response = as_user(owner).get(reverse("annotation:project-list"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Reviews" in html
    assert "Somebody else" not in html
    assert 'value="50"' in html  # one of two items complete
    assert reverse("annotation:project-create") in html


def test_project_list_gives_annotators_a_start_labeling_link(as_user, project, worker):
    response = as_user(worker).get(reverse("annotation:project-list"))

    html = response.content.decode()
    assert "Projects you label" in html
    assert reverse("crowd:label", args=[project.pk]) in html
    assert "Start labeling" in html


def test_project_list_query_count_does_not_grow_with_projects(
    as_user, owner, django_assert_max_num_queries
):
    for n in range(6):
        project = ProjectFactory(created_by=owner, name=f"P{n}")
        ItemFactory.create_batch(2, project=project)
    client = as_user(owner)

    with django_assert_max_num_queries(4):  # session, user, projects (+ savepoint noise)
        response = client.get(reverse("annotation:project-list"))

    assert response.content.decode().count("<progress") == 6


# --- Create and settings ----------------------------------------------------------------------


def test_project_create_page_creates_the_project_and_redirects(as_user, outsider):
    client = as_user(outsider)
    assert client.get(reverse("annotation:project-create")).status_code == 200

    response = client.post(reverse("annotation:project-create"), project_form_data())

    project = Project.objects.get(name="Sentiment")
    assert response.status_code == 302
    assert response["Location"] == reverse("annotation:project-detail", args=[project.pk])
    assert [(label["value"], label["hotkey"]) for label in project.labels] == [
        ("positive", "1"),
        ("negative", "2"),
        ("neutral", "3"),
    ]
    assert project.members.get().role == "owner"
    assert project.schema_versions.get().labels == project.labels


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"labels": "   \n"}, "This field is required."),
        ({"labels": "good | 1\nbad | 1"}, "Line 2: Hotkey &#x27;1&#x27; is used twice."),
        ({"labels": "good\ngood"}, "Line 2: Duplicate label value"),
        ({"overlap": "many"}, "Enter a whole number."),
    ],
)
def test_project_create_invalid_form_is_422_with_errors(as_user, outsider, overrides, message):
    response = as_user(outsider).post(
        reverse("annotation:project-create"), project_form_data(**overrides)
    )

    assert response.status_code == 422
    assert message in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Project.objects.filter(name="Sentiment").exists()


def test_project_settings_owner_edits_the_project(as_user, project, owner):
    client = as_user(owner)
    page = client.get(reverse("annotation:project-settings", args=[project.pk]))
    assert "positive | 1" in page.content.decode()

    response = client.post(
        reverse("annotation:project-settings", args=[project.pk]),
        project_form_data(name="Renamed", overlap="5"),
    )

    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.overlap, len(project.labels)) == ("Renamed", 5, 3)


def test_project_settings_refuses_to_drop_labels_in_use(as_user, project, owner):
    AnnotationFactory(item=ItemFactory(project=project), value={"label": "negative"})

    response = as_user(owner).post(
        reverse("annotation:project-settings", args=[project.pk]),
        project_form_data(labels="positive"),
    )

    assert response.status_code == 422
    assert "Labels in use cannot be removed" in response.content.decode()
    project.refresh_from_db()
    assert project.label_values == ["positive", "negative"]


@pytest.mark.parametrize("who", ["worker", "reviewer"])
def test_project_settings_is_403_for_members_who_do_not_own(
    as_user, project, worker, reviewer, who
):
    user = worker if who == "worker" else reviewer
    client = as_user(user)

    page = client.get(reverse("annotation:project-settings", args=[project.pk]))
    post = client.post(
        reverse("annotation:project-settings", args=[project.pk]), project_form_data()
    )

    assert (page.status_code, post.status_code) == (403, 403)
    project.refresh_from_db()
    assert project.name == "Reviews"


# --- Project overview -------------------------------------------------------------------------


def test_project_detail_owner_sees_instructions_stats_and_import_form(as_user, project, owner):
    project.instructions = "Read **carefully** <script>alert(1)</script>"
    project.save(update_fields=["instructions"])
    ItemFactory.create_batch(2, project=project)
    make_job(project, owner, original_name="first.jsonl")

    response = as_user(owner).get(reverse("annotation:project-detail", args=[project.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>carefully</strong>" in html
    assert "<script>alert" not in html
    assert 'enctype="multipart/form-data"' in html
    assert 'accept=".csv,.jsonl,.ndjson,.zip"' in html
    assert reverse("annotation:import-create", args=[project.pk]) in html
    assert "first.jsonl" in html
    assert '<div class="stat-value">2</div>' in html


def test_project_detail_reviewer_sees_imports_but_no_import_form(as_user, project, owner, reviewer):
    make_job(project, owner, original_name="first.jsonl")

    html = as_user(reviewer).get(reverse("annotation:project-detail", args=[project.pk])).content

    assert b"first.jsonl" in html
    assert b"multipart/form-data" not in html


def test_project_detail_annotator_sees_no_imports(as_user, project, owner, worker):
    make_job(project, owner, original_name="first.jsonl")

    response = as_user(worker).get(reverse("annotation:project-detail", args=[project.pk]))

    assert response.status_code == 200
    assert b"first.jsonl" not in response.content
    assert reverse("crowd:label", args=[project.pk]).encode() in response.content


def test_project_detail_htmx_returns_only_the_stats(as_user, project, owner):
    response = as_user(owner).get(reverse("annotation:project-detail", args=[project.pk]), **HTMX)

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="project-stats"')
    assert "<nav" not in html


# --- Imports ----------------------------------------------------------------------------------


def test_import_form_works_end_to_end(
    as_user, project, owner, celery_eager, django_capture_on_commit_callbacks
):
    client = as_user(owner)
    upload = SimpleUploadedFile("reviews.csv", b"text,gold\nGood,positive\nBad,\nGood,\n")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("annotation:import-create", args=[project.pk]), {"file": upload}, **HTMX
        )
    job = ImportJob.objects.get(project=project)
    poll = client.get(reverse("annotation:import-detail", args=[job.pk]), **HTMX)

    assert response.status_code == 200
    assert "import-finished" in json.loads(response["HX-Trigger"])
    assert response.content.decode().lstrip().startswith('<section id="import-panel"')
    assert job.status == ImportJob.Status.SUCCEEDED
    assert Item.objects.filter(project=project).count() == 2
    assert poll.status_code == 286  # htmx stops polling
    assert "every 1s" not in poll.content.decode()
    assert "Duplicates skipped" in poll.content.decode()


def test_import_form_without_htmx_redirects_to_the_overview(as_user, project, owner):
    upload = SimpleUploadedFile("reviews.jsonl", b'{"text": "x"}\n')

    response = as_user(owner).post(
        reverse("annotation:import-create", args=[project.pk]), {"file": upload}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("annotation:project-detail", args=[project.pk])
    assert ImportJob.objects.get(project=project).status == ImportJob.Status.PENDING


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"text\nx\n", "Upload a .csv or .jsonl file"),
        ("empty.csv", b"", "The submitted file is empty."),
    ],
)
def test_import_form_refuses_bad_uploads_with_422(as_user, project, owner, name, content, message):
    upload = SimpleUploadedFile(name, content)

    response = as_user(owner).post(
        reverse("annotation:import-create", args=[project.pk]), {"file": upload}, **HTMX
    )

    assert response.status_code == 422
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_import_create_is_403_for_reviewers_and_404_for_outsiders(
    as_user, project, reviewer, outsider
):
    url = reverse("annotation:import-create", args=[project.pk])

    refused = as_user(reviewer).post(url, {"file": SimpleUploadedFile("a.csv", b"text\nx\n")})
    hidden = as_user(outsider).post(url, {"file": SimpleUploadedFile("a.csv", b"text\nx\n")})

    assert (refused.status_code, hidden.status_code) == (403, 404)
    assert not ImportJob.objects.exists()


def test_import_detail_keeps_polling_while_the_job_runs(as_user, project, owner):
    job = make_job(project, owner, status="running", total_rows=10, processed_rows=4)

    response = as_user(owner).get(reverse("annotation:import-detail", args=[job.pk]), **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in html
    assert 'value="40"' in html
    assert "Checked 4 of about 10 rows" in html


def test_import_detail_page_lists_errors_with_line_and_field(as_user, project, owner, reviewer):
    errors = [{"line": 7, "field": "gold", "message": "Unknown gold label 'meh'."}]
    job = make_job(project, owner, status="failed", errors=errors)

    response = as_user(reviewer).get(reverse("annotation:import-detail", args=[job.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<td class="num">7</td><td>gold</td>' in html
    assert "Unknown gold label &#x27;meh&#x27;." in html
    assert "hx-trigger" not in html.split('id="import-')[1]


def test_import_detail_is_403_for_annotators_and_404_for_outsiders(
    as_user, project, owner, worker, outsider
):
    job = make_job(project, owner)
    url = reverse("annotation:import-detail", args=[job.pk])

    assert as_user(worker).get(url).status_code == 403
    assert as_user(outsider).get(url).status_code == 404


def test_project_detail_hides_the_gold_count_from_annotators(as_user, project, owner, worker):
    ItemFactory(project=project, gold={"label": "positive"})
    url = reverse("annotation:project-detail", args=[project.pk])

    as_worker = as_user(worker).get(url)
    as_owner = as_user(owner).get(url)

    assert b"Gold questions" not in as_worker.content
    assert b"Gold questions" in as_owner.content

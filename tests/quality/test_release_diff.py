"""Diff between two versions: constructed added / removed / changed / unchanged cases,
structured answers, the CSV file, the page, the API, and who may see them."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from annotation.models import Item
from core.exceptions import ApplicationError, ConflictError
from quality.models import Release
from quality.releases import release_build
from quality.releases.diff import (
    ADDED,
    CHANGED,
    REMOVED,
    diff_csv_lines,
    release_diff,
    release_pair_get,
)
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def authors():
    return [UserFactory(username=f"rater-{n}") for n in range(3)]


@pytest.fixture
def versions(project, owner, authors):
    """v1: items kept (positive), flipped (negative), dropped (positive), same (negative).
    v2: flipped becomes positive, dropped is deleted, a new item (negative) is added."""
    kept, flipped, dropped, same = ItemFactory.create_batch(4, project=project)
    for item, label in ((kept, "positive"), (flipped, "negative"), (dropped, "positive")):
        AnnotationFactory(item=item, author=authors[0], value={"label": label})
    AnnotationFactory(item=same, author=authors[0], value={"label": "negative"})
    v1 = release_build(release=make_release(project, owner))
    for author in authors[1:]:
        AnnotationFactory(item=flipped, author=author, value={"label": "positive"})
    dropped_id = dropped.pk
    dropped.delete()
    added = ItemFactory(project=project)
    AnnotationFactory(item=added, author=authors[0], value={"label": "negative"})
    v2 = release_build(release=make_release(project, owner))
    assert v1.status == v2.status == Release.Status.READY
    ids = {"kept": kept.pk, "flipped": flipped.pk, "dropped": dropped_id, "added": added.pk}
    return v1, v2, ids


def test_diff_finds_added_removed_and_changed_items(versions):
    v1, v2, ids = versions

    diff = release_diff(old=v1, new=v2)

    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 1, 2)
    assert not diff.structured
    changes = list(diff.changes())
    assert [(c.item_id, c.change, c.from_label, c.to_label) for c in changes] == sorted(
        [
            (ids["flipped"], CHANGED, "negative", "positive"),
            (ids["dropped"], REMOVED, "positive", ""),
            (ids["added"], ADDED, "", "negative"),
        ]
    )
    assert [c.change for c in diff.changes(kind=ADDED)] == [ADDED]
    assert diff.count() == 3
    assert diff.count(REMOVED) == 1


def test_reverse_diff_swaps_added_and_removed(versions):
    v1, v2, ids = versions

    diff = release_diff(old=v2, new=v1)

    assert (diff.added, diff.removed, diff.changed) == (1, 1, 1)
    flipped = next(c for c in diff.changes() if c.change == CHANGED)
    assert (flipped.from_label, flipped.to_label) == ("positive", "negative")


def test_same_release_has_no_changes(versions):
    v1, _v2, _ids = versions

    diff = release_diff(old=v1, new=v1)

    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (0, 0, 0, 4)
    assert diff.page() == []


def test_pages_hold_changes_in_item_order(project, owner, authors):
    v1 = release_build(release=make_release(project, owner))  # empty
    items = ItemFactory.create_batch(7, project=project)
    for item in items:
        AnnotationFactory(item=item, author=authors[0], value={"label": "positive"})
    v2 = release_build(release=make_release(project, owner))

    diff = release_diff(old=v1, new=v2)

    assert diff.added == 7
    assert [c.item_id for c in diff.page(number=2, size=3)] == [i.pk for i in items[3:6]]
    assert [c.item_id for c in diff.page(number=3, size=3)] == [items[6].pk]
    assert diff.page(number=4, size=3) == []


def test_structured_answers_compare_the_json_value(owner, authors):
    project = ProjectFactory(
        created_by=owner, name="Captions", task_type="free_text", labels=[], task_options={}
    )
    cat, dog, plain = ItemFactory.create_batch(3, project=project)
    AnnotationFactory(item=cat, author=authors[0], value={"text": "a cat"})
    AnnotationFactory(item=dog, author=authors[0], value={"text": "a dog"})
    AnnotationFactory(item=plain, author=authors[0], value={"text": "same"})
    v1 = release_build(release=make_release(project, owner))
    for author in authors[1:]:
        AnnotationFactory(item=cat, author=author, value={"text": "a tabby cat"})
    v2 = release_build(release=make_release(project, owner))
    assert v2.status == Release.Status.READY, v2.error

    diff = release_diff(old=v1, new=v2)

    assert diff.structured
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (0, 0, 1, 2)
    (change,) = diff.changes()
    assert change.item_id == cat.pk
    assert change.from_value == {"text": "a cat"}
    assert change.to_value == {"text": "a tabby cat"}
    assert "a cat" in change.from_label
    assert "tabby" in change.to_label


def test_csv_lists_every_change(versions):
    v1, v2, ids = versions

    text = "".join(diff_csv_lines(release_diff(old=v1, new=v2)))

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["item_id", "change", "from", "to"]
    assert sorted(rows[1:]) == sorted(
        [
            [str(ids["flipped"]), "changed", "negative", "positive"],
            [str(ids["dropped"]), "removed", "positive", ""],
            [str(ids["added"]), "added", "", "negative"],
        ]
    )


def test_a_tampered_file_is_refused(versions):
    v1, v2, _ids = versions
    jsonl = v2.files.get(format="jsonl")
    default_storage.delete(jsonl.path)
    default_storage.save(jsonl.path, ContentFile(b'{"item_id": 1, "label": "x"}\n'))

    with pytest.raises(ApplicationError, match="does not match its checksum"):
        release_diff(old=v1, new=v2)


def test_pair_get_names_the_field_in_errors(versions, owner, project):
    with pytest.raises(ApplicationError) as missing:
        release_pair_get(user=owner, project_id=project.pk, from_version=None, to_version="2")
    assert missing.value.fields == {"from": ["Give a version number, e.g. from=1 (got None)."]}
    with pytest.raises(ApplicationError) as unknown:
        release_pair_get(user=owner, project_id=project.pk, from_version="1", to_version="9")
    assert unknown.value.fields == {"to": [f"Project {project.pk} has no release v9."]}
    pending = make_release(project, owner)
    with pytest.raises(ConflictError, match=f"Release {pending.tag} is not ready"):
        release_pair_get(
            user=owner, project_id=project.pk, from_version="v1", to_version=pending.version
        )


# --- page ----------------------------------------------------------------------------------------


def page_url(project, query=""):
    return reverse("releases:release-diff", args=[project.pk]) + query


def test_diff_page_shows_counts_and_changes(client, owner, versions, project):
    v1, v2, ids = versions
    client.force_login(owner)

    response = client.get(page_url(project, "?from=1&to=2"))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<div class="stat-value" id="diff-added">1</div>' in page
    assert '<div class="stat-value" id="diff-removed">1</div>' in page
    assert '<div class="stat-value" id="diff-changed">1</div>' in page
    assert '<div class="stat-value" id="diff-unchanged">2</div>' in page
    assert f"#{ids['flipped']}" in page
    assert "from=1&amp;to=2&amp;format=csv" in page
    assert 'aria-current="page">Releases' in page.replace("\n", "")


def test_diff_page_without_versions_offers_the_pickers(client, owner, versions, project):
    client.force_login(owner)

    response = client.get(page_url(project))

    page = response.content.decode()
    assert response.status_code == 200
    assert '<select id="diff-from" name="from">' in page
    assert '<option value="1" selected>v1</option>' in page
    assert 'id="diff-added"' not in page


def test_diff_page_explains_a_bad_version(client, owner, versions, project):
    client.force_login(owner)

    response = client.get(page_url(project, "?from=1&to=7"))

    assert response.status_code == 400
    assert f"Project {project.pk} has no release v7." in response.content.decode()


def test_diff_page_streams_csv(client, owner, versions, project):
    client.force_login(owner)

    response = client.get(page_url(project, "?from=1&to=2&kind=added&format=csv"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "reviews-diff-v1-v2-added.csv" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[1:] == [f"{versions[2]['added']},added,,negative"]


def test_detail_page_links_to_the_diff(client, owner, versions):
    _v1, v2, _ids = versions
    client.force_login(owner)

    page = client.get(reverse("releases:release-detail", args=[v2.pk])).content.decode()

    assert f'action="{page_url(v2.project)}"' in page
    assert '<option value="1">v1</option>' in page


# --- API -----------------------------------------------------------------------------------------


def api_url(project, query=""):
    return reverse("api:release-diff", args=[project.pk]) + query


def test_api_returns_counts_and_a_page(client_for, reviewer, versions, project):
    _v1, _v2, ids = versions

    response = client_for(reviewer).get(api_url(project, "?from=1&to=2&page_size=2"))

    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 2}
    assert (body["from"]["tag"], body["to"]["tag"]) == ("v1", "v2")
    assert (body["page"], body["pages"], body["total"]) == (1, 2, 3)
    expected = sorted(
        [
            {"item_id": ids["flipped"], "change": "changed", "from": "negative", "to": "positive"},
            {"item_id": ids["dropped"], "change": "removed", "from": "positive", "to": None},
            {"item_id": ids["added"], "change": "added", "from": None, "to": "negative"},
        ],
        key=lambda row: row["item_id"],
    )
    assert body["changes"] == expected[:2]
    second = client_for(reviewer).get(api_url(project, "?from=1&to=2&page_size=2&page=2"))
    assert second.json()["changes"] == expected[2:]


def test_api_streams_csv(client_for, owner, versions, project):
    response = client_for(owner).get(api_url(project, "?from=1&to=2&format=csv&kind=changed"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    assert body == f"item_id,change,from,to\n{versions[2]['flipped']},changed,negative,positive\n"


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("?to=2", 400, "from"),
        ("?from=1&to=x", 400, "to"),
        ("?from=1&to=2&kind=moved", 400, "kind"),
        ("?from=1&to=2&page_size=5000", 400, "page_size"),
        ("?from=1&to=2&format=xml", 400, "format"),
    ],
)
def test_api_rejects_bad_parameters_by_field(
    client_for, owner, versions, project, query, status, field
):
    response = client_for(owner).get(api_url(project, query))

    assert response.status_code == status
    assert field in str(response.json())


def test_api_refuses_a_release_still_building(client_for, owner, versions, project):
    make_release(project, owner)

    response = client_for(owner).get(api_url(project, "?from=1&to=3"))

    assert response.status_code == 409


@pytest.mark.parametrize(("who", "status"), [("annotator", 403), ("stranger", 404)])
def test_only_owners_and_reviewers_see_diffs(client, client_for, versions, project, who, status):
    user = make_annotator(project) if who == "annotator" else UserFactory(username="stranger")

    assert client_for(user).get(api_url(project, "?from=1&to=2")).status_code == status
    client.force_login(user)
    assert client.get(page_url(project, "?from=1&to=2")).status_code == status


def test_anonymous_users_are_sent_to_log_in(client, client_for, versions, project):
    assert client_for(None).get(api_url(project, "?from=1&to=2")).status_code in (401, 403)
    response = client.get(page_url(project, "?from=1&to=2"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_items_removed_by_deletion_do_not_touch_storage(versions):
    """The diff reads the stored files only: deleting more items changes nothing."""
    v1, v2, _ids = versions
    before = release_diff(old=v1, new=v2)
    Item.objects.filter(project=v1.project).delete()

    after = release_diff(old=v1, new=v2)

    assert list(after.changes()) == list(before.changes())

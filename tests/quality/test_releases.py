from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from unittest import mock

import krippendorff
import numpy as np
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from annotation.models import Annotation, Item
from annotation.services import project_member_set
from core.exceptions import ApplicationError, ConflictError
from crowd.models import ExternalIdentity, ExternalStudy
from quality import release_tasks, releases
from quality.models import Release, ReleaseFile
from quality.release_tasks import release_build_task
from quality.releases import (
    ReleaseIntegrityError,
    annotator_pseudonym,
    building,
    formats,
    release_build,
    release_create,
    release_file_open,
    release_retry,
)
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_pool
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def annotators():
    return [UserFactory(username=f"alice{i}", email=f"alice{i}@corp.example") for i in range(3)]


def vote(item, author, label):
    return AnnotationFactory(item=item, author=author, value={"label": label})


def stored_files(release):
    return {f.format: default_storage.open(f.path, "rb").read() for f in release.files.all()}


def jsonl_rows(release):
    data = stored_files(release)["jsonl"].decode()
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def voted(project, annotators):
    """Three annotated items (2:1, 1:1 tie, 0:3) and one item nobody labeled."""
    a, b, c = annotators
    items = ItemFactory.create_batch(4, project=project)
    vote(items[0], a, "positive"), vote(items[0], b, "negative"), vote(items[0], c, "positive")
    vote(items[1], a, "negative"), vote(items[1], b, "positive")
    vote(items[2], a, "negative"), vote(items[2], b, "negative"), vote(items[2], c, "negative")
    return items


# --- release_create -----------------------------------------------------------------------------


def test_release_create_numbers_versions_and_freezes_cutoffs(project, owner, voted):
    last_annotation = Annotation.objects.order_by("id").last()

    first = make_release(project, owner, name="  First ", notes="n")
    second = make_release(project, owner)

    assert (first.version, second.version) == (1, 2)
    assert first.name == "First"
    assert first.status == Release.Status.PENDING
    assert first.item_cutoff_id == voted[-1].pk
    assert first.annotation_cutoff_id == last_annotation.pk
    assert first.config_snapshot["labels"] == project.labels
    assert first.config_snapshot["overlap"] == project.overlap
    assert set(first.config_snapshot) == set(releases.SNAPSHOT_FIELDS)


def test_release_create_versions_are_per_project(owner):
    one, two = ProjectFactory(created_by=owner), ProjectFactory(created_by=owner)

    make_release(one, owner)
    released = make_release(two, owner)

    assert released.version == 1


def test_release_create_enqueues_the_build_after_commit(
    project, owner, django_capture_on_commit_callbacks
):
    with (
        mock.patch.object(release_tasks.release_build_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        release = release_create(project=project, user=owner)

    delay.assert_called_once_with(release.pk)
    assert release_build_task.queue == "exports"
    assert release_build_task.soft_time_limit > 300


def test_release_create_refuses_reviewers(project):
    reviewer = UserFactory(username="rev")
    project_member_set(project=project, user=reviewer, role="reviewer")

    with pytest.raises(PermissionDenied):
        release_create(project=project, user=reviewer)

    assert not Release.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_release_create_concurrent_calls_get_distinct_versions(project, owner):
    barrier = threading.Barrier(4)
    versions, errors = [], []

    def create():
        try:
            barrier.wait()
            with mock.patch.object(release_tasks.release_build_task, "delay"):
                versions.append(release_create(project=project, user=owner).version)
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(versions) == [1, 2, 3, 4]


# --- release_build: content ---------------------------------------------------------------------


def test_release_build_consensus_and_agreement(project, owner, voted):
    release = make_release(project, owner)

    release = release_build(release=release)

    assert release.status == Release.Status.READY
    rows = jsonl_rows(release)
    assert [r["item_id"] for r in rows] == [i.pk for i in voted[:3]]  # unlabeled item left out
    assert [r["label"] for r in rows] == ["positive", "positive", "negative"]  # tie: label order
    assert [r["agreement"] for r in rows] == [round(2 / 3, 4), 0.5, 1.0]
    assert [r["num_annotations"] for r in rows] == [3, 2, 3]
    manifest = release.manifest
    assert manifest["counts"] == {"items": 3, "gold_items": 0, "annotations": 8, "workers": 3}
    assert manifest["label_distribution"]["consensus"] == {"positive": 2, "negative": 1}
    assert manifest["label_distribution"]["annotations"] == {"positive": 3, "negative": 5}
    # Fleiss by hand: P̄ = 4/9, P_e = (3/8)² + (5/8)², kappa = -5/27.
    assert manifest["agreement"]["fleiss_kappa"] == pytest.approx(-5 / 27, abs=1e-6)
    reliability = np.array([[1, 0, 1], [0, 1, 0], [np.nan, 1, 1]], dtype=float).T
    reference = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    assert manifest["agreement"]["krippendorff_alpha"] == pytest.approx(reference, abs=1e-6)
    assert manifest["consensus_method"] == "majority vote, ties by label order"


def test_release_build_csv_matches_jsonl(project, owner, voted):
    release = release_build(release=make_release(project, owner))

    files = stored_files(release)
    table = list(csv.DictReader(io.StringIO(files["csv"].decode())))

    rows = jsonl_rows(release)
    assert [int(r["item_id"]) for r in table] == [r["item_id"] for r in rows]
    assert [r["label"] for r in table] == [r["label"] for r in rows]
    assert [r["text"] for r in table] == [r["data"]["text"] for r in rows]
    assert [json.loads(r["data"]) for r in table] == [r["data"] for r in rows]
    assert b"\r" not in files["csv"]
    assert "annotations" not in table[0]


def test_release_build_includes_gold_items_flagged_without_their_answers(
    project, owner, annotators
):
    gold = ItemFactory(project=project, gold={"label": "secret-gold-answer"})
    regular = ItemFactory(project=project)
    vote(gold, annotators[0], "negative"), vote(regular, annotators[0], "positive")

    release = release_build(release=make_release(project, owner))

    rows = {r["item_id"]: r for r in jsonl_rows(release)}
    assert rows[gold.pk]["is_gold"] is True
    assert rows[regular.pk]["is_gold"] is False
    assert release.manifest["counts"]["gold_items"] == 1
    assert all(b"secret-gold-answer" not in body for body in stored_files(release).values())


def test_release_is_unchanged_by_later_project_changes(project, owner, voted, annotators):
    release = make_release(project, owner)
    # After creation but before the build: new items, new votes on old items, new settings.
    late_item = ItemFactory(project=project)
    vote(late_item, annotators[0], "positive")
    vote(voted[1], annotators[2], "negative")  # would break the tie on item 2
    vote(voted[3], annotators[0], "positive")  # the unlabeled item gets a vote
    project.labels = [*project.labels, {"value": "neutral", "hotkey": "3"}]
    project.name = "Renamed"
    project.save()

    release = release_build(release=release)

    rows = jsonl_rows(release)
    assert [r["item_id"] for r in rows] == [i.pk for i in voted[:3]]
    assert rows[1]["num_annotations"] == 2
    assert rows[1]["label"] == "positive"
    assert release.manifest["counts"]["annotations"] == 8
    assert release.manifest["config"]["name"] == "Reviews"
    assert [label["value"] for label in release.manifest["config"]["labels"]] == [
        "positive",
        "negative",
    ]


def test_release_raw_annotations_are_pseudonymous_and_stable(project, owner, voted, annotators):
    first = release_build(release=make_release(project, owner, include_raw=True))
    second = release_build(release=make_release(project, owner, include_raw=True))

    rows = jsonl_rows(first)
    raw = rows[0]["annotations"]
    expected = annotator_pseudonym(project_id=project.pk, user_id=annotators[0].pk)
    assert raw[0] == {"annotator": expected, "label": "positive"}
    assert all(set(a) == {"annotator", "label"} for a in raw)
    assert all(len(a["annotator"]) == 11 and a["annotator"].startswith("w") for a in raw)
    assert jsonl_rows(second)[0]["annotations"] == raw
    for body in [*stored_files(first).values(), *stored_files(second).values()]:
        for user in annotators:
            assert user.username.encode() not in body
            assert user.email.encode() not in body
    table = list(csv.DictReader(io.StringIO(stored_files(first)["csv"].decode())))
    assert json.loads(table[0]["annotations"]) == raw


def _study_identity(project, user, external_id, slug):
    study = ExternalStudy.objects.create(
        project=project,
        pool=make_pool(project, name=f"Pool {slug}"),
        platform=ExternalStudy.Platform.PROLIFIC,
        slug=slug,
        completion_code="DONE",
    )
    return ExternalIdentity.objects.create(study=study, external_id=external_id, user=user)


def test_release_identities_are_off_by_default(project, owner, voted, annotators):
    _study_identity(project, annotators[0], "PROLIFIC5f3a", "s-off")

    release = release_build(release=make_release(project, owner, include_raw=True))

    assert release.include_identities is False
    assert release.manifest["include_identities"] is False
    for body in stored_files(release).values():
        assert b"PROLIFIC5f3a" not in body
        assert b"annotator_username" not in body
        for user in annotators:
            assert user.username.encode() not in body
            assert user.email.encode() not in body


def test_release_with_identities_carries_usernames_emails_and_external_ids(
    project, owner, voted, annotators
):
    a, b, c = annotators
    _study_identity(project, a, "PROLIFIC-b", "s-one")
    ExternalIdentity.objects.create(
        study=ExternalStudy.objects.get(slug="s-one"), external_id="PROLIFIC-a", user=a
    )
    _study_identity(ProjectFactory(), b, "OTHER-PROJECT-ID", "s-elsewhere")

    release = release_build(
        release=make_release(project, owner, include_raw=True, include_identities=True)
    )

    assert release.status == Release.Status.READY
    assert release.manifest["include_identities"] is True
    raw = jsonl_rows(release)[0]["annotations"]
    assert raw[0] == {
        "annotator": annotator_pseudonym(project_id=project.pk, user_id=a.pk),
        "label": "positive",
        "annotator_username": "alice0",
        "annotator_email": "alice0@corp.example",
        "annotator_external_ids": ["PROLIFIC-a", "PROLIFIC-b"],
    }
    assert raw[1]["annotator_username"] == "alice1"
    assert raw[1]["annotator_external_ids"] == []  # only this project's studies count
    files = stored_files(release)
    assert b"OTHER-PROJECT-ID" not in files["jsonl"] + files["csv"]
    table = list(csv.DictReader(io.StringIO(files["csv"].decode())))
    assert json.loads(table[0]["annotations"]) == raw


def test_release_identities_need_raw_annotations(project, owner):
    with pytest.raises(ApplicationError) as caught:
        make_release(project, owner, include_identities=True)

    assert "include_identities" in caught.value.fields
    assert not Release.objects.filter(project=project).exists()


def test_release_with_identities_rebuilds_byte_identically(project, owner, voted, annotators):
    _study_identity(project, annotators[2], "=HYPERLINK(1)", "s-rebuild")
    release = release_build(
        release=make_release(project, owner, include_raw=True, include_identities=True)
    )
    before = stored_files(release)
    for record in release.files.all():
        default_storage.delete(record.path)
    ReleaseFile.objects.filter(release=release).delete()
    Release.objects.filter(pk=release.pk).update(status=Release.Status.FAILED, manifest=None)

    assert stored_files(release_build(release=release)) == before


@pytest.mark.parametrize("value", ["=1+2", "+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"])
def test_csv_safe_neutralises_formula_starts(value):
    assert releases.csv_safe(value) == "'" + value
    assert releases.csv_safe("plain =1") == "plain =1"
    assert releases.csv_safe(-3) == -3


def test_release_csv_neutralises_formula_injection(project, owner, annotators):
    project.labels = [{"value": "=cmd|' /C calc'!A0"}, {"value": "ok"}]
    project.save(update_fields=["labels"])
    item = ItemFactory(project=project, data={"text": '=HYPERLINK("http://x")'})
    other = ItemFactory(project=project, data={"text": "@SUM(1)"})
    vote(item, annotators[0], "=cmd|' /C calc'!A0")
    vote(other, annotators[0], "ok")

    release = release_build(release=make_release(project, owner))

    files = stored_files(release)
    table = list(csv.DictReader(io.StringIO(files["csv"].decode())))
    assert table[0]["text"] == '\'=HYPERLINK("http://x")'
    assert table[0]["label"] == "'=cmd|' /C calc'!A0"
    assert table[1]["text"] == "'@SUM(1)"
    for row in table:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    assert jsonl_rows(release)[0]["label"] == "=cmd|' /C calc'!A0"  # JSONL keeps the value


def test_annotator_pseudonym_differs_between_projects(annotators):
    user = annotators[0]

    one = annotator_pseudonym(project_id=1, user_id=user.pk)
    two = annotator_pseudonym(project_id=2, user_id=user.pk)

    assert one != two
    assert one == annotator_pseudonym(project_id=1, user_id=user.pk)


def test_release_build_of_empty_project_is_ready_with_no_rows(project, owner):
    release = release_build(release=make_release(project, owner))

    assert release.status == Release.Status.READY
    assert stored_files(release)["jsonl"] == b""
    assert release.manifest["counts"]["items"] == 0
    assert release.manifest["agreement"] == {"fleiss_kappa": None, "krippendorff_alpha": None}


# --- release_build: determinism, immutability, failures -----------------------------------------


def test_release_rebuild_gives_byte_identical_files(project, owner, voted):
    release = release_build(release=make_release(project, owner, include_raw=True, notes="é"))
    before = stored_files(release)
    manifest_before = release.manifest
    for record in release.files.all():
        default_storage.delete(record.path)
    ReleaseFile.objects.filter(release=release).delete()
    Release.objects.filter(pk=release.pk).update(status=Release.Status.FAILED, manifest=None)

    rebuilt = release_build(release=release)

    after = stored_files(rebuilt)
    assert set(after) == {"jsonl", "csv", "parquet", "hf", "labelstudio", "datasheet", "manifest"}
    assert after == before
    assert rebuilt.manifest == manifest_before
    listed = {f["format"]: f for f in rebuilt.manifest["files"]}
    for fmt in set(after) - {"manifest"}:  # every listed file, byte for byte
        assert listed[fmt]["sha256"] == hashlib.sha256(after[fmt]).hexdigest()
        assert listed[fmt]["size"] == len(after[fmt])
    assert json.loads(after["manifest"]) == rebuilt.manifest


def test_release_data_files_depend_only_on_the_cutoffs(project, owner, voted):
    first = release_build(release=make_release(project, owner, name="a"))
    second = release_build(release=make_release(project, owner, name="b"))

    one, two = stored_files(first), stored_files(second)

    assert one["jsonl"] == two["jsonl"]
    assert one["csv"] == two["csv"]
    assert one["manifest"] != two["manifest"]


def test_release_build_of_a_ready_release_changes_nothing(project, owner, voted):
    release = release_build(release=make_release(project, owner))
    built_at, files = release.built_at, list(release.files.values_list("id", "sha256"))

    with mock.patch.object(building, "_build_into") as build:
        again = release_build(release=release)

    build.assert_not_called()
    assert again.built_at == built_at
    assert list(again.files.values_list("id", "sha256")) == files


def test_release_build_failure_marks_failed_and_exposes_no_files(project, owner, voted):
    release = make_release(project, owner)

    with mock.patch("quality.releases.manifest._agreement", side_effect=RuntimeError("boom")):
        failed = release_build(release=release)

    assert failed.status == Release.Status.FAILED
    assert "boom" in failed.error
    assert not failed.files.exists()
    assert failed.manifest is None
    with pytest.raises(ConflictError):
        release_file_open(release=failed, fmt="jsonl")


def test_release_build_fails_loudly_on_a_label_outside_the_label_set(project, owner, annotators):
    item = ItemFactory(project=project)
    vote(item, annotators[0], "not-a-label")

    failed = release_build(release=make_release(project, owner))

    assert failed.status == Release.Status.FAILED
    assert "'not-a-label'" in failed.error
    assert not failed.files.exists()


def test_release_retry_rebuilds_a_failed_release(
    project, owner, voted, django_capture_on_commit_callbacks
):
    release = make_release(project, owner)
    Release.objects.filter(pk=release.pk).update(status=Release.Status.FAILED, error="x")
    release.refresh_from_db()

    with (
        mock.patch.object(release_tasks.release_build_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        retried = release_retry(release=release, user=owner)

    delay.assert_called_once_with(release.pk)
    assert (retried.status, retried.error) == (Release.Status.PENDING, "")
    with pytest.raises(ConflictError):
        release_retry(release=retried, user=owner)


def test_release_build_records_progress_in_small_updates(project, owner, annotators, monkeypatch):
    monkeypatch.setattr(building, "CHUNK_SIZE", 10)
    for item in ItemFactory.create_batch(35, project=project):
        vote(item, annotators[0], "positive")
    release = make_release(project, owner)

    with CaptureQueriesContext(connection) as queries:
        release = release_build(release=release)

    progress_updates = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('UPDATE "quality_release" SET "progress"')
    ]
    assert len(progress_updates) == 3  # one per full chunk of 10 items
    assert release.progress == 1.0


def _project_with_items(owner, annotators, n):
    project = ProjectFactory(created_by=owner)
    items = Item.objects.bulk_create(
        [
            Item(project=project, data={"text": f"t{i}"}, content_hash=f"{n}-{i}", target=3)
            for i in range(n)
        ]
    )
    Annotation.objects.bulk_create(
        [
            Annotation(project=project, item=item, author=user, value={"label": "positive"})
            for item in items
            for user in annotators
        ]
    )
    return project


def test_release_build_query_count_does_not_grow_with_items(
    owner, annotators, django_assert_max_num_queries
):
    small = make_release(_project_with_items(owner, annotators, 50), owner)
    large = make_release(_project_with_items(owner, annotators, 500), owner)
    with CaptureQueriesContext(connection) as baseline:
        release_build(release=small)

    with django_assert_max_num_queries(len(baseline.captured_queries)):
        built = release_build(release=large)

    assert built.manifest["counts"]["items"] == 500
    assert built.manifest["counts"]["annotations"] == 1500


# --- downloads ----------------------------------------------------------------------------------


def test_release_file_open_serves_verified_files(project, owner, voted):
    release = release_build(release=make_release(project, owner))

    download = release_file_open(release=release, fmt="jsonl")

    body = download.file.read()
    download.file.close()
    assert hashlib.sha256(body).hexdigest() == download.sha256
    assert download.filename == f"reviews-v{release.version}.jsonl"
    assert download.size == len(body)


def test_release_file_open_refuses_a_tampered_file(project, owner, voted):
    release = release_build(release=make_release(project, owner))
    path = release.files.get(format="csv").path
    tampered = default_storage.open(path, "rb").read().replace(b"positive", b"negative")
    default_storage.delete(path)
    default_storage.save(path, io.BytesIO(tampered))

    with pytest.raises(ReleaseIntegrityError) as caught:
        release_file_open(release=release, fmt="csv")

    assert caught.value.status_code == 500
    assert "checksum" in caught.value.message


def test_release_file_open_refuses_a_missing_file(project, owner, voted):
    release = release_build(release=make_release(project, owner))
    default_storage.delete(release.files.get(format="jsonl").path)

    with pytest.raises(ReleaseIntegrityError):
        release_file_open(release=release, fmt="jsonl")


def test_release_file_open_refuses_unknown_formats_and_unready_releases(project, owner, voted):
    release = make_release(project, owner)

    with pytest.raises(ConflictError):
        release_file_open(release=release, fmt="csv")
    with pytest.raises(Exception) as caught:
        release_file_open(release=release, fmt="xlsx")

    assert caught.value.code == "unknown_format"


# --- task ---------------------------------------------------------------------------------------


def test_release_build_task_builds_and_ignores_missing_releases(project, owner, voted):
    release = make_release(project, owner)

    release_build_task(release.pk)
    release_build_task(release.pk + 1000)

    release.refresh_from_db()
    assert release.status == Release.Status.READY


def test_release_create_with_eager_celery_builds_on_commit(
    project, owner, voted, celery_eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        release = release_create(project=project, user=owner, name="eager")

    release.refresh_from_db()
    assert release.status == Release.Status.READY
    assert release.manifest["counts"]["items"] == 3


def _peak_build_memory(release):
    import tracemalloc

    tracemalloc.start()
    try:
        release_build(release=release)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_release_build_memory_does_not_grow_with_items(owner, annotators, monkeypatch):
    monkeypatch.setattr(building, "CHUNK_SIZE", 50)
    monkeypatch.setattr(formats, "ROW_GROUP_SIZE", 50)  # Parquet holds one row group at a time
    padding = "x" * 2000
    releases_by_size = {}
    for n in (200, 2000):
        project = _project_with_items(owner, annotators, n)
        Item.objects.filter(project=project).update(data={"text": padding})
        releases_by_size[n] = make_release(project, owner)

    small = _peak_build_memory(releases_by_size[200])
    large = _peak_build_memory(releases_by_size[2000])

    # Loading the 2000 items (4 MB of text) at once would dwarf the 200-item build.
    assert large < small + 1_000_000, (small, large)


def test_release_agreement_leaves_gold_items_out(project, owner, voted, annotators):
    before = release_build(release=make_release(project, owner)).manifest["agreement"]
    gold = ItemFactory(project=project, gold={"label": "positive"})
    for author, label in zip(annotators, ["positive", "negative", "negative"], strict=True):
        vote(gold, author, label)

    after = release_build(release=make_release(project, owner)).manifest

    assert after["counts"]["gold_items"] == 1
    assert after["agreement"] == before


# --- the quality engine's consensus and expert review in releases ------------------------------


def test_release_carries_engine_labels_and_marks_expert_decisions(
    project, owner, voted, annotators
):
    from django.utils import timezone

    from quality.models import ItemScore, ReviewDecision

    now = timezone.now()
    # Item 0: the engine disagrees with the 2:1 majority. Item 1: an expert decided the tie.
    # Item 2: no engine label yet, majority vote it is.
    ItemScore.objects.create(
        item=voted[0],
        project=project,
        majority_label="positive",
        agreement=2 / 3,
        annotation_count=3,
        label="negative",
        confidence=0.71234,
        method="ds",
        computed_at=now,
    )
    ItemScore.objects.create(
        item=voted[1],
        project=project,
        majority_label="negative",
        agreement=0.5,
        annotation_count=2,
        label="negative",
        confidence=1.0,
        state="reviewed",
        computed_at=now,
    )
    ReviewDecision.objects.create(
        project=project,
        item=voted[1],
        reviewer=owner,
        value={"label": "negative"},
        action="picked",
        consensus_label="positive",
        consensus_confidence=0.5,
    )

    release = release_build(release=make_release(project, owner))

    rows = jsonl_rows(release)
    assert [(r["label"], r["confidence"], r["expert_reviewed"]) for r in rows] == [
        ("negative", 0.7123, False),
        ("negative", 1.0, True),
        ("negative", 1.0, False),  # unanimous majority: its vote share
    ]
    assert [r["agreement"] for r in rows] == [round(2 / 3, 4), 0.5, 1.0]  # the plain vote
    table = list(csv.DictReader(io.StringIO(stored_files(release)["csv"].decode())))
    assert [r["expert_reviewed"] for r in table] == ["false", "true", "false"]
    assert [r["confidence"] for r in table] == ["0.7123", "1.0", "1.0"]
    assert release.manifest["expert_reviewed"] == 1
    assert release.manifest["label_distribution"]["consensus"] == {"positive": 0, "negative": 3}
    assert release.manifest["consensus_method"].startswith("quality engine (ds)")


def test_release_ignores_expert_decisions_made_after_it_was_created(project, owner, voted):
    from django.utils import timezone

    from quality.models import ItemScore, ReviewDecision

    release = make_release(project, owner)
    ReviewDecision.objects.create(
        project=project,
        item=voted[1],
        reviewer=owner,
        value={"label": "negative"},
        action="corrected",
    )
    ItemScore.objects.create(
        item=voted[1],
        project=project,
        label="negative",
        confidence=1.0,
        state="reviewed",
        computed_at=timezone.now(),
    )

    rows = jsonl_rows(release_build(release=release))

    assert (rows[1]["label"], rows[1]["expert_reviewed"]) == ("positive", False)  # the tie's vote


def test_release_with_review_data_rebuilds_byte_identically(project, owner, voted):
    from django.utils import timezone

    from quality.models import ItemScore, ReviewDecision

    ItemScore.objects.create(
        item=voted[0], project=project, label="negative", confidence=0.6, computed_at=timezone.now()
    )
    ReviewDecision.objects.create(
        project=project,
        item=voted[2],
        reviewer=owner,
        value={"label": "positive"},
        action="corrected",
    )
    first = release_build(release=make_release(project, owner, name="a"))
    second = release_build(release=make_release(project, owner, name="b"))

    assert stored_files(first)["jsonl"] == stored_files(second)["jsonl"]
    assert stored_files(first)["csv"] == stored_files(second)["csv"]
    assert [r["expert_reviewed"] for r in jsonl_rows(first)] == [False, False, True]

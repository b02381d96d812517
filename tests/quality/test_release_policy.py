"""Release selection policies: consensus / confidence / expert modes, leaving out flagged
workers' answers, validation with field paths, the create form and API, byte-identical rebuilds.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ApplicationError
from quality.models import ItemScore, QualityAction, Release, ReleaseFile, ReviewDecision
from quality.releases import annotator_pseudonym, release_build
from quality.releases.policy import policy_clean
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

SPAN_LABELS = [
    {"value": "PERSON", "hotkey": "p", "colour": "#0072b2"},
    {"value": "PLACE", "hotkey": "l", "colour": "#d55e00"},
]


def vote(item, author, label):
    return AnnotationFactory(item=item, author=author, value={"label": label})


def files_of(release):
    return {f.format: default_storage.open(f.path, "rb").read() for f in release.files.all()}


def rows_of(release):
    return [json.loads(line) for line in files_of(release)["jsonl"].decode().splitlines()]


@pytest.fixture
def workers():
    return [UserFactory(username=f"w{i}") for i in range(4)]


@pytest.fixture
def scored(project, owner, workers):
    """Four items: engine-scored 0.9, unscored tie (share 0.5), unanimous (1.0), expert-decided."""
    a, b, c, _d = workers
    items = ItemFactory.create_batch(4, project=project)
    vote(items[0], a, "positive"), vote(items[0], b, "negative"), vote(items[0], c, "positive")
    vote(items[1], a, "negative"), vote(items[1], b, "positive")
    vote(items[2], a, "negative"), vote(items[2], b, "negative")
    vote(items[3], a, "positive"), vote(items[3], b, "negative"), vote(items[3], c, "negative")
    ItemScore.objects.create(
        item=items[0], project=project, label="positive", confidence=0.9, computed_at=timezone.now()
    )
    ReviewDecision.objects.create(
        project=project, item=items[3], reviewer=owner, value={"label": "positive"}, action="picked"
    )
    return items


# --- validation ---------------------------------------------------------------------------------


def test_policy_clean_defaults_and_normalises():
    default = {"mode": "consensus", "min_confidence": None, "exclude_flagged": False}
    assert policy_clean(None) == default
    assert policy_clean({}) == default
    assert policy_clean({"mode": "confidence", "min_confidence": 1}) == {
        "mode": "confidence",
        "min_confidence": 1.0,
        "exclude_flagged": False,
    }
    assert policy_clean({"mode": "expert", "exclude_flagged": True})["exclude_flagged"] is True


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"mode": "best"}, "policy.mode"),
        ({"mode": "confidence"}, "policy.min_confidence"),
        ({"mode": "confidence", "min_confidence": 1.5}, "policy.min_confidence"),
        ({"mode": "confidence", "min_confidence": -0.1}, "policy.min_confidence"),
        ({"mode": "confidence", "min_confidence": "high"}, "policy.min_confidence"),
        ({"mode": "confidence", "min_confidence": True}, "policy.min_confidence"),
        ({"mode": "consensus", "min_confidence": 0.5}, "policy.min_confidence"),
        ({"exclude_flagged": "yes"}, "policy.exclude_flagged"),
        ({"colour": "red"}, "policy.colour"),
        (["consensus"], "policy"),
    ],
)
def test_policy_clean_names_the_bad_field(raw, field):
    with pytest.raises(ApplicationError) as caught:
        policy_clean(raw)
    assert list(caught.value.fields) == [field]
    assert caught.value.message.startswith(field)


def test_release_create_stores_the_normalised_policy_and_refuses_bad_ones(project, owner):
    release = make_release(project, owner, policy={"mode": "confidence", "min_confidence": 0.75})
    assert release.policy == {
        "mode": "confidence",
        "min_confidence": 0.75,
        "exclude_flagged": False,
    }
    with pytest.raises(ApplicationError) as caught:
        make_release(project, owner, policy={"mode": "confidence", "min_confidence": 2})
    assert "policy.min_confidence" in caught.value.fields
    assert Release.objects.filter(project=project).count() == 1


# --- modes --------------------------------------------------------------------------------------


def test_consensus_mode_takes_every_item_and_records_the_policy(project, owner, scored):
    release = release_build(release=make_release(project, owner))

    rows = rows_of(release)
    assert [(r["label"], r["confidence"], r["expert_reviewed"]) for r in rows] == [
        ("positive", 0.9, False),  # the engine's label
        ("positive", 0.5, False),  # no ItemScore: majority vote (tie by label order), its share
        ("negative", 1.0, False),
        ("positive", 1.0, True),  # the expert's decision
    ]
    policy = release.manifest["policy"]
    assert policy["mode"] == "consensus"
    assert policy["items_left_out"] == 0
    assert policy["description"] == "every item with a consensus"
    assert release.manifest["split"] is None
    assert "split" not in rows[0]


def test_confidence_mode_keeps_items_at_or_above_the_threshold(project, owner, scored):
    policy = {"mode": "confidence", "min_confidence": 0.9}
    release = release_build(release=make_release(project, owner, policy=policy))

    rows = rows_of(release)
    assert [r["item_id"] for r in rows] == [scored[0].pk, scored[2].pk, scored[3].pk]
    assert release.manifest["counts"]["items"] == 3
    assert release.manifest["counts"]["annotations"] == 8
    assert release.manifest["label_distribution"]["consensus"] == {"positive": 2, "negative": 1}
    assert release.manifest["policy"]["items_left_out"] == 1
    assert release.manifest["policy"]["min_confidence"] == 0.9
    table = list(csv.DictReader(io.StringIO(files_of(release)["csv"].decode())))
    assert [int(r["item_id"]) for r in table] == [r["item_id"] for r in rows]


def test_expert_mode_keeps_only_items_decided_before_the_release(project, owner, scored):
    release = make_release(project, owner, policy={"mode": "expert"})
    ReviewDecision.objects.create(  # after the release was created: does not count
        project=project,
        item=scored[1],
        reviewer=owner,
        value={"label": "positive"},
        action="picked",
    )

    rows = rows_of(release_build(release=release))

    assert [(r["item_id"], r["label"], r["expert_reviewed"]) for r in rows] == [
        (scored[3].pk, "positive", True)
    ]


# --- excluding flagged workers --------------------------------------------------------------------


def _act(project, worker, kind, **kwargs):
    return QualityAction.objects.create(project=project, worker=worker, kind=kind, **kwargs)


@pytest.fixture
def flagged_case(project, workers):
    """f is flagged; items: f breaks a tie / f votes alone / f absent / f tilts an engine label."""
    f, x, y, _z = workers
    items = ItemFactory.create_batch(4, project=project)
    vote(items[0], f, "negative"), vote(items[0], x, "negative"), vote(items[0], y, "positive")
    vote(items[1], f, "negative")
    vote(items[2], x, "positive"), vote(items[2], y, "positive")
    vote(items[3], f, "negative"), vote(items[3], x, "positive"), vote(items[3], y, "positive")
    ItemScore.objects.create(
        item=items[3], project=project, label="negative", confidence=0.8, computed_at=timezone.now()
    )
    _act(project, f, QualityAction.Kind.FLAG)
    return items


def test_exclude_flagged_leaves_out_their_answers_everywhere(project, owner, workers, flagged_case):
    f, x, y, _z = workers
    kept = release_build(release=make_release(project, owner, include_raw=True))
    release = release_build(
        release=make_release(project, owner, include_raw=True, policy={"exclude_flagged": True})
    )

    assert [r["label"] for r in rows_of(kept)] == ["negative", "negative", "positive", "negative"]
    rows = rows_of(release)
    assert [r["item_id"] for r in rows] == [
        flagged_case[0].pk,
        flagged_case[2].pk,
        flagged_case[3].pk,
    ]
    # Item 0 without f is a 1:1 tie (label order: positive); item 3 drops the engine's label,
    # computed with f's answer, for the majority of what is left.
    assert [(r["label"], r["agreement"], r["num_annotations"]) for r in rows] == [
        ("positive", 0.5, 2),
        ("positive", 1.0, 2),
        ("positive", 1.0, 2),
    ]
    flagged = annotator_pseudonym(project_id=project.pk, user_id=f.pk)
    assert all(a["annotator"] != flagged for r in rows for a in r["annotations"])
    manifest = release.manifest
    assert manifest["counts"] == {"items": 3, "gold_items": 0, "annotations": 6, "workers": 2}
    assert manifest["label_distribution"]["annotations"] == {"positive": 5, "negative": 1}
    assert manifest["agreement"] != kept.manifest["agreement"]
    assert manifest["consensus_method"] == "majority vote, ties by label order"
    assert manifest["policy"]["annotations_left_out"] == 3
    assert manifest["policy"]["workers_left_out"] == 1
    assert manifest["policy"]["items_left_out"] == 1


def test_exclude_flagged_counts_engine_exclusions_and_actions_active_at_creation(
    project, owner, workers
):
    f, x, y, z = workers
    item = ItemFactory(project=project)
    for worker, label in ((f, "negative"), (x, "negative"), (y, "positive"), (z, "negative")):
        vote(item, worker, label)
    _act(project, f, QualityAction.Kind.EXCLUDE)
    _act(project, x, QualityAction.Kind.BLOCK)
    _act(project, z, QualityAction.Kind.FLAG, undone_at=timezone.now())  # undone: counts again
    _act(project, y, QualityAction.Kind.REQUEUE)  # not an exclusion
    release = make_release(project, owner, policy={"exclude_flagged": True})
    late = _act(project, z, QualityAction.Kind.FLAG)  # after the release was created
    QualityAction.objects.filter(pk=late.pk).update(created_at=timezone.now() + timedelta(1))

    row = rows_of(release_build(release=release))[0]

    assert (row["label"], row["num_annotations"], row["agreement"]) == ("positive", 2, 0.5)


def test_exclude_flagged_keeps_an_expert_decided_item_without_answers(project, owner, workers):
    f = workers[0]
    item = ItemFactory(project=project)
    vote(item, f, "negative")
    _act(project, f, QualityAction.Kind.FLAG)
    ReviewDecision.objects.create(
        project=project, item=item, reviewer=owner, value={"label": "positive"}, action="corrected"
    )

    rows = rows_of(
        release_build(release=make_release(project, owner, policy={"exclude_flagged": True}))
    )

    assert [(r["label"], r["num_annotations"], r["expert_reviewed"]) for r in rows] == [
        ("positive", 0, True)
    ]


def test_structured_types_honour_the_policy(owner, workers):
    f, x, y, _z = workers
    project = ProjectFactory(created_by=owner, task_type="spans", labels=SPAN_LABELS)
    person = {"start": 0, "end": 3, "label": "PERSON"}
    place = {"start": 7, "end": 12, "label": "PLACE"}
    agreed = ItemFactory(project=project, data={"text": "Ada in London"}, content_hash="a")
    split = ItemFactory(project=project, data={"text": "Bob in Paris."}, content_hash="b")
    for worker in (x, y):
        AnnotationFactory(item=agreed, author=worker, value={"spans": [person], "relations": []})
    AnnotationFactory(item=split, author=x, value={"spans": [person], "relations": []})
    AnnotationFactory(item=split, author=y, value={"spans": [place], "relations": []})
    AnnotationFactory(item=split, author=f, value={"spans": [place], "relations": []})
    _act(project, f, QualityAction.Kind.FLAG)

    everything = rows_of(release_build(release=make_release(project, owner)))
    confident = release_build(
        release=make_release(project, owner, policy={"mode": "confidence", "min_confidence": 0.9})
    )
    unflagged = rows_of(
        release_build(release=make_release(project, owner, policy={"exclude_flagged": True}))
    )

    assert [r["value"]["spans"] for r in everything] == [[person], [place]]
    assert [r["item_id"] for r in rows_of(confident)] == [agreed.pk]
    assert confident.manifest["policy"]["items_left_out"] == 1
    assert unflagged[1]["num_annotations"] == 2
    assert unflagged[1]["value"]["spans"] == []  # 1:1 on each span: no strict majority


# --- rebuild --------------------------------------------------------------------------------------


def test_release_with_policy_and_split_rebuilds_byte_identically(project, owner, workers, scored):
    _act(project, workers[2], QualityAction.Kind.FLAG)
    release = release_build(
        release=make_release(
            project,
            owner,
            include_raw=True,
            policy={"mode": "confidence", "min_confidence": 0.5, "exclude_flagged": True},
            split={"seed": 3, "ratios": {"train": 0.5, "validation": 0.25, "test": 0.25}},
        )
    )
    before, manifest = files_of(release), release.manifest
    for record in release.files.all():
        default_storage.delete(record.path)
    ReleaseFile.objects.filter(release=release).delete()
    Release.objects.filter(pk=release.pk).update(status=Release.Status.FAILED, manifest=None)

    rebuilt = release_build(release=release)

    assert files_of(rebuilt) == before
    assert rebuilt.manifest == manifest
    assert manifest["policy"]["workers_left_out"] == 1
    assert sum(manifest["split"]["counts"].values()) == manifest["counts"]["items"]


# --- the create form and the API ---------------------------------------------------------------


def test_create_form_takes_policy_and_split(client, owner, project):
    client.force_login(owner)
    url = reverse("releases:release-list", args=[project.pk])
    page = client.get(url).content.decode()
    assert 'name="policy_mode"' in page
    assert 'name="split_seed"' in page
    assert 'value="42"' in page

    response = client.post(
        url,
        {
            "policy_mode": "confidence",
            "min_confidence": "0.7",
            "exclude_flagged": "on",
            "split_enabled": "on",
            "split_seed": "7",
            "split_train": "0.6",
            "split_validation": "0.2",
            "split_test": "0.2",
            "split_group_key": "doc",
        },
    )

    assert response.status_code == 302
    release = Release.objects.get(project=project)
    assert release.policy == {"mode": "confidence", "min_confidence": 0.7, "exclude_flagged": True}
    assert release.split == {
        "seed": 7,
        "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2},
        "group_key": "doc",
    }


def test_create_form_defaults_to_no_split_and_the_consensus_policy(client, owner, project):
    client.force_login(owner)
    url = reverse("releases:release-list", args=[project.pk])

    client.post(url, {"name": "plain", "min_confidence": "0.3"})  # ignored outside its mode

    release = Release.objects.get(project=project)
    assert release.policy["mode"] == "consensus"
    assert release.policy["min_confidence"] is None
    assert release.split == {}


def test_create_form_shows_errors_on_their_fields(client, owner, project):
    client.force_login(owner)
    url = reverse("releases:release-list", args=[project.pk])
    data = {
        "policy_mode": "confidence",
        "min_confidence": "1.4",
        "split_enabled": "on",
        "split_seed": "42",
        "split_train": "0.8",
        "split_validation": "0.3",
        "split_test": "0.1",
    }

    response = client.post(url, data, HTTP_HX_REQUEST="true")

    assert response.status_code == 422
    form = response.context_data["form"]
    assert form.errors["min_confidence"] == ["Must be between 0 and 1."]
    assert form.errors["split_ratios"] == ["The ratios must add up to 1 (they add up to 1.2)."]
    page = response.content.decode()
    assert 'id="min-confidence-errors"' in page
    assert 'id="split-grid-errors"' in page
    assert 'id="id_split_train" name="split_train"' in page
    assert not Release.objects.filter(project=project).exists()


def test_create_api_takes_policy_and_split_with_defaults(project, owner, client_for):
    api = client_for(owner)
    url = reverse("api:release-list", args=[project.pk])

    response = api.post(
        url, {"policy": {"mode": "expert"}, "split": {"group_key": "doc"}}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["policy"] == {"mode": "expert", "min_confidence": None, "exclude_flagged": False}
    assert body["split"] == {
        "seed": 42,
        "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1},
        "group_key": "doc",
    }
    plain = api.post(url, {}, format="json").json()
    assert plain["split"] == {}
    assert plain["policy"]["mode"] == "consensus"
    default = api.post(url, {"split": True}, format="json").json()
    assert default["split"]["seed"] == 42
    assert default["split"]["ratios"] == {"train": 0.8, "validation": 0.1, "test": 0.1}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"policy": {"mode": "confidence", "min_confidence": 3}}, "policy.min_confidence"),
        ({"split": {"ratios": {"train": 0.9, "validation": 0.1, "test": 0.1}}}, "split.ratios"),
        ({"split": {"ratios": {"train": 0.9, "validation": 0.1}}}, "split.ratios.test"),
        ({"split": {"seed": -1}}, "split.seed"),
    ],
)
def test_create_api_reports_field_paths(project, owner, client_for, payload, field):
    response = client_for(owner).post(
        reverse("api:release-list", args=[project.pk]), payload, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert not Release.objects.filter(project=project).exists()

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from quality import review as review_module
from quality.models import ItemScore, ReviewDecision, WorkerScore
from quality.review import (
    item_review_get,
    pseudonym,
    review_decide,
    review_queue,
    review_queue_next,
)
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import vote

pytestmark = pytest.mark.django_db

LABELS = [
    {"value": "positive", "hotkey": "1"},
    {"value": "negative", "hotkey": "2"},
    {"value": "neutral", "hotkey": "3"},
]


def scored_item(project, workers, answers, *, state="review", confidence=0.5, label=None):
    """An item answered by `workers` with `answers`, and its ItemScore as the engine leaves it."""
    item = ItemFactory(project=project)
    for worker, answer in zip(workers, answers, strict=True):
        vote(item, worker, answer)
    top = max(dict.fromkeys(answers), key=answers.count)  # ties: the first answer given
    ItemScore.objects.create(
        item=item,
        project=project,
        majority_label=top,
        agreement=answers.count(top) / len(answers),
        annotation_count=len(answers),
        label=label if label is not None else top,
        confidence=confidence,
        posterior={
            top: confidence,
            "negative" if top != "negative" else "positive": 1 - confidence,
        },
        method="ds",
        state=state,
        computed_at=timezone.now(),
    )
    return item


@pytest.fixture
def project(owner):
    return ProjectFactory(created_by=owner, name="Reviews", labels=[dict(x) for x in LABELS])


@pytest.fixture
def crowd(project):
    return [UserFactory(username=f"crowd-{n}") for n in range(3)]


@pytest.fixture
def queue(project, crowd):
    """Three doubtful items (confidence 0.6, 0.4, 0.5) and one confident item."""
    a, b, c = crowd
    return {
        "mid": scored_item(project, crowd, ["positive", "negative", "positive"], confidence=0.6),
        "low": scored_item(project, crowd, ["negative", "positive", "negative"], confidence=0.4),
        "half": scored_item(project, [a, b], ["positive", "negative"], confidence=0.5),
        "sure": scored_item(project, crowd, ["positive"] * 3, state="confident", confidence=0.99),
    }


@pytest.fixture
def no_recompute():
    with mock.patch.object(review_module, "quality_recompute_schedule") as schedule:
        yield schedule


# --- selectors ----------------------------------------------------------------------------------


def test_review_queue_lists_review_items_lowest_confidence_first(project, owner, queue):
    items = [s.item_id for s in review_queue(project=project, reviewer=owner)]

    assert items == [queue["low"].pk, queue["half"].pk, queue["mid"].pk]


def test_review_queue_leaves_out_items_the_reviewer_labeled(project, queue, crowd):
    items = [s.item_id for s in review_queue(project=project, reviewer=crowd[2])]

    assert items == [queue["half"].pk]  # crowd-2 answered "low" and "mid"


def test_review_queue_next_moves_past_an_item_and_wraps(project, owner, queue):
    order = [queue["low"].pk, queue["half"].pk, queue["mid"].pk]

    first = review_queue_next(project=project, reviewer=owner)
    second = review_queue_next(project=project, reviewer=owner, after=first.item_id)
    third = review_queue_next(project=project, reviewer=owner, after=second.item_id)
    wrapped = review_queue_next(project=project, reviewer=owner, after=third.item_id)

    assert [first.item_id, second.item_id, third.item_id] == order
    assert wrapped.item_id == order[0]


def test_item_review_shows_pseudonyms_latest_answers_and_no_usernames(project, queue, crowd):
    item = queue["mid"]
    vote(item, crowd[0], "neutral")  # crowd-0 changes their mind: the latest answer counts
    WorkerScore.objects.create(
        project=project,
        worker=crowd[1],
        reliability=0.91,
        excluded=True,
        computed_at=timezone.now(),
    )

    review = item_review_get(project=project, item_id=item.pk)

    assert [(a.pseudonym, a.label) for a in review.answers] == [
        ("Worker A", "neutral"),
        ("Worker B", "negative"),
        ("Worker C", "positive"),
    ]
    assert (review.answers[1].reliability, review.answers[1].excluded) == (0.91, True)
    assert review.consensus_label == "positive"
    assert review.confidence == 0.6
    assert [(b.label, b.probability) for b in review.bars] == [
        ("positive", 0.6),
        ("negative", pytest.approx(0.4)),
        ("neutral", 0.0),
    ]
    assert review.action_for("positive") == "accepted"
    assert review.action_for("negative") == "picked"
    assert review.action_for("neutral") == "picked"


def test_pseudonyms_run_past_z():
    assert [pseudonym(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "Worker A",
        "Worker B",
        "Worker Z",
        "Worker AA",
        "Worker AB",
        "Worker ZZ",
        "Worker AAA",
    ]


# --- review_decide ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "label", "stored"),
    [
        ("accepted", "", "positive"),
        ("accepted", "positive", "positive"),
        ("picked", "negative", "negative"),
        ("corrected", "neutral", "neutral"),
    ],
)
def test_review_decide_stores_the_decision_and_settles_the_item(
    project, owner, queue, action, label, stored, django_capture_on_commit_callbacks, no_recompute
):
    item = queue["mid"]

    with django_capture_on_commit_callbacks(execute=True):
        decision = review_decide(item=item, reviewer=owner, action=action, label=label)

    assert decision.value == {"label": stored}
    assert (decision.action, decision.reviewer, decision.project) == (action, owner, project)
    assert (decision.consensus_label, decision.consensus_confidence) == ("positive", 0.6)
    score = ItemScore.objects.get(item=item)
    assert (score.label, score.confidence, score.state) == (stored, 1.0, "reviewed")
    no_recompute.assert_called_once_with(project_id=project.pk)
    assert item.pk not in [s.item_id for s in review_queue(project=project, reviewer=owner)]


@pytest.mark.parametrize(
    ("action", "label", "field"),
    [
        ("corrected", "sarcastic", "label"),  # not in the label set
        ("picked", "neutral", "label"),  # no worker answered it
        ("accepted", "negative", "label"),  # accepting is not changing
        ("approved", "positive", "action"),
    ],
)
def test_review_decide_refuses_invalid_decisions_and_stores_nothing(
    project, owner, queue, action, label, field, no_recompute
):
    item = queue["mid"]

    with pytest.raises(ValidationError) as caught:
        review_decide(item=item, reviewer=owner, action=action, label=label)

    assert set(caught.value.message_dict) == {field}
    assert not ReviewDecision.objects.exists()
    score = ItemScore.objects.get(item=item)
    assert (score.label, score.state) == ("positive", "review")
    no_recompute.assert_not_called()


def test_review_decide_on_an_unscored_item_creates_its_score(project, owner, no_recompute):
    item = ItemFactory(project=project)

    review_decide(item=item, reviewer=owner, action="corrected", label="negative")

    score = ItemScore.objects.get(item=item)
    assert (score.label, score.confidence, score.state) == ("negative", 1.0, "reviewed")


def test_review_decide_latest_decision_wins(project, owner, reviewer, queue, no_recompute):
    item = queue["low"]
    review_decide(item=item, reviewer=owner, action="accepted")

    review_decide(item=item, reviewer=reviewer, action="corrected", label="neutral")

    assert ItemScore.objects.get(item=item).label == "neutral"
    assert item_review_get(project=project, item_id=item.pk).decision.reviewer == reviewer


# --- HTML views ---------------------------------------------------------------------------------


def page_url(project):
    return reverse("quality:review", kwargs={"pk": project.pk})


def decide_url(project, item):
    return reverse("quality:review-decide", kwargs={"pk": project.pk, "item_id": item.pk})


def test_review_page_shows_the_lowest_item_with_pseudonyms_only(client, project, owner, queue):
    client.force_login(owner)

    response = client.get(page_url(project))

    page = response.content.decode()
    assert response.status_code == 200
    assert f'id="review-item-{queue["low"].pk}"' in page
    assert queue["low"].text in page
    assert "Worker A" in page
    assert "Worker C" in page
    assert "crowd-0" not in page
    assert "crowd-1" not in page
    assert 'id="review-consensus-value">negative<' in page
    assert "confidence 40%" in page
    assert '<strong id="review-queue-count">3</strong>' in page
    assert 'data-hotkey="3"' in page
    assert 'data-action="accept"' in page


def test_review_page_is_for_owners_and_reviewers_only(client, project, reviewer, outsider, queue):
    annotator = make_annotator(project, "annie")
    item_url = reverse("quality:review-item", kwargs={"pk": project.pk, "item_id": queue["low"].pk})
    statuses = {}
    for name, user in [("reviewer", reviewer), ("annotator", annotator), ("outsider", outsider)]:
        client.force_login(user)
        statuses[name] = (
            client.get(page_url(project)).status_code,
            client.get(item_url).status_code,
            client.post(decide_url(project, queue["low"]), {"label": "negative"}).status_code,
        )

    assert statuses == {
        "reviewer": (200, 200, 302),
        "annotator": (403, 403, 403),
        "outsider": (404, 404, 404),
    }
    assert ReviewDecision.objects.count() == 1  # only the reviewer's


def test_review_decide_with_htmx_answers_with_the_next_item(
    client, project, owner, queue, no_recompute
):
    client.force_login(owner)

    response = client.post(
        decide_url(project, queue["low"]), {"label": "positive"}, headers={"HX-Request": "true"}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="review-stage"')
    assert f'id="review-item-{queue["half"].pk}"' in page  # the next in the queue
    assert "Saved “positive”" in page
    assert response["HX-Push-Url"].endswith(f"/review/items/{queue['half'].pk}/")
    decision = ReviewDecision.objects.get()
    assert (decision.item_id, decision.action, decision.value) == (
        queue["low"].pk,
        "picked",  # a worker answered positive; the consensus was negative
        {"label": "positive"},
    )


def test_review_decide_form_derives_the_action_from_the_label(
    client, project, owner, queue, no_recompute
):
    client.force_login(owner)

    client.post(decide_url(project, queue["low"]), {"label": "negative"})
    client.post(decide_url(project, queue["half"]), {"label": "neutral"})

    actions = dict(ReviewDecision.objects.values_list("item_id", "action"))
    assert actions == {queue["low"].pk: "accepted", queue["half"].pk: "corrected"}


def test_review_decide_with_a_bad_label_is_a_422_and_stores_nothing(
    client, project, owner, queue, no_recompute
):
    client.force_login(owner)

    response = client.post(
        decide_url(project, queue["low"]), {"label": "sarcastic"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 422
    page = response.content.decode()
    assert f'id="review-item-{queue["low"].pk}"' in page  # the same item, with the error
    assert "not in the project&#x27;s label set" in page
    assert not ReviewDecision.objects.exists()


def test_review_skip_moves_on_and_the_empty_queue_says_so(client, project, owner, queue):
    client.force_login(owner)

    skipped = client.get(page_url(project), {"after": queue["low"].pk})
    ItemScore.objects.filter(state="review").update(state="confident")
    empty = client.get(page_url(project))

    assert f'id="review-item-{queue["half"].pk}"' in skipped.content.decode()
    assert "Nothing waits for review" in empty.content.decode()


def test_review_page_query_count_is_fixed(
    client, project, owner, queue, crowd, django_assert_max_num_queries
):
    for n in range(20):
        vote(queue["low"], UserFactory(username=f"more-{n}"), "neutral")
    client.force_login(owner)

    with django_assert_max_num_queries(10):
        response = client.get(page_url(project))

    assert "Worker W" in response.content.decode()  # 23 answers: A … W


# --- API ----------------------------------------------------------------------------------------


def api(name, project, item=None):
    kwargs = {"project_id": project.pk}
    if item is not None:
        kwargs["item_id"] = item.pk
    return reverse(f"api:review-{name}", kwargs=kwargs)


def test_review_queue_api_is_paginated_and_ordered(project, owner, queue, client_for):
    body = client_for(owner).get(api("queue", project), {"page_size": 2}).json()

    assert body["count"] == 3
    assert [row["item_id"] for row in body["results"]] == [
        queue["low"].pk,
        queue["half"].pk,
        queue["mid"].pk,
    ]
    assert body["results"][0] | {"text": ""} == {
        "item_id": queue["low"].pk,
        "text": "",
        "label": "negative",
        "majority_label": "negative",
        "confidence": 0.4,
        "annotation_count": 3,
        "state": "review",
    }


def test_review_item_api_shows_pseudonymous_answers(project, reviewer, queue, client_for):
    body = client_for(reviewer).get(api("item", project, queue["half"])).json()

    assert body["answers"] == [
        {"worker": "Worker A", "label": "positive", "reliability": None, "excluded": False},
        {"worker": "Worker B", "label": "negative", "reliability": None, "excluded": False},
    ]
    assert (body["consensus_label"], body["confidence"], body["state"]) == (
        "positive",
        0.5,
        "review",
    )
    assert body["posterior"] == {"positive": 0.5, "negative": 0.5, "neutral": 0.0}
    assert body["decision"] is None
    assert "crowd-0" not in str(body)


def test_review_decision_api_accepts_and_refuses(project, owner, queue, client_for, no_recompute):
    client = client_for(owner)

    bad = client.post(api("decision", project, queue["mid"]), {"action": "corrected", "label": "x"})
    good = client.post(api("decision", project, queue["mid"]), {"action": "accepted"})

    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"label"}
    assert good.status_code == 201
    assert good.json()["label"] == "positive"
    assert good.json()["action"] == "accepted"
    assert ReviewDecision.objects.count() == 1
    assert ItemScore.objects.get(item=queue["mid"]).state == "reviewed"


def test_review_api_refuses_annotators_and_hides_from_outsiders(
    project, queue, outsider, client_for
):
    annotator = make_annotator(project, "annie")
    other = ItemFactory(project=ProjectFactory())

    for user, expected in [(annotator, 403), (outsider, 404)]:
        client = client_for(user)
        assert client.get(api("queue", project)).status_code == expected
        assert client.get(api("item", project, queue["low"])).status_code == expected
        response = client.post(api("decision", project, queue["low"]), {"action": "accepted"})
        assert response.status_code == expected
    owner_client = client_for(project.created_by)
    assert owner_client.get(api("item", project, other)).status_code == 404  # not this project's
    assert not ReviewDecision.objects.exists()

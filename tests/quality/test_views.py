from __future__ import annotations

import re

import pytest
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from annotation.services import project_member_set
from quality.models import ItemScore, ProjectScore, QualityAction, WorkerScore
from quality.services import quality_recompute
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import vote

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored(project):
    """A disputed item, an agreed item and a gold item, labeled by two workers."""
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    disputed = ItemFactory(project=project, data={"text": "The plot was fine, the ending <b>bad"})
    agreed = ItemFactory(project=project, data={"text": "Loved every minute of it"})
    gold = ItemFactory(project=project, gold={"label": "negative"})
    vote(disputed, ann, "negative", 4000), vote(disputed, bob, "positive", 2000)
    vote(agreed, ann, "positive", 1000), vote(agreed, bob, "positive", 1000)
    vote(gold, ann, "negative"), vote(gold, bob, "negative")
    score = quality_recompute(project=project)
    return {"score": score, "disputed": disputed, "agreed": agreed, "gold": gold}


def url(project):
    return reverse("quality:dashboard", kwargs={"pk": project.pk})


def test_dashboard_shows_agreement_workers_and_weak_items(client, project, owner, scored):
    client.force_login(owner)

    response = client.get(url(project))

    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="{url(project)}" aria-current="page"' in page  # the Quality tab is active
    assert f"{scored['score'].fleiss_kappa:.3f}" in page
    assert "Fleiss' kappa" in page
    assert "Krippendorff's alpha" in page
    assert 'hx-trigger="every 5s"' in page
    assert 'id="worker-' in page
    assert ">ann<" in page
    assert ">bob<" in page
    assert '100% <span class="muted">(n=1)</span>' in page  # both right on the gold item
    # The disputed item is the weakest; its text is escaped; agreed and gold items are not listed.
    assert f'id="item-{scored["disputed"].pk}"' in page
    assert "the ending &lt;b&gt;bad" in page
    assert f'id="item-{scored["agreed"].pk}"' not in page
    assert f'id="item-{scored["gold"].pk}"' not in page


def test_dashboard_reads_the_coefficients_in_plain_language(client, owner):
    project = ProjectFactory(created_by=owner)
    workers = [UserFactory() for _ in range(3)]
    for label in ["positive", "negative", "positive", "negative"]:
        item = ItemFactory(project=project)
        for worker in workers:
            vote(item, worker, label)
    quality_recompute(project=project)
    client.force_login(owner)

    page = client.get(url(project)).content.decode()

    assert "Almost perfect agreement" in page
    assert "Reliable" in page


def test_dashboard_before_the_first_recompute(client, project, owner, item):
    client.force_login(owner)

    page = client.get(url(project)).content.decode()

    assert "Not computed yet" in page
    assert "No annotations scored yet." in page
    assert "Not enough overlapping labels yet" in page


def test_dashboard_htmx_poll_returns_only_the_stats_region(client, project, owner, scored):
    client.force_login(owner)

    response = client.get(url(project), headers={"HX-Request": "true"})

    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="quality-stats"')
    assert "<html" not in page
    assert 'class="tabs"' not in page
    assert "HX-Request" in response["Vary"]


def test_dashboard_is_open_to_reviewers(client, project, scored):
    reviewer = UserFactory(username="rita")
    project_member_set(project=project, user=reviewer, role="reviewer")
    client.force_login(reviewer)

    response = client.get(url(project))

    assert response.status_code == 200
    assert 'id="quality-stats"' in response.content.decode()


def test_dashboard_refuses_annotators_with_403(client, project, scored):
    client.force_login(make_annotator(project, "annie"))

    response = client.get(url(project))

    assert response.status_code == 403
    assert "ann" not in response.content.decode().split("<main", 1)[1].split("</main>")[0]


def test_dashboard_hides_projects_the_user_cannot_see(client, project, scored):
    client.force_login(UserFactory(username="stranger"))

    assert client.get(url(project)).status_code == 404
    assert client.get(reverse("quality:dashboard", kwargs={"pk": 10**9})).status_code == 404


def test_dashboard_sends_anonymous_users_to_log_in(client, project):
    response = client.get(url(project))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("htmx", [False, True])
def test_dashboard_query_count_does_not_grow_with_workers_or_items(
    client, project, owner, htmx, django_assert_max_num_queries
):
    workers = [UserFactory() for _ in range(25)]
    for item in ItemFactory.create_batch(40, project=project):
        for n, worker in enumerate(workers[:3]):
            vote(item, worker, "positive" if n or item.pk % 2 else "negative")
    for worker in workers[3:]:
        vote(ItemFactory(project=project), worker, "negative")
    quality_recompute(project=project)
    client.force_login(owner)
    headers = {"HX-Request": "true"} if htmx else {}

    with django_assert_max_num_queries(11):
        response = client.get(url(project), headers=headers)

    assert response.content.decode().count('id="worker-') == 25
    assert response.content.decode().count('id="item-') == 10


# --- charts, worker table, review count (data written directly, as the recompute would) -------

DETAILS = {
    "full_at": "2025-03-04T10:00:00+00:00",
    "method": "ds",
    "method_requested": "auto",
    "method_reason": "Dawid-Skene had the best held-out likelihood.",
    "agreement": {
        "fleiss": {"value": 0.612, "low": 0.55, "high": 0.67},
        "alpha_nominal": {"value": 0.6131, "low": 0.551, "high": 0.671},
        "per_label": [{"label": "positive", "kappa": 0.7, "alpha": 0.71, "n": 40}],
    },
    "over_time": [
        {
            "start": f"2025-03-0{d}T00:00:00+00:00",
            "end": f"2025-03-0{d + 1}T00:00:00+00:00",
            "votes": 30,
            "items": 10,
            "fleiss": {"value": 0.5 + d / 20, "low": 0.4 + d / 20, "high": 0.6 + d / 20},
            "alpha": {"value": 0.5 + d / 20, "low": 0.4 + d / 20, "high": 0.6 + d / 20},
        }
        for d in range(1, 5)
    ],
    "gold_trend": [
        {
            "start": "2025-03-01T00:00:00+00:00",
            "end": "x",
            "n": 20,
            "accuracy": 0.8,
            "low": 0.58,
            "high": 0.92,
        },
        {
            "start": "2025-03-02T00:00:00+00:00",
            "end": "x",
            "n": 25,
            "accuracy": 0.88,
            "low": 0.7,
            "high": 0.96,
        },
    ],
    "confusion": {"labels": ["positive", "negative"], "matrix": [[17, 3], [2, 23]]},
    "label_distribution": [
        {"label": "positive", "count": 30, "share": 0.6, "expected_share": 0.55},
        {"label": "negative", "count": 20, "share": 0.4, "expected_share": 0.45},
    ],
    "gold_pool": {
        "active_workers": 9,
        "workers_short": 2,
        "gold_needed": 4,
        "short": True,
        "active_gold": 12,
        "retired_gold": 3,
    },
}


def make_workers(project, count, **fields):
    users = [UserFactory(username=f"w{n:04d}") for n in range(count)]
    now = timezone.now()
    WorkerScore.objects.bulk_create(
        [
            WorkerScore(
                project=project,
                worker=user,
                annotation_count=10 + n,
                gold_seen=10,
                gold_correct=n % 11,
                gold_low=max(0.0, (n % 11) / 10 - 0.2),
                gold_high=min(1.0, (n % 11) / 10 + 0.2),
                reliability=(n % 7) / 7,
                median_duration_ms=1000 * (count - n),
                computed_at=now,
                **fields,
            )
            for n, user in enumerate(users)
        ]
    )
    return users


def test_dashboard_draws_charts_and_intervals_from_the_details(client, project, owner):
    ProjectScore.objects.create(
        project=project,
        fleiss_kappa=0.612,
        krippendorff_alpha=0.6131,
        details=DETAILS,
        computed_at=timezone.now(),
    )
    client.force_login(owner)

    page = client.get(url(project)).content.decode()

    for chart in (
        "chart-gold-trend",
        "chart-agreement-trend",
        "chart-label-balance",
        "chart-confusion",
    ):
        assert f'id="{chart}"' in page
    assert page.count('role="img"') == 4
    assert 'id="qd-method">ds<' in page
    assert "best held-out likelihood" in page
    assert "0.550 – 0.670" in page  # Fleiss' interval
    assert "Accuracy on gold: latest 0.880 (95% CI 0.700–0.960)" in page
    assert "positive: 60% (expected 55%)" in page
    assert "gold positive: 17 of 20 answered positive" in page
    assert "Running short" in page
    assert "data table" in page


def test_dashboard_without_details_shows_empty_charts(client, project, owner):
    ProjectScore.objects.create(project=project, details={}, computed_at=timezone.now())
    client.force_login(owner)

    page = client.get(url(project)).content.decode()

    assert page.count("No data yet.</text>") == 2
    assert "No answers on gold yet." in page
    assert "the quality engine has not run a full recompute yet" in page


def test_dashboard_review_count_links_to_the_queue(client, project, owner):
    for _ in range(3):
        ItemScore.objects.create(
            item=ItemFactory(project=project),
            project=project,
            state="review",
            computed_at=timezone.now(),
        )
    client.force_login(owner)

    page = client.get(url(project)).content.decode()

    assert '<div class="stat-value" id="qd-review-count">3</div>' in page
    assert f'href="{reverse("quality:review", kwargs={"pk": project.pk})}"' in page


def worker_rows(page):
    return re.findall(r'<tr id="worker-\d+">\s*<th scope="row">(w\d+)', page)


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("worker", lambda w: w.username),
        ("-labels", lambda w: -w.annotation_count),
        ("speed", lambda w: w.median_duration_ms),
        ("-reliability", lambda w: -w.reliability),
        ("gold", lambda w: w.gold_correct / w.gold_seen),
    ],
)
def test_dashboard_worker_table_sorts_by_query_parameter(client, project, owner, sort, key):
    make_workers(project, 12)
    client.force_login(owner)

    page = client.get(url(project), {"sort": sort}).content.decode()

    scores = WorkerScore.objects.filter(project=project).annotate(username=F("worker__username"))
    expected = [w.username for w in sorted(scores, key=lambda w: (key(w), w.username))]
    assert worker_rows(page) == expected
    assert 'aria-sort="ascending"' in page or 'aria-sort="descending"' in page


def test_dashboard_worker_table_pages_thousands_of_workers(
    client, project, owner, django_assert_max_num_queries
):
    make_workers(project, 1200)
    client.force_login(owner)

    with django_assert_max_num_queries(11):
        page = client.get(url(project), {"sort": "worker", "page": 3}).content.decode()

    assert worker_rows(page) == [f"w{n:04d}" for n in range(100, 150)]
    assert "101–150 of 1200 workers" in page
    assert "Page 3 of 24" in page
    assert 'href="?sort=worker&amp;page=4"' in page


def test_dashboard_worker_table_shows_flags_and_fired_signals(client, project, owner):
    flagged, calm = make_workers(project, 2)
    QualityAction.objects.create(
        project=project,
        worker=flagged,
        kind="flag",
        rule="speed_ratio < 0.3",
        evidence={"signal": "speed_ratio", "value": 0.21},
    )
    QualityAction.objects.create(
        project=project,
        worker=calm,
        kind="exclude",
        evidence={"signal": "burst"},
        undone_at=timezone.now(),
    )
    client.force_login(owner)

    page = client.get(url(project), {"sort": "-flags"}).content.decode()

    assert worker_rows(page) == ["w0000", "w0001"]
    row = page.split('id="worker-')[1]
    assert "speed_ratio = 0.21" in row
    assert "Flag for review" in row
    assert "burst" not in page.split('id="worker-')[2]  # undone: no longer a flag

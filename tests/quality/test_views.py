from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.services import project_member_set
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

    with django_assert_max_num_queries(9):
        response = client.get(url(project), headers=headers)

    assert response.content.decode().count('id="worker-') == 25
    assert response.content.decode().count('id="item-') == 10

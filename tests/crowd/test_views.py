from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotation, Item, ProjectMember
from crowd.models import Assignment
from crowd.services import assignment_claim_next, client_key_compute, project_member_add
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

CSRF_VALUES = re.compile(r'(csrfmiddlewaretoken" value="|data-csrf-token="|"x-csrftoken": ")[^"]+')
NOTHING_LEFT = "Nothing left for you in this project right now — thank you!"


def label_url(project):
    return reverse("crowd:label", args=[project.pk])


def submit_url(assignment):
    return reverse("crowd:label-submit", args=[assignment.project_id, assignment.pk])


def skip_url(assignment):
    return reverse("crowd:label-skip", args=[assignment.project_id, assignment.pk])


def live(worker, project):
    return list(
        Assignment.objects.filter(
            worker=worker, project=project, status=Assignment.Status.RESERVED
        ).order_by("id")
    )


def reserve(item, worker):
    """A live reservation made directly, so a test decides which item (gold or not) is served."""
    item.slots_taken += 1
    item.save(update_fields=["slots_taken"])
    return Assignment.objects.create(
        project=item.project,
        item=item,
        worker=worker,
        expires_at=timezone.now() + timedelta(minutes=10),
    )


@pytest.fixture
def worker_client(client, worker):
    client.force_login(worker)
    return client


@pytest.fixture
def items(project):
    return ItemFactory.create_batch(4, project=project)


# --- permissions ---------------------------------------------------------------------------


def test_label_page_sends_anonymous_users_to_login(client, project):
    response = client.get(label_url(project))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_label_page_is_404_for_users_who_cannot_see_the_project(client, project, items):
    client.force_login(UserFactory(username="stranger"))

    response = client.get(label_url(project))

    assert response.status_code == 404
    assert not Assignment.objects.exists()


def test_label_page_is_403_for_a_reviewer_without_a_pool(client, project, items):
    reviewer = UserFactory(username="reviewer")
    project_member_add(project=project, username="reviewer", role="reviewer")
    client.force_login(reviewer)

    response = client.get(label_url(project))

    assert response.status_code == 403
    assert not Assignment.objects.exists()


def test_submit_endpoint_is_404_for_another_workers_assignment(client, project, items, worker):
    held = assignment_claim_next(worker=worker, project=project)
    client.force_login(make_annotator(project, "intruder"))

    response = client.post(submit_url(held), {"label": "positive", "duration_ms": 5})

    assert response.status_code == 404
    held.refresh_from_db()
    assert held.status == Assignment.Status.RESERVED


def test_submit_endpoint_refuses_get(worker_client, project, items, worker):
    held = assignment_claim_next(worker=worker, project=project)

    response = worker_client.get(submit_url(held))

    assert response.status_code == 405


# --- the labeling page ---------------------------------------------------------------------


def test_label_page_shows_current_item_and_holds_the_next_one(
    worker_client, project, items, worker
):
    response = worker_client.get(label_url(project))

    assert response.status_code == 200
    html = response.content.decode()
    current, buffered = live(worker, project)
    stage, buffer = html.split('<template id="label-buffer">', 1)
    assert current.item.text in stage
    assert buffered.item.text in buffer.split("</template>", 1)[0]
    assert items[2].text not in html
    assert items[3].text not in html
    assert 'aria-keyshortcuts="1"' in html
    assert "<kbd>1</kbd>" in html
    assert "<strong>sentiment</strong>" in html  # instructions rendered from Markdown


def test_label_page_reuses_live_reservations(worker_client, project, items, worker):
    worker_client.get(label_url(project))
    first = live(worker, project)

    worker_client.get(label_url(project))

    assert live(worker, project) == first
    assert Assignment.objects.count() == 2


def test_label_page_query_count_is_bounded(
    worker_client, project, items, worker, django_assert_max_num_queries
):
    worker_client.get(label_url(project))  # claims: afterwards the page only reads

    with django_assert_max_num_queries(12):
        response = worker_client.get(label_url(project))

    assert response.status_code == 200


def test_label_page_says_nothing_left_when_no_work_is_left(worker_client, project):
    ItemFactory(project=project, gold={"label": "positive"})  # gold alone is never served

    response = worker_client.get(label_url(project))

    assert NOTHING_LEFT in response.content.decode()
    assert 'data-state="empty"' in response.content.decode()


def test_label_page_shows_only_the_item_text(worker_client, project, worker):
    ItemFactory(project=project, data={"text": "Visible words", "source": "secret-origin-42"})

    html = worker_client.get(label_url(project)).content.decode()

    assert "Visible words" in html
    assert "secret-origin-42" not in html


# --- submit and skip -----------------------------------------------------------------------


def test_submit_stores_the_annotation_and_returns_the_next_item(
    worker_client, project, items, worker
):
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)

    response = worker_client.post(
        submit_url(current), {"label": "negative", "duration_ms": 4321, "held": buffered.pk}
    )

    assert response.status_code == 200
    annotation = Annotation.objects.get()
    assert (annotation.item_id, annotation.author_id) == (current.item_id, worker.pk)
    assert (annotation.label, annotation.duration_ms) == ("negative", 4321)
    html = response.content.decode()
    refilled = [a for a in live(worker, project) if a.pk != buffered.pk]
    assert len(refilled) == 1
    assert 'class="label-refill"' in html
    assert refilled[0].item.text in html
    assert f'data-assignment-id="{refilled[0].pk}"' in html
    assert buffered.item.text not in html  # the page already holds it


def test_submit_without_held_items_refills_both_slots(worker_client, project, items, worker):
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)

    html = worker_client.post(
        submit_url(current), {"label": "positive", "duration_ms": 10}
    ).content.decode()

    assert html.count('class="label-item"') == 2
    assert buffered.item.text in html  # a live reservation is reused before claiming more
    assert len(live(worker, project)) == 2


def test_submit_does_not_offer_items_whose_answer_is_still_in_flight(
    worker_client, project, items, worker
):
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)
    in_flight = assignment_claim_next(worker=worker, project=project)  # answered, not yet stored

    html = worker_client.post(
        submit_url(current),
        {"label": "positive", "duration_ms": 10, "held": buffered.pk, "pending": in_flight.pk},
    ).content.decode()

    assert html.count('class="label-item"') == 1
    assert in_flight.item.text not in html
    assert items[3].text in html


def test_submit_twice_stores_one_annotation(worker_client, project, items, worker):
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)
    data = {"label": "positive", "duration_ms": 900, "held": buffered.pk}

    first = worker_client.post(submit_url(current), data)
    again = worker_client.post(submit_url(current), data)

    assert (first.status_code, again.status_code) == (200, 200)
    assert Annotation.objects.count() == 1
    assert current.item.annotations.count() == 1


def test_submit_with_an_unknown_label_is_422_and_keeps_the_item(
    worker_client, project, items, worker
):
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)

    response = worker_client.post(
        submit_url(current), {"label": "maybe", "duration_ms": 5, "held": buffered.pk}
    )

    assert response.status_code == 422
    assert not Annotation.objects.exists()
    html = response.content.decode()
    assert "was not saved" in html
    assert current.item.text in html  # still reserved, so it comes back to the page


def test_submit_after_the_item_went_to_others_is_409_with_a_notice(client, owner):
    project = ProjectFactory(created_by=owner, overlap=1)
    ItemFactory.create_batch(2, project=project)
    slow, fast = make_annotator(project, "slow"), make_annotator(project, "fast")
    held = assignment_claim_next(worker=slow, project=project)
    client.force_login(slow)

    with time_machine.travel(timezone.now() + timedelta(seconds=601)):
        assert assignment_claim_next(worker=fast, project=project).item_id == held.item_id
        response = client.post(submit_url(held), {"label": "positive", "duration_ms": 5})

    assert response.status_code == 409
    assert "not saved" in response.content.decode()
    assert "expired" in response.content.decode()
    assert not Annotation.objects.filter(author=slow).exists()
    assert 'class="label-item"' in response.content.decode()  # the other item, to go on with


def test_skip_releases_the_item_and_returns_the_next_one(worker_client, project, items, worker):
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)

    response = worker_client.post(skip_url(current), {"held": buffered.pk})

    assert response.status_code == 200
    current.refresh_from_db()
    assert current.status == Assignment.Status.SKIPPED
    assert Item.objects.get(pk=current.item_id).slots_taken == 0
    assert response.content.decode().count('class="label-item"') == 1
    assert not Annotation.objects.exists()


def test_refill_is_empty_when_the_project_is_exhausted(worker_client, project, worker):
    ItemFactory.create_batch(2, project=project)
    worker_client.get(label_url(project))
    current, buffered = live(worker, project)

    response = worker_client.post(
        submit_url(current), {"label": "positive", "duration_ms": 7, "held": buffered.pk}
    )

    assert response.status_code == 200
    assert 'class="label-refill"' in response.content.decode()
    assert 'class="label-item"' not in response.content.decode()


# --- gold items look like any other item ---------------------------------------------------


def _normalised(html, assignment):
    """Blank out the item text and the assignment id wherever the item markup carries them."""
    html = html.replace(assignment.item.text, "TEXT")
    pattern = rf'(assignment-|data-assignment-id="|/label/){assignment.pk}(?=[/"])'
    return re.sub(pattern, r"\1ID", html)


def test_gold_and_regular_items_render_identically_but_for_text_and_id(project, worker):
    gold = reserve(ItemFactory(project=project, gold={"label": "negative"}), worker)
    regular = reserve(ItemFactory(project=project), worker)

    rendered = {
        a: render_to_string("crowd/assignment_label.html#label-item", {"assignment": a})
        for a in (gold, regular)
    }

    assert gold.item.text in rendered[gold]
    assert regular.item.text in rendered[regular]
    assert _normalised(rendered[gold], gold) == _normalised(rendered[regular], regular)
    assert "gold" not in rendered[gold].lower()


def test_gold_current_item_gives_the_same_page_as_a_regular_one(client, project):
    gold_worker, other = make_annotator(project, "ann"), make_annotator(project, "bob")
    gold = ItemFactory(project=project, gold={"label": "negative"}, data={"text": "Gold words"})
    first = ItemFactory(project=project, data={"text": "Plain words"})
    nexts = ItemFactory.create_batch(2, project=project)
    pages = {}
    for user, current, buffered in ((gold_worker, gold, nexts[0]), (other, first, nexts[1])):
        held = [reserve(current, user), reserve(buffered, user)]
        client.force_login(user)
        html = client.get(label_url(project)).content.decode()
        assert current.text in html
        assert buffered.text in html
        for assignment in held:
            html = _normalised(html, assignment)
        html = CSRF_VALUES.sub(r"\1TOKEN", html)  # masked afresh on every render
        pages[user.username] = html.replace(user.username, "USER")

    assert pages["ann"] == pages["bob"]
    assert "gold" not in pages["ann"].lower()


# --- members page --------------------------------------------------------------------------


def members_url(project):
    return reverse("crowd:members", args=[project.pk])


def test_members_page_lists_members_with_roles(
    client, owner, project, worker, django_assert_max_num_queries
):
    client.force_login(owner)

    with django_assert_max_num_queries(8):
        response = client.get(members_url(project))

    html = response.content.decode()
    assert response.status_code == 200
    assert "worker" in html
    assert "Annotator" in html
    assert "owner" in html
    assert "Owner" in html


def test_members_page_adds_an_existing_user_with_a_role(client, owner, project):
    UserFactory(username="newbie")
    client.force_login(owner)

    response = client.post(members_url(project), {"username": "newbie", "role": "reviewer"})

    assert response.status_code == 302
    member = ProjectMember.objects.get(project=project, user__username="newbie")
    assert member.role == "reviewer"


def test_members_page_adds_annotators_to_the_labeling_pool(client, owner, project, item):
    newbie = UserFactory(username="newbie")
    client.force_login(owner)

    client.post(members_url(project), {"username": "newbie", "role": "annotator"})

    client.force_login(newbie)
    assert client.get(label_url(project)).status_code == 200


def test_members_page_shows_unknown_username_with_422(client, owner, project):
    client.force_login(owner)

    response = client.post(members_url(project), {"username": "ghost", "role": "annotator"})

    assert response.status_code == 422
    assert "No user named &#x27;ghost&#x27;" in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert not ProjectMember.objects.filter(user__username="ghost").exists()


def test_members_page_htmx_post_returns_the_form_partial_with_422(client, owner, project):
    client.force_login(owner)

    response = client.post(
        members_url(project), {"username": "", "role": "boss"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="member-form"')
    assert html.count("errorlist") == 2


def test_members_page_is_403_for_annotators_and_404_for_strangers(client, project, worker):
    client.force_login(worker)
    assert client.get(members_url(project)).status_code == 403

    client.force_login(UserFactory(username="stranger"))
    assert client.get(members_url(project)).status_code == 404


def test_submit_stores_a_keyed_hash_of_the_client(client, project, items, worker):
    client.force_login(worker)
    client.get(label_url(project))
    current, buffered = live(worker, project)

    response = client.post(
        submit_url(current),
        {"label": "positive", "duration_ms": 10, "held": buffered.pk},
        REMOTE_ADDR="198.51.100.23",
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64)",
    )

    assert response.status_code == 200
    expected = client_key_compute(
        address="198.51.100.23", user_agent="Mozilla/5.0 (X11; Linux x86_64)"
    )
    assert Annotation.objects.get().client_key == expected
    assert len(expected) == 32

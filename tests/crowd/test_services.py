from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Annotation, Item
from core.exceptions import ApplicationError, ConflictError
from crowd.models import Assignment
from crowd.services import (
    assignment_claim_next,
    assignment_expire_stale,
    assignment_list_ready,
    assignment_skip,
    assignment_submit,
    client_key_compute,
    project_member_add,
)
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db


def test_claim_next_prefers_items_closest_to_completion(project, worker):
    fresh = ItemFactory(project=project)
    fuller = ItemFactory(project=project)
    other = make_annotator(project)
    assignment_claim_next(worker=other, project=project)  # takes `fresh` (lowest id)

    assignment = assignment_claim_next(worker=worker, project=project)

    assert assignment.item_id == fresh.pk
    assert fuller.pk != fresh.pk


def test_claim_next_never_gives_an_item_twice_to_one_worker(project, worker):
    ItemFactory.create_batch(2, project=project)

    first = assignment_claim_next(worker=worker, project=project)
    assignment_submit(assignment=first, worker=worker, value={"label": "positive"}, duration_ms=10)
    second = assignment_claim_next(worker=worker, project=project)
    third = assignment_claim_next(worker=worker, project=project)

    assert second.item_id != first.item_id
    assert third is None


def test_claim_next_stops_at_overlap(owner):
    project = ProjectFactory(created_by=owner, overlap=2)
    item = ItemFactory(project=project)
    workers = [make_annotator(project) for _ in range(3)]

    claims = [assignment_claim_next(worker=w, project=project) for w in workers]

    assert [c is not None for c in claims] == [True, True, False]
    item.refresh_from_db()
    assert item.slots_taken == 2


def test_claim_next_refuses_non_members(project, item):
    stranger = UserFactory(username="stranger")

    with pytest.raises(ApplicationError):
        assignment_claim_next(worker=stranger, project=project)


def test_expired_reservation_frees_the_slot_for_others(owner):
    project = ProjectFactory(created_by=owner, overlap=1)
    item = ItemFactory(project=project)
    slow, fast = make_annotator(project), make_annotator(project)
    held = assignment_claim_next(worker=slow, project=project)
    assert assignment_claim_next(worker=fast, project=project) is None

    with time_machine.travel(timezone.now() + timedelta(seconds=601)):
        claimed = assignment_claim_next(worker=fast, project=project)

    assert claimed.item_id == item.pk
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED
    with pytest.raises(ConflictError):
        assignment_submit(assignment=held, worker=slow, value={"label": "positive"}, duration_ms=5)


def test_late_submit_is_taken_while_the_slot_is_free(project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)
    with time_machine.travel(timezone.now() + timedelta(seconds=601)):
        assert assignment_expire_stale(project_id=project.pk) == 1

    annotation = assignment_submit(
        assignment=held, worker=worker, value={"label": "negative"}, duration_ms=5
    )

    item.refresh_from_db()
    assert annotation.value == {"label": "negative"}
    assert (item.slots_taken, item.annotation_count) == (1, 1)


def test_submit_is_idempotent(project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)

    first = assignment_submit(
        assignment=held, worker=worker, value={"label": "positive"}, duration_ms=9
    )
    again = assignment_submit(
        assignment=held, worker=worker, value={"label": "negative"}, duration_ms=9
    )

    assert first.pk == again.pk
    assert Annotation.objects.count() == 1
    assert Item.objects.get(pk=item.pk).annotation_count == 1


def test_submit_rejects_unknown_label_and_stores_nothing(project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)

    with pytest.raises(ValidationError) as error:
        assignment_submit(assignment=held, worker=worker, value={"label": "maybe"}, duration_ms=9)

    assert "label" in error.value.message_dict
    assert Annotation.objects.count() == 0
    held.refresh_from_db()
    assert held.status == Assignment.Status.RESERVED


def test_skip_frees_the_slot_and_the_item_is_not_offered_again(project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)

    assignment_skip(assignment=held, worker=worker)

    item.refresh_from_db()
    assert item.slots_taken == 0
    assert assignment_claim_next(worker=worker, project=project) is None


def test_another_workers_assignment_cannot_be_submitted(project, worker, item):
    held = assignment_claim_next(worker=worker, project=project)
    intruder = make_annotator(project)

    with pytest.raises(ApplicationError):
        assignment_submit(
            assignment=held, worker=intruder, value={"label": "positive"}, duration_ms=1
        )


def test_gold_is_mixed_in_and_never_repeated(owner):
    project = ProjectFactory(created_by=owner, gold_ratio=0.5)
    golds = ItemFactory.create_batch(3, project=project, gold={"label": "positive"})
    ItemFactory.create_batch(40, project=project)
    worker = make_annotator(project)

    served = []
    while (assignment := assignment_claim_next(worker=worker, project=project)) is not None:
        served.append(assignment.item_id)
        assignment_submit(
            assignment=assignment, worker=worker, value={"label": "positive"}, duration_ms=1
        )

    gold_ids = {g.pk for g in golds}
    assert gold_ids <= set(served)
    assert len(served) == len(set(served)) == 43


def test_a_project_keeps_at_least_one_owner(project, owner):
    with pytest.raises(ValidationError) as error:
        project_member_add(project=project, username=owner.username, role="annotator")

    assert "role" in error.value.message_dict
    assert project.members.get(user=owner).role == "owner"


def test_assignment_list_ready_reuses_live_reservations_then_claims(project, worker):
    ItemFactory.create_batch(3, project=project)
    first = assignment_claim_next(worker=worker, project=project)

    ready = assignment_list_ready(worker=worker, project=project, held=())

    assert ready[0].pk == first.pk
    assert len(ready) == 2
    assert ready[1].item_id != first.item_id


# --- client key ------------------------------------------------------------------------------


def test_client_key_is_a_keyed_hash_of_address_and_user_agent(settings):
    expected = hmac.new(
        settings.SECRET_KEY.encode(), b"203.0.113.9\nFirefox/130", hashlib.sha256
    ).hexdigest()[:32]

    key = client_key_compute(address="203.0.113.9", user_agent="Firefox/130")

    assert key == expected
    assert len(key) == 32
    assert "203.0.113.9" not in key
    assert client_key_compute(address="203.0.113.9", user_agent="Chrome/128") != key
    assert client_key_compute(address="203.0.113.10", user_agent="Firefox/130") != key
    assert client_key_compute(address="", user_agent="") == ""
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert client_key_compute(address="203.0.113.9", user_agent="Firefox/130") != key


def test_client_key_is_stored_on_the_common_and_the_late_submit_paths(project, worker):
    ItemFactory.create_batch(3, project=project)
    key = client_key_compute(address="198.51.100.4", user_agent="Safari/17")
    common, late = (assignment_claim_next(worker=worker, project=project) for _ in range(2))
    unknown = assignment_claim_next(worker=worker, project=project)

    with CaptureQueriesContext(connection) as queries:
        first = assignment_submit(
            assignment=common,
            worker=worker,
            value={"label": "positive"},
            duration_ms=5,
            client_key=key,
        )
    with time_machine.travel(timezone.now() + timedelta(seconds=601)):
        assert assignment_expire_stale(project_id=project.pk) == 2  # `late` and `unknown`
    second = assignment_submit(
        assignment=late, worker=worker, value={"label": "negative"}, duration_ms=5, client_key=key
    )
    third = assignment_submit(
        assignment=unknown, worker=worker, value={"label": "negative"}, duration_ms=5
    )

    one_statement = any("WITH schema AS" in query["sql"] for query in queries.captured_queries)
    assert one_statement == (connection.vendor == "postgresql")
    keys = dict(Annotation.objects.values_list("pk", "client_key"))
    assert keys == {first.pk: key, second.pk: key, third.pk: ""}
